"""Writing and reading archive folders: parts (volumes) and their lines.

A line is one NDJSON object: ``{"key","handle","vals"}`` (``vals`` the
stored record's blob, base64) or ``{"key","handle","deleted":true}``.
Parts are filled up to the volume size (plaintext bytes; a part holds at
least one line) and each is encrypted on its own.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import orjson

from registry.backup.crypto import ArchiveSecret, PartWriter, read_part
from registry.backup.errors import ArchiveInvalid
from registry.backup.manifest import Manifest, PartInfo, check_signature

MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"

#: Default volume size (plaintext bytes a part holds at most).
DEFAULT_VOLUME_BYTES = 64 * 1024 * 1024

#: Smallest volume size accepted: below it the parts' framing and the file
#: count outweigh the data.
MIN_VOLUME_BYTES = 1024

#: Bytes read at once when hashing a part.
HASH_READ_BYTES = 1024 * 1024


def record_line(key: str, handle: str, blob: bytes) -> bytes:
    return orjson.dumps({"key": key, "handle": handle, "vals": base64.b64encode(blob).decode("ascii")}) + b"\n"


def tombstone_line(key: str, handle: str) -> bytes:
    return orjson.dumps({"key": key, "handle": handle, "deleted": True}) + b"\n"


def part_name(number: int) -> str:
    return f"records-{number:04d}.ndjson.enc"


class _HashingFile:
    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.f.write(data)
        self.sha.update(data)
        self.size += len(data)


class ArchiveWriter:
    """Writes parts into ``folder`` as lines arrive; :meth:`finish` closes
    the last part and returns every part's description."""

    def __init__(self, folder: Path, secret: ArchiveSecret, volume_bytes: int = DEFAULT_VOLUME_BYTES) -> None:
        if volume_bytes < MIN_VOLUME_BYTES:
            raise ValueError(f"volume size must be at least {MIN_VOLUME_BYTES} bytes, not {volume_bytes}")
        self.folder = folder
        self._secret = secret
        self._volume = volume_bytes
        self._parts: list[PartInfo] = []
        self._file: BinaryIO | None = None
        self._hashing: _HashingFile | None = None
        self._writer: PartWriter | None = None
        self._plain = 0
        self._lines = 0
        self._pending: list[bytes] = []
        self._pending_bytes = 0

    def add(self, line: bytes) -> None:
        if self._writer is not None and self._plain + self._pending_bytes + len(line) > self._volume:
            self._close_part()
        if self._writer is None:
            self._open_part()
        self._pending.append(line)
        self._pending_bytes += len(line)
        self._lines += 1
        if self._pending_bytes >= 256 * 1024:  # hand lines to the cipher in large writes
            self._drain()

    def finish(self) -> list[PartInfo]:
        if self._writer is not None:
            self._close_part()
        return self._parts

    def _drain(self) -> None:
        assert self._writer is not None
        self._writer.write(b"".join(self._pending))
        self._plain += self._pending_bytes
        self._pending.clear()
        self._pending_bytes = 0

    def _open_part(self) -> None:
        name = part_name(len(self._parts) + 1)
        self._file = open(self.folder / name, "wb")  # noqa: SIM115 - open across add() calls; closed in _close_part
        self._hashing = _HashingFile(self._file)
        self._writer = PartWriter(self._hashing, self._secret.key(name))  # type: ignore[arg-type]
        self._plain = self._lines = 0

    def _close_part(self) -> None:
        assert self._writer is not None and self._file is not None and self._hashing is not None
        self._drain()
        self._writer.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._parts.append(PartInfo(part_name(len(self._parts) + 1), self._hashing.sha.hexdigest(), self._hashing.size, self._lines))
        self._writer = self._file = self._hashing = None


def read_manifest(folder: Path, signer: object | None = None) -> Manifest:
    """The archive's manifest, its signature checked (see
    :func:`~registry.backup.manifest.check_signature`)."""
    try:
        data = (folder / MANIFEST_NAME).read_bytes()
        signature = (folder / SIGNATURE_NAME).read_bytes()
    except OSError as exc:
        raise ArchiveInvalid(f"{folder} is not a readable archive: {exc.strerror}: {exc.filename}") from None
    return check_signature(data, signature, signer)  # type: ignore[arg-type]


def describe(number: int, part: PartInfo) -> str:
    return f"part {number} ({part.name})"


def check_part_hash(folder: Path, number: int, part: PartInfo) -> None:
    """Raises ArchiveInvalid naming the part unless its file has the
    manifest's size and SHA-256."""
    sha = hashlib.sha256()
    size = 0
    try:
        with open(folder / part.name, "rb") as f:
            while block := f.read(HASH_READ_BYTES):
                sha.update(block)
                size += len(block)
    except OSError as exc:
        raise _bad(number, part, f"cannot be read: {exc.strerror}") from None
    if sha.hexdigest() != part.sha256:
        raise _bad(number, part, f"SHA-256 mismatch ({size} bytes, manifest says {part.size})"
                   if size != part.size else "SHA-256 mismatch")


def part_lines(folder: Path, number: int, part: PartInfo, secret: ArchiveSecret) -> Iterator[bytes]:
    """The lines of one part, decrypted; checks its line count.

    Raises:
        ArchiveInvalid: naming the part, when it fails to decrypt or holds
            another number of lines than the manifest says.
    """
    count = 0
    rest = b""
    try:
        with open(folder / part.name, "rb") as f:
            for chunk in read_part(f, secret.key(part.name)):
                data = rest + chunk
                lines = data.split(b"\n")
                rest = lines.pop()
                count += len(lines)
                yield from lines
    except ArchiveInvalid as exc:
        raise _bad(number, part, exc.message) from None
    except OSError as exc:
        raise _bad(number, part, f"cannot be read: {exc.strerror}") from None
    if rest:
        raise _bad(number, part, "ends inside a line")
    if count != part.lines:
        raise _bad(number, part, f"holds {count} lines, the manifest says {part.lines}")


def _bad(number: int, part: PartInfo, why: str) -> ArchiveInvalid:
    return ArchiveInvalid(f"{describe(number, part)}: {why}", part=number, name=part.name)
