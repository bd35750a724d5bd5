"""A node's own backups, as ``idnode backup`` and the node's HTTP API
(:mod:`resolver.backup_api`) both make, list, check and restore them.

Backups made for the node (not for escrow) chain through the data folder's
``backup-state.json`` (:func:`~registry.backup.create.record_backup`), so a
DIFF follows the last backup whichever of the two made it. The HTTP API
keeps its archives in ``<data>/``:data:`BACKUPS_DIR`; the CLI writes
wherever ``--to`` says.
"""

from __future__ import annotations

import shutil
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from idcore.errors import MalformedRequest, RequestError
from registry.backup.archive import DEFAULT_VOLUME_BYTES, check_part_hash, read_manifest
from registry.backup.create import BackupResult, create_backup, last_watermark, record_backup
from registry.backup.digest import records_digest
from registry.backup.errors import ArchiveInvalid, BackupError
from registry.backup.manifest import DIFF, Manifest
from registry.backup.restore import restore_archives
from registry.escrow import check_archive_name
from registry.node_key import node_key
from registry.store import Store

#: Folder of the data folder the node's HTTP API keeps its archives in.
BACKUPS_DIR = "backups"

#: Suffix of an archive folder still being written (see ``create_backup``).
PARTIAL_SUFFIX = ".partial"


class ArchiveNotFound(RequestError):
    """No archive of that name is in the backups folder."""

    http_status = 404


@dataclass(frozen=True, slots=True)
class RestoreResult:
    """What a restore applied (in order) and the digest it left
    (:func:`~registry.backup.digest.records_digest`)."""

    applied: list[Manifest]
    digest: str
    records: int


@dataclass(frozen=True, slots=True)
class ArchiveListing:
    """One archive of a backups folder: its manifest when the signature
    holds, else ``error`` saying why not; ``size`` is the bytes of its files."""

    name: str
    size: int
    manifest: Manifest | None
    error: str | None = None


async def backup_node(
    store: Store,
    data_dir: Path,
    *,
    kind: str,
    out_dir: Path,
    recipient: X25519PublicKey,
    volume_bytes: int = DEFAULT_VOLUME_BYTES,
) -> BackupResult:
    """Back up the node of ``data_dir`` (its ``store``) into ``out_dir``,
    signed with its node key; a DIFF follows the last backup recorded there,
    and this one is recorded for the next.

    Raises:
        NoBaseBackup: a DIFF, and no backup is recorded yet.
        KeyFileError: the node key is unreadable.
        ValueError: ``volume_bytes`` below ``MIN_VOLUME_BYTES``.
    """
    since = last_watermark(data_dir) if kind == DIFF else None
    result = await create_backup(
        store, kind=kind, out_dir=out_dir, recipient=recipient, node_key=node_key(data_dir), since=since,
        volume_bytes=volume_bytes,
    )
    record_backup(data_dir, result)
    return result


async def restore_node(
    store: Store,
    folders: Sequence[Path],
    recipient: X25519PrivateKey,
    signer: Ed25519PublicKey | None,
    *,
    remedy: str,
) -> RestoreResult:
    """Restore ``folders`` into the empty ``store`` and digest the result.

    ``remedy`` says how to start over once a damaged part stopped the
    restore after records were written (the store is then neither empty
    nor whole); it is appended to that error's message.

    Raises:
        as :func:`~registry.backup.restore.restore_archives`.
    """
    try:
        applied = await restore_archives(store, folders, recipient, signer)
    except ArchiveInvalid as exc:
        if await store.last_seq():  # a part failed after records were written
            exc.message += f"; the restore stopped part way: {remedy}"
        raise
    digest, count = await records_digest(store)
    return RestoreResult(applied, digest, count)


async def own_prefix(store: Store, prefix: str | None, *, option: str) -> str:
    """``prefix``, or else the one prefix the node homes.

    Raises:
        MalformedRequest: none given and the node homes none or several
            (``option`` names how to give one).
    """
    if prefix is not None:
        return prefix
    homed = await store.homed_prefixes()
    if len(homed) != 1:
        raise MalformedRequest(f"the node homes {len(homed)} prefixes; name one with {option}")
    return homed[0]


def remove_unfinished(backups: Path) -> list[str]:
    """Delete the archive folders of ``backups`` that were never finished
    (``.partial``, left by a crash while writing); their names. Only for a
    folder no other process writes to at the time (the node's own, at
    start-up)."""
    if not backups.is_dir():
        return []
    removed = []
    for folder in backups.iterdir():
        if folder.is_dir() and folder.name.endswith(PARTIAL_SUFFIX):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    return removed


def archive_folder(backups: Path, name: str) -> Path:
    """The archive called ``name`` in the folder ``backups``.

    Raises:
        InvalidHandle: ``name`` is not a plain archive name (no paths).
        ArchiveNotFound: there is no such archive.
    """
    folder = backups / check_archive_name(name)
    if not folder.is_dir():
        raise ArchiveNotFound(f"no archive {name!r} in the node's backups")
    return folder


def list_archives(backups: Path, signer: Ed25519PublicKey) -> list[ArchiveListing]:
    """Every archive in ``backups`` by name, each manifest's signature
    checked against ``signer`` (blocking: run it in a thread). Archives
    still being written are left out; a missing folder holds none."""
    if not backups.is_dir():
        return []
    out = []
    for folder in sorted(backups.iterdir()):
        if not folder.is_dir() or folder.name.endswith(PARTIAL_SUFFIX):
            continue
        size = archive_size(folder)
        try:
            out.append(ArchiveListing(folder.name, size, read_manifest(folder, signer)))
        except BackupError as exc:
            out.append(ArchiveListing(folder.name, size, None, exc.message))
    return out


def archive_size(folder: Path) -> int:
    """Bytes of the archive's files (what its tar carries, but headers)."""
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file())


def check_part_hashes(folder: Path, signer: Ed25519PublicKey | None = None) -> Manifest:
    """Check an archive without its recipient key: the manifest's signature
    and every part's size and SHA-256 (taken over the encrypted part, so no
    key is needed). Blocking.

    Raises:
        SignatureInvalid: the signature does not verify.
        ArchiveInvalid: naming the first bad part (``details['part']``).
    """
    manifest = read_manifest(folder, signer)
    for number, part in enumerate(manifest.parts, 1):
        check_part_hash(folder, number, part)
    return manifest


def tar_into(folder: Path, out: BinaryIO) -> None:
    """Write a plain tar of the archive folder's files (no folder entry) to
    the stream ``out``: the escrow upload format, so the tar can be escrowed
    or unpacked and restored. Blocking."""
    with tarfile.open(fileobj=out, mode="w|") as tar:
        for path in sorted(folder.iterdir()):
            tar.add(path, arcname=path.name, recursive=False)
