"""Benchmark backups and mirrors: FULL backup and restore throughput in
records/s, and a mirror's catch-up rate in journal entries/s.

Builds one source node of ``--records`` typical product identifiers
(written straight through ``SqliteStore.transact``, 10,000 records a
transaction, records encoded with ``registry.records.encode_record``), then
prints every run and, for each figure, the median of ``--runs`` runs:

1. FULL backup (scan, NDJSON, encrypt, hash, sign; parts fsynced) records/s;
2. restore of that archive into a fresh SQLite node (``synchronous=FULL``,
   as a served node runs; decrypt, check, write) records/s;
3. mirror catch-up (``scripts/bench_mirror.py``'s
   :func:`~scripts.bench_mirror.bench_catch_up`): a primary node in its own
   process loaded with ``--mirror-entries`` records through
   ``POST /api/batch``; each run a fresh mirror (``synchronous=FULL``) reads
   its journal over loopback HTTP from sequence 0, timed until its cursor
   reaches the primary's last sequence, then checked to hold the primary's
   record count and records digest. Entries/s.

and checks once that the restored node's digest equals the source's.
Not a test: figures depend on the machine (and its disk).

    .venv/bin/python scripts/bench_backup.py [--records 1000000] [--runs 3]
        [--mirror-entries N (default: --records; 0 skips)] [--mirror-batch 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from idcore.values import HandleValue
from registry.backup.archive import DEFAULT_VOLUME_BYTES
from registry.backup.create import create_backup
from registry.backup.digest import records_digest
from registry.backup.manifest import FULL
from registry.backup.restore import RESTORE_BATCH, restore_archives
from registry.records import encode_record
from registry.sqlite_store import _SCHEMA, _UPSERT, SqliteStore
from registry.store import Op
from resolver.journal_api import MAX_JOURNAL_PAGE
from scripts.bench_mirror import bench_catch_up

PREFIX = "88.118.2"

#: Records per transaction when building the source node.
FILL_BATCH = 10_000


def product(i: int) -> tuple[str, object]:
    handle = f"{PREFIX}/PRD-{i:08d}"
    values = [
        HandleValue(1, "URL", f"https://trace.example.com/p/{i:08d}".encode()),
        HandleValue(2001, "PRODUCT_NAME", "RV-40 减速机".encode()),
        HandleValue(2002, "BATCH", f"B-2024-{i // 10000:04d}".encode()),
        HandleValue(2003, "PRODUCTION_DATE", b"2024-11-26"),
    ]
    return handle, encode_record(handle, values, [1732600000] * len(values))


async def build_source(path: Path, records: int) -> float:
    began = time.perf_counter()
    async with SqliteStore(path) as store:
        await store.transact(lambda txn: txn.set_homed(PREFIX, True, None))
        for start in range(0, records, FILL_BATCH):
            batch = [product(i) for i in range(start, min(records, start + FILL_BATCH))]

            def write(txn, batch=batch):
                for handle, record in batch:
                    txn.put(handle, record, Op.CREATE, None)

            await store.transact(write)
    return time.perf_counter() - began


def sqlite_ceiling(rows: list[tuple[str, str, bytes]], path: Path) -> float:
    """Rows/s of the bare SQLite writes a restore makes, as the baseline of
    the restore figure: the node's schema, ``synchronous=FULL``, each record
    upserted with its journal row, RESTORE_BATCH a transaction, straight
    from a list in memory (no decrypting, parsing or store on top)."""
    for stale in path.parent.glob(path.name + "*"):
        stale.unlink()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.executescript(_SCHEMA)
        began = time.perf_counter()
        for start in range(0, len(rows), RESTORE_BATCH):
            batch = rows[start : start + RESTORE_BATCH]
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(_UPSERT, batch)
            conn.executemany("INSERT INTO journal (at_ms, op, handle, actor) VALUES (?, ?, ?, ?)",
                             [(0, Op.CREATE, handle, None) for _, handle, _ in batch])
            conn.execute("COMMIT")
        return len(rows) / (time.perf_counter() - began)
    finally:
        conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="identifiers in the source node")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure; the median is reported")
    parser.add_argument("--volume-size", type=int, default=DEFAULT_VOLUME_BYTES, help="plaintext bytes per part")
    parser.add_argument("--mirror-entries", type=int, help="records (journal entries) in the primary a mirror"
                        " catches up from (default: --records; 0 skips the mirror figure)")
    parser.add_argument("--mirror-batch", type=int, default=MAX_JOURNAL_PAGE, help="journal entries per mirror pull")
    parser.add_argument("--work", help="folder for the nodes and archives (default: a temporary folder)")
    args = parser.parse_args()
    mirror_entries = args.records if args.mirror_entries is None else args.mirror_entries
    sys.stdout.reconfigure(line_buffering=True)  # each run's figure as it comes, also into a file

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench-backup-"))
    work.mkdir(parents=True, exist_ok=True)
    recipient, node = X25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    source = work / "source.sqlite3"
    for stale in work.glob("source.sqlite3*"):
        stale.unlink()
    took = await build_source(source, args.records)
    print(f"source node: {args.records:,} identifiers written in {took:.1f} s ({args.records / took:,.0f}/s)")

    backup_rates, restore_rates, archive = [], [], None
    async with SqliteStore(source) as store:
        expected = await records_digest(store)
        for run in range(args.runs):
            out = work / f"archives-{run}"
            shutil.rmtree(out, ignore_errors=True)
            began = time.perf_counter()
            result = await create_backup(store, kind=FULL, out_dir=out, recipient=recipient.public_key(),
                                         node_key=node, volume_bytes=args.volume_size)
            seconds = time.perf_counter() - began
            backup_rates.append(result.manifest.records / seconds)
            archive = result
            size = sum(p.size for p in result.manifest.parts)
            print(f"   run {run + 1}: backup {backup_rates[-1]:,.0f} records/s ({seconds:.2f} s,"
                  f" {len(result.manifest.parts)} parts, {size / 2**20:.0f} MiB)")
    assert archive is not None
    with sqlite3.connect(source) as db:
        rows = db.execute("SELECT key, handle, vals FROM handles ORDER BY key").fetchall()
    ceiling_rates = []
    for run in range(args.runs):
        target = work / f"restored-{run}"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        async with SqliteStore(target / "idnode.sqlite3") as store:
            began = time.perf_counter()
            await restore_archives(store, [archive.folder], recipient)
            seconds = time.perf_counter() - began
            restore_rates.append(archive.manifest.records / seconds)
            print(f"   run {run + 1}: restore {restore_rates[-1]:,.0f} records/s ({seconds:.2f} s)", end="")
            if run == 0:
                got = await records_digest(store)
                print(f", digest {'equal' if got == expected else 'DIFFERENT'}: {got[0]} ({got[1]:,} records)", end="")
        shutil.rmtree(target)
        ceiling_rates.append(sqlite_ceiling(rows, work / "ceiling.sqlite3"))  # alternating with the restores
        print(f"; bare SQLite writes {ceiling_rates[-1]:,.0f} rows/s, ratio {restore_rates[-1] / ceiling_rates[-1]:.2f}")
    del rows
    mirror_rates = []
    if mirror_entries:
        mirror_rates = await bench_catch_up(work / "mirror", mirror_entries, args.runs, args.mirror_batch)
    print(f"1. FULL backup:       median {statistics.median(backup_rates):,.0f} records/s over {args.runs} runs"
          f" of {archive.manifest.records:,} records")
    print(f"2. restore:           median {statistics.median(restore_rates):,.0f} records/s over {args.runs} runs"
          f" of {archive.manifest.records:,} records; bare SQLite writes of the same rows"
          f" {statistics.median(ceiling_rates):,.0f} rows/s, ratio"
          f" {statistics.median(r / c for r, c in zip(restore_rates, ceiling_rates, strict=True)):.2f}")
    if mirror_rates:
        print(f"3. mirror catch-up:   median {statistics.median(mirror_rates):,.0f} entries/s over {args.runs} runs"
              f" of {mirror_entries:,} records (batch {args.mirror_batch}, primary over loopback)")
    if not args.work:
        shutil.rmtree(work)


if __name__ == "__main__":
    asyncio.run(main())
