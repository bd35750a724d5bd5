"""Hybrid encryption of archive parts for one recipient.

Per archive: an ephemeral X25519 key agrees a secret with the recipient's
public key; HKDF-SHA256 (with a random salt) derives one AES-256-GCM key per
part, bound to the part's name, so parts cannot be swapped unnoticed. Each
part is a stream of chunks (the STREAM construction): a 4-byte big-endian
length, then the chunk sealed with nonce = 11-byte counter || last-flag, so
memory stays bounded, a reordered chunk fails, and so does a truncated part
(its last chunk is missing). A key-check token lets a wrong recipient key be
told apart from a damaged part.
"""

from __future__ import annotations

import base64
import os
import struct
from collections.abc import Iterator
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from registry.backup.errors import ArchiveInvalid, WrongRecipientKey
from registry.node_key import fingerprint, raw_public

SCHEME = "X25519+HKDF-SHA256+AES-256-GCM-STREAM/1"

#: Plaintext bytes per sealed chunk: what is held in memory at once, and
#: large enough that the 20 bytes of framing and tag per chunk cost nothing.
CHUNK_BYTES = 1024 * 1024

#: Largest sealed chunk a reader accepts (a damaged length is refused, not
#: allocated).
MAX_SEALED_CHUNK = CHUNK_BYTES + 16

_LENGTH = struct.Struct(">I")
_CHECK_PLAINTEXT = b"idnode-backup key check"
_SALT_BYTES = 16


class ArchiveSecret:
    """The secret shared with the recipient; derives every part key."""

    __slots__ = ("_salt", "_shared")

    def __init__(self, shared: bytes, salt: bytes) -> None:
        self._shared = shared
        self._salt = salt

    def key(self, purpose: str) -> AESGCM:
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=self._salt, info=b"idnode-backup/1 " + purpose.encode())
        return AESGCM(hkdf.derive(self._shared))


def seal_for(recipient: X25519PublicKey) -> tuple[dict[str, Any], ArchiveSecret]:
    """A new archive secret for ``recipient`` and the manifest's
    ``encryption`` entry that lets the recipient (only) recover it."""
    ephemeral = X25519PrivateKey.generate()
    salt = os.urandom(_SALT_BYTES)
    secret = ArchiveSecret(ephemeral.exchange(recipient), salt)
    header = {
        "scheme": SCHEME,
        "recipient": fingerprint(recipient),
        "ephemeral": _b64(raw_public(ephemeral.public_key())),
        "salt": _b64(salt),
        "check": _b64(secret.key("check").encrypt(bytes(12), _CHECK_PLAINTEXT, None)),
    }
    return header, secret


def open_with(header: dict[str, Any], recipient: X25519PrivateKey) -> ArchiveSecret:
    """The archive secret from the manifest's ``encryption`` entry.

    Raises:
        WrongRecipientKey: ``recipient`` is not the key the archive is for.
        ArchiveInvalid: the entry is malformed or of another scheme.
    """
    try:
        if header["scheme"] != SCHEME:
            raise ArchiveInvalid(f"unknown encryption scheme {header['scheme']!r}")
        ephemeral = X25519PublicKey.from_public_bytes(base64.b64decode(header["ephemeral"]))
        salt, check, meant_for = base64.b64decode(header["salt"]), base64.b64decode(header["check"]), header["recipient"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ArchiveInvalid(f"the manifest's encryption entry is malformed: {exc}") from None
    offered = fingerprint(recipient.public_key())
    if offered != meant_for:
        raise WrongRecipientKey(
            f"the archive is encrypted for recipient {meant_for}, not for this key ({offered})"
        )
    secret = ArchiveSecret(recipient.exchange(ephemeral), salt)
    try:
        secret.key("check").decrypt(bytes(12), check, None)
    except InvalidTag:
        raise WrongRecipientKey("the recipient key does not open this archive (key check failed)") from None
    return secret


class PartWriter:
    """Encrypts one part into ``out`` chunk by chunk; call :meth:`close`."""

    def __init__(self, out: BinaryIO, key: AESGCM) -> None:
        self._out = out
        self._key = key
        self._buffer = bytearray()
        self._counter = 0

    def write(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) > CHUNK_BYTES:
            self._seal(bytes(self._buffer[:CHUNK_BYTES]), last=False)
            del self._buffer[:CHUNK_BYTES]

    def close(self) -> None:
        """Seal what is left as the last chunk (possibly empty)."""
        self._seal(bytes(self._buffer), last=True)
        self._buffer.clear()

    def _seal(self, chunk: bytes, *, last: bool) -> None:
        sealed = self._key.encrypt(_nonce(self._counter, last), chunk, None)
        self._out.write(_LENGTH.pack(len(sealed)))
        self._out.write(sealed)
        self._counter += 1


def read_part(src: BinaryIO, key: AESGCM) -> Iterator[bytes]:
    """The plaintext chunks of one encrypted part, each authenticated
    before it is yielded.

    Raises:
        ArchiveInvalid: a chunk fails authentication, the part is
            truncated, or bytes follow its last chunk.
    """
    counter = 0
    while True:
        head = src.read(_LENGTH.size)
        if len(head) < _LENGTH.size:
            raise ArchiveInvalid("truncated: the part ends before its last chunk")
        (length,) = _LENGTH.unpack(head)
        if length > MAX_SEALED_CHUNK:
            raise ArchiveInvalid(f"chunk {counter} claims {length} bytes, more than a chunk can hold")
        sealed = src.read(length)
        if len(sealed) < length:
            raise ArchiveInvalid("truncated: the part ends inside a chunk")
        for last in (False, True):
            try:
                chunk = key.decrypt(_nonce(counter, last), sealed, None)
                break
            except InvalidTag:
                continue
        else:
            raise ArchiveInvalid(f"chunk {counter} fails authentication (damaged or not of this part)")
        yield chunk
        counter += 1
        if last:
            if src.read(1):
                raise ArchiveInvalid("bytes follow the part's last chunk")
            return


def _nonce(counter: int, last: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
