"""Making an archive: FULL (every record) or DIFF (changes since the last
backup), read from a store; and the data folder's record of the last one.

The watermark is read before any record: a FULL holds every change up to
it (and perhaps some later), a DIFF every change after the previous
watermark; records are their current state, so a change made while the
archive is written is in this archive or the next, never in neither.
Restoring applies them in order, and replaying a record twice is harmless.
"""

from __future__ import annotations

import itertools
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from idcore.handle import Handle
from registry.backup.archive import (
    DEFAULT_VOLUME_BYTES,
    MANIFEST_NAME,
    SIGNATURE_NAME,
    ArchiveWriter,
    record_line,
    tombstone_line,
)
from registry.backup.crypto import seal_for
from registry.backup.errors import NoBaseBackup
from registry.backup.manifest import DIFF, FULL, Manifest, node_key_field, sign
from registry.node_key import write_private
from registry.store import Op, Store

#: File in the data folder recording the last backup made (its watermark).
STATE_NAME = "backup-state.json"

#: Records read from the store at once for a FULL; journal entries at once
#: for a DIFF (whose handles are deduplicated within a batch only, which
#: bounds memory; a handle changed in several batches is written again,
#: harmlessly, as it is always its current state).
SCAN_BATCH = 10_000

_RECORD_OPS = frozenset((Op.CREATE, Op.UPDATE, Op.DELETE))


@dataclass(frozen=True, slots=True)
class BackupResult:
    folder: Path
    manifest: Manifest


def last_watermark(data_dir: Path) -> int | None:
    """The watermark of the last backup recorded in ``data_dir``, or None."""
    try:
        return int(orjson.loads((Path(data_dir) / STATE_NAME).read_bytes())["watermark"])
    except FileNotFoundError:
        return None


def record_backup(data_dir: Path, result: BackupResult) -> None:
    m = result.manifest
    state = {"watermark": m.watermark_to, "kind": m.kind, "archive": str(result.folder), "created": m.created}
    write_private(Path(data_dir) / STATE_NAME, orjson.dumps(state, option=orjson.OPT_INDENT_2) + b"\n")


async def create_backup(
    store: Store,
    *,
    kind: str,
    out_dir: Path,
    recipient: X25519PublicKey,
    node_key: Ed25519PrivateKey,
    since: int | None = None,
    volume_bytes: int = DEFAULT_VOLUME_BYTES,
) -> BackupResult:
    """Write a ``kind`` archive of ``store`` into a new folder of ``out_dir``.

    Args:
        since: a DIFF's starting watermark (the last backup's).

    Raises:
        NoBaseBackup: a DIFF without ``since``.
    """
    if kind == DIFF and since is None:
        raise NoBaseBackup("no earlier backup is recorded for this node; make a FULL backup first")
    start = 0 if kind == FULL else since
    assert start is not None
    watermark = await store.last_seq()
    prefixes = tuple(await store.homed_prefixes())
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    name = f"idnode-{kind}-{start:010d}-{watermark:010d}-{created.replace('-', '').replace(':', '')}"
    partial, final = _reserve(Path(out_dir), name)
    header, secret = seal_for(recipient)
    writer = ArchiveWriter(partial, secret, volume_bytes)
    try:
        if kind == FULL:
            records, deleted = await _write_full(store, writer), 0
        else:
            records, deleted = await _write_diff(store, writer, start, watermark)
        parts = writer.finish()
    except BaseException:
        writer.finish()
        shutil.rmtree(partial, ignore_errors=True)
        raise
    manifest = Manifest(
        kind=kind, prefixes=prefixes, watermark_from=start, watermark_to=watermark, records=records,
        deleted=deleted, parts=tuple(parts), created=created, node_key=node_key_field(node_key), encryption=header,
    )
    data = manifest.to_bytes()
    _write_synced(partial / MANIFEST_NAME, data)
    _write_synced(partial / SIGNATURE_NAME, sign(data, node_key))
    os.replace(partial, final)
    _sync_dir(out_dir)
    return BackupResult(final, manifest)


async def _write_full(store: Store, writer: ArchiveWriter) -> int:
    count = 0
    after = ""
    while rows := await store.scan_records(after=after, limit=SCAN_BATCH):
        for key, handle, blob in rows:
            writer.add(record_line(key, handle, blob))
        count += len(rows)
        after = rows[-1][0]
    return count


async def _write_diff(store: Store, writer: ArchiveWriter, start: int, watermark: int) -> tuple[int, int]:
    records = deleted = 0
    after = start
    while after < watermark:
        entries = await store.journal(after=after, limit=min(SCAN_BATCH, watermark - after))
        if not entries:
            break
        after = entries[-1].seq
        handles = {e.handle: None for e in entries if e.op in _RECORD_OPS}
        for handle in handles:
            key = Handle.from_text(handle).key
            record = await store.get(key)
            if record is None:
                writer.add(tombstone_line(key, handle))
                deleted += 1
            else:
                writer.add(record_line(key, record.handle, record.blob))
                records += 1
    return records, deleted


def _reserve(out_dir: Path, name: str) -> tuple[Path, Path]:
    """A new ``.partial`` folder to write an archive called ``name`` in,
    and the archive's final path. Two backups made in the same second of
    the same watermark (or a folder left by a crash) get ``name-2``, ...,
    never each other's folder."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for n in itertools.count(1):
        candidate = name if n == 1 else f"{name}-{n}"
        final = out_dir / candidate
        partial = out_dir / (candidate + ".partial")
        if final.exists():
            continue
        try:
            partial.mkdir()
        except FileExistsError:
            continue
        return partial, final
    raise AssertionError("unreachable")


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
