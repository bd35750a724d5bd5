"""The manifest: what an archive holds, signed by the node that made it.

The signature covers the manifest's exact bytes (``manifest.json``), so it
is checked before the manifest is parsed; the manifest carries the SHA-256
of every part, which extends the signature to the whole archive.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from registry.backup.errors import ArchiveInvalid, SignatureInvalid
from registry.node_key import fingerprint, raw_public

FORMAT = "idnode-backup/1"
FULL = "full"
DIFF = "diff"


@dataclass(frozen=True, slots=True)
class PartInfo:
    """One part: file name, SHA-256 (hex) and size of the encrypted file,
    and how many lines (records and tombstones) it holds."""

    name: str
    sha256: str
    size: int
    lines: int


@dataclass(frozen=True, slots=True)
class Manifest:
    """An archive's table of contents.

    Attributes:
        kind: ``full`` (every record) or ``diff`` (changes after
            ``watermark_from``).
        prefixes: the prefixes the node homed when the archive was made.
        watermark_from, watermark_to: the journal range covered: a FULL
            holds the state at (at least) ``watermark_to``; a DIFF, every
            change in ``(watermark_from, watermark_to]``.
        records, deleted: how many records and tombstones the parts hold.
        node_key: the signing node's raw Ed25519 public key, base64.
        encryption: how the parts are encrypted (:mod:`.crypto`).
    """

    kind: str
    prefixes: tuple[str, ...]
    watermark_from: int
    watermark_to: int
    records: int
    deleted: int
    parts: tuple[PartInfo, ...]
    created: str
    node_key: str
    encryption: dict[str, Any]

    def __post_init__(self) -> None:
        if self.kind not in (FULL, DIFF):
            raise ArchiveInvalid(f"unknown archive kind {self.kind!r}")
        if not 0 <= self.watermark_from <= self.watermark_to:
            raise ArchiveInvalid(f"bad watermark range {self.watermark_from}..{self.watermark_to}")
        if self.kind == FULL and self.watermark_from != 0:
            raise ArchiveInvalid("a FULL archive starts at watermark 0")

    @property
    def node_fingerprint(self) -> str:
        return fingerprint(self.signer())

    def signer(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(self.node_key))

    def to_bytes(self) -> bytes:
        body = {
            "format": FORMAT,
            "kind": self.kind,
            "prefixes": list(self.prefixes),
            "watermark": {"from": self.watermark_from, "to": self.watermark_to},
            "counts": {"records": self.records, "deleted": self.deleted, "parts": len(self.parts)},
            "parts": [{"name": p.name, "sha256": p.sha256, "size": p.size, "lines": p.lines} for p in self.parts],
            "created": self.created,
            "node_key": self.node_key,
            "encryption": self.encryption,
        }
        return orjson.dumps(body, option=orjson.OPT_INDENT_2) + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        try:
            body = orjson.loads(data)
            if body["format"] != FORMAT:
                raise ArchiveInvalid(f"not an {FORMAT} manifest (format {body['format']!r})")
            parts = tuple(PartInfo(p["name"], p["sha256"], int(p["size"]), int(p["lines"])) for p in body["parts"])
            if body["counts"]["parts"] != len(parts):
                raise ArchiveInvalid("the manifest's part count does not match its parts")
            return cls(
                kind=body["kind"], prefixes=tuple(body["prefixes"]),
                watermark_from=int(body["watermark"]["from"]), watermark_to=int(body["watermark"]["to"]),
                records=int(body["counts"]["records"]), deleted=int(body["counts"]["deleted"]),
                parts=parts, created=body["created"], node_key=body["node_key"], encryption=dict(body["encryption"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ArchiveInvalid(f"the manifest is malformed: {exc}") from None


def sign(manifest_bytes: bytes, key: Ed25519PrivateKey) -> bytes:
    return key.sign(manifest_bytes)


def node_key_field(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(raw_public(key.public_key())).decode("ascii")


def check_signature(manifest_bytes: bytes, signature: bytes, pinned: Ed25519PublicKey | None = None) -> Manifest:
    """The manifest, once its signature verifies.

    Verified against ``pinned`` when given (the node's key as the verifier
    knows it), else against the key the manifest names; then the manifest
    is parsed and its key must be that signer.

    Raises:
        SignatureInvalid: the signature does not verify.
        ArchiveInvalid: the signed manifest is malformed.
    """
    signer = pinned
    if signer is None:
        try:
            signer = Ed25519PublicKey.from_public_bytes(base64.b64decode(orjson.loads(manifest_bytes)["node_key"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise SignatureInvalid("manifest.json is damaged: it no longer names its signing key") from None
    try:
        signer.verify(signature, manifest_bytes)
    except InvalidSignature:
        whose = "the pinned node key" if pinned is not None else "the node key it names"
        raise SignatureInvalid(f"the manifest's signature does not verify with {whose}: manifest.json was altered"
                               " or signed by another node") from None
    manifest = Manifest.from_bytes(manifest_bytes)
    if pinned is not None and manifest.node_fingerprint != fingerprint(pinned):
        raise SignatureInvalid("the manifest names another node key than the one that signed it")
    return manifest
