"""QR labels for identifiers: payloads, symbols, images, labels, batches, verification."""
