"""Checking an archive end to end without restoring it."""

from __future__ import annotations

from pathlib import Path

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from registry.backup.archive import _bad, check_part_hash, part_lines, read_manifest
from registry.backup.crypto import open_with
from registry.backup.errors import ArchiveInvalid
from registry.backup.manifest import Manifest


def verify_archive(folder: Path, recipient: X25519PrivateKey, signer: Ed25519PublicKey | None = None) -> Manifest:
    """Check the signature, then every part in order: size and SHA-256,
    decryption, that every line is a record or tombstone, and the counts.

    Returns:
        the manifest, when everything holds.

    Raises:
        SignatureInvalid: the manifest's signature does not verify.
        WrongRecipientKey: ``recipient`` does not open the archive.
        ArchiveInvalid: naming the first bad part (``details['part']``).
    """
    folder = Path(folder)
    manifest = read_manifest(folder, signer)
    secret = open_with(manifest.encryption, recipient)
    records = deleted = 0
    for number, part in enumerate(manifest.parts, 1):
        check_part_hash(folder, number, part)
        for line in part_lines(folder, number, part, secret):
            try:
                item = orjson.loads(line)
                if item.get("deleted") is True:
                    deleted += 1
                elif isinstance(item["key"], str) and isinstance(item["handle"], str) and isinstance(item["vals"], str):
                    records += 1
                else:
                    raise TypeError("fields of the wrong type")
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
                raise _bad(number, part, f"a line is not a record: {exc}") from None
    if (records, deleted) != (manifest.records, manifest.deleted):
        raise ArchiveInvalid(
            f"the parts hold {records} records and {deleted} deletions; the manifest says"
            f" {manifest.records} and {manifest.deleted}"
        )
    return manifest
