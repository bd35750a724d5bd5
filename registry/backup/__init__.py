"""Backups of a node: FULL and DIFF archives driven by the change journal,
encrypted for a recipient and signed by the node (issue 5, part 3).

An archive is a folder: ``manifest.json`` (what it holds, with the SHA-256
of every part), ``manifest.sig`` (the node's Ed25519 signature over the
manifest's bytes) and parts ``records-NNNN.ndjson.enc``, each an NDJSON
volume encrypted on its own (:mod:`registry.backup.crypto`).
"""
