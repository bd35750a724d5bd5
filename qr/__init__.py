"""QR payloads, images, labels, batch sheets and verification by decoding.

Built with the QR label work (issue #4); empty until then.
"""
