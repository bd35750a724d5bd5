"""Restoring archives into an empty node: one FULL, then its DIFFs.

Archives are put in watermark order and must form one unbroken chain from
the same node (a FULL from 0 to W, then DIFFs W..X, X..Y ...); anything
else is refused before a record is written. Records are written in large
transactions straight into the store (no authorisation: they were the
source's, as signed), with the homed prefixes of each archive.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from registry.backup.archive import _bad, check_part_hash, part_lines, read_manifest
from registry.backup.crypto import ArchiveSecret, open_with
from registry.backup.errors import RestoreRefused
from registry.backup.manifest import DIFF, FULL, Manifest
from registry.records import StoredRecord
from registry.store import Op, Store, Txn

#: Lines written per transaction: large enough that commits (each an fsync)
#: cost little per record, small enough to bound the memory of one batch.
RESTORE_BATCH = 10_000


def plan(archives: Sequence[tuple[Path, Manifest]]) -> list[tuple[Path, Manifest]]:
    """The archives in the order to apply them.

    Raises:
        RestoreRefused: they are not one FULL and an unbroken run of DIFFs
            from one node.
    """
    if not archives:
        raise RestoreRefused("no archive to restore")
    fulls = [a for a in archives if a[1].kind == FULL]
    if not fulls:
        first = min(archives, key=lambda a: a[1].watermark_from)
        raise RestoreRefused(
            f"no FULL archive: a DIFF ({first[0].name}, watermark {first[1].watermark_from}..{first[1].watermark_to})"
            " can only be applied over the FULL (or DIFF) it follows"
        )
    if len(fulls) > 1:
        raise RestoreRefused(f"{len(fulls)} FULL archives given; restore one FULL and the DIFFs after it")
    keys = {m.node_key for _, m in archives}
    if len(keys) > 1:
        raise RestoreRefused("the archives were made by different nodes (different node keys)")
    diffs = sorted((a for a in archives if a[1].kind == DIFF), key=lambda a: (a[1].watermark_from, a[1].watermark_to))
    chain = [fulls[0], *diffs]
    for (prev_path, prev), (path, manifest) in itertools.pairwise(chain):
        if manifest.watermark_from != prev.watermark_to:
            gap = "a gap" if manifest.watermark_from > prev.watermark_to else "an overlap"
            raise RestoreRefused(
                f"{gap} in the chain: {prev_path.name} ends at watermark {prev.watermark_to} but the next DIFF,"
                f" {path.name}, starts at {manifest.watermark_from}"
            )
    return chain


async def check_empty(store: Store) -> None:
    if await store.last_seq() or await store.scan_records(limit=1) or await store.homed_prefixes():
        raise RestoreRefused("the target node is not empty; restore into a new data folder")


async def restore_archives(
    store: Store,
    folders: Sequence[Path],
    recipient: X25519PrivateKey,
    signer: Ed25519PublicKey | None = None,
) -> list[Manifest]:
    """Restore ``folders`` (in any order) into the empty ``store``.

    Returns:
        the manifests, in the order applied.

    Raises:
        SignatureInvalid, WrongRecipientKey, ArchiveInvalid: an archive
            fails its checks (nothing is written when it is a signature or
            key; a damaged part stops the restore at that part).
        RestoreRefused: the store is not empty, or the chain is broken.
    """
    read = [(Path(f), read_manifest(Path(f), signer)) for f in folders]
    chain = plan(read)
    secrets = [open_with(m.encryption, recipient) for _, m in chain]
    await check_empty(store)
    homed: set[str] = set()
    for (folder, manifest), secret in zip(chain, secrets, strict=True):
        homed = await _apply(store, folder, manifest, secret, homed)
    return [m for _, m in chain]


async def _apply(store: Store, folder: Path, manifest: Manifest, secret: ArchiveSecret, homed: set[str]) -> set[str]:
    op = Op.CREATE if manifest.kind == FULL else Op.UPDATE
    wanted = {p.upper(): p for p in manifest.prefixes}

    def set_homing(txn: Txn) -> None:
        for key, prefix in wanted.items():
            if key not in homed:
                txn.set_homed(prefix, True, None)
        for key in homed - wanted.keys():
            txn.set_homed(key, False, None)

    await store.transact(set_homing)
    in_flight = await _apply_parts(store, folder, manifest, secret, op)
    if in_flight is not None:
        await in_flight
    return set(wanted)


async def _apply_parts(
    store: Store, folder: Path, manifest: Manifest, secret: ArchiveSecret, op: str
) -> asyncio.Future[Any] | None:
    """Write every part's lines; returns the last transaction, still in flight."""
    in_flight: asyncio.Future[Any] | None = None

    async def submit(batch: list[tuple[str, str, bytes | None]]) -> None:
        nonlocal in_flight
        if in_flight is not None:
            await in_flight
        # The next batch is parsed while this one commits.
        in_flight = asyncio.ensure_future(store.transact(_writer(batch, op)))

    try:
        for number, part in enumerate(manifest.parts, 1):
            check_part_hash(folder, number, part)
            batch: list[tuple[str, str, bytes | None]] = []
            for line in part_lines(folder, number, part, secret):
                try:
                    item = orjson.loads(line)
                    vals = None if item.get("deleted") is True else base64.b64decode(item["vals"], validate=True)
                    batch.append((item["key"], item["handle"], vals))
                except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
                    raise _bad(number, part, f"a line is not a record: {exc}") from None
                if len(batch) >= RESTORE_BATCH:
                    await submit(batch)
                    batch = []
            if batch:
                await submit(batch)
    except BaseException:
        if in_flight is not None:
            await asyncio.gather(in_flight, return_exceptions=True)
        raise
    return in_flight


def _writer(batch: list[tuple[str, str, bytes | None]], op: str):  # type: ignore[no-untyped-def]
    def write(txn: Txn) -> int:
        for key, handle, vals in batch:
            if vals is None:
                txn.delete(key, handle, None)
            else:
                txn.put(key, StoredRecord(handle, vals), op, None)
        return len(batch)

    return write
