"""A node's own key pair, and the recipient keys backups are encrypted for.

Each node signs what it hands to others (backup manifests) with an Ed25519
key kept in its data folder as ``node_key.pem`` (PKCS#8, readable by the
owner only), created by ``idnode init`` or on first use. Backups are
encrypted for a recipient's X25519 public key; ``generate_recipient`` makes
such a pair (the private half stays with whoever restores).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)

from idcore.errors import IdnodeError

#: Name of the node's signing key inside its data folder.
NODE_KEY_NAME = "node_key.pem"

#: File names ``generate_recipient`` writes.
RECIPIENT_PRIVATE_NAME = "recipient_key.pem"
RECIPIENT_PUBLIC_NAME = "recipient_pub.pem"


class KeyFileError(IdnodeError):
    """A key file is missing, unreadable or holds the wrong kind of key."""


def node_key(data_dir: Path) -> Ed25519PrivateKey:
    """The node's signing key from ``data_dir``, created if it has none.

    Raises:
        KeyFileError: the file exists but is not an Ed25519 private key.
    """
    path = Path(data_dir) / NODE_KEY_NAME
    if not path.exists():
        try:
            write_private(path, private_pem(Ed25519PrivateKey.generate()), exclusive=True)
        except KeyFileError:
            pass  # another process created it first; use that one
    return _load_private(path, Ed25519PrivateKey, "an Ed25519 node key")


def private_pem(key: Ed25519PrivateKey | X25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def public_pem(key: Ed25519PublicKey | X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def raw_public(key: Ed25519PublicKey | X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(key: Ed25519PublicKey | X25519PublicKey) -> str:
    """``sha256:`` and the hex SHA-256 of the raw public key."""
    return "sha256:" + hashlib.sha256(raw_public(key)).hexdigest()


def generate_recipient(out_dir: Path) -> tuple[Path, Path]:
    """Write a new X25519 pair into ``out_dir``: private (mode 0600) and
    public PEM. Refuses to replace an existing private key.

    Returns:
        the private and public key paths.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    key = X25519PrivateKey.generate()
    private, public = out_dir / RECIPIENT_PRIVATE_NAME, out_dir / RECIPIENT_PUBLIC_NAME
    write_private(private, private_pem(key), exclusive=True)
    public.write_bytes(public_pem(key.public_key()))
    return private, public


def load_recipient_public(path: Path) -> X25519PublicKey:
    return _load_public(Path(path), X25519PublicKey, "an X25519 public key")


def load_recipient_private(path: Path) -> X25519PrivateKey:
    return _load_private(Path(path), X25519PrivateKey, "an X25519 private key")


def load_signer_public(path: Path) -> Ed25519PublicKey:
    return _load_public(Path(path), Ed25519PublicKey, "an Ed25519 public key")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from None


def _load_private(path: Path, kind: type, what: str):  # type: ignore[no-untyped-def]
    try:
        key = serialization.load_pem_private_key(_read(path), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(f"{path} is not {what} in PEM: {exc}") from None
    if not isinstance(key, kind):
        raise KeyFileError(f"{path} is not {what}")
    return key


def _load_public(path: Path, kind: type, what: str):  # type: ignore[no-untyped-def]
    try:
        key = serialization.load_pem_public_key(_read(path))
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(f"{path} is not {what} in PEM: {exc}") from None
    if not isinstance(key, kind):
        raise KeyFileError(f"{path} is not {what}")
    return key


def write_private(path: Path, data: bytes, *, exclusive: bool = False) -> None:
    """Write ``data`` readable by the owner only, durably: written, synced,
    then renamed into place (whole or absent). With ``exclusive``, an
    existing file is kept and :class:`KeyFileError` raised."""
    if exclusive and path.exists():
        raise KeyFileError(f"{path} already exists; not replacing a key")
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)  # also when an old file of that name was more open
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    if exclusive:
        try:
            os.link(partial, path)  # fails if another process made one meanwhile
        except FileExistsError:
            raise KeyFileError(f"{path} already exists; not replacing a key") from None
        finally:
            os.unlink(partial)
    else:
        os.replace(partial, path)
