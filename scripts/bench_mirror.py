"""Benchmark a mirror's catch-up rate: journal entries/s applied by a mirror
reading a primary node (its own process, over loopback) from sequence 0.

:func:`bench_catch_up` does the work (``scripts/bench_backup.py`` calls it
for its third figure). The primary, a real ``idnode serve`` process, is
loaded once with ``entries`` records (one journal entry each, through
``POST /api/batch``); its last sequence number, record count and records
digest (:func:`registry.backup.digest.records_digest`) are then read. Each
run starts a mirror with an empty SQLite store (``synchronous=FULL``, as
``idnode mirror`` runs) in this process and times :meth:`Mirror.catch_up`
from sequence 0 until its cursor reaches the primary's last sequence: HTTP
pages of ``batch`` entries (records included), each applied as one
transaction, cursor file synced after each. Untimed, each run is then
checked: cursor (in memory and in the state file) at the primary's last
sequence, the same record count and the same digest as the primary.
Prints every run and the median.

Not a test: figures depend on the machine.

    .venv/bin/python scripts/bench_mirror.py [--entries 200000] [--runs 3] [--batch 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

from idcore.settings import DATABASE_NAME
from registry.backup.digest import records_digest
from registry.mirror import STATE_NAME, Mirror, read_state
from registry.node_setup import init_node
from registry.service import Registry
from registry.sqlite_store import SqliteStore
from resolver.hierarchy import sample_values
from resolver.journal_api import MAX_JOURNAL_PAGE
from resolver.mirror_app import HttpFeed
from resolver.rest_client import basic_auth_header
from scripts.node_process import NodeProcess

PREFIX = "88.118.2"
SECRET = "bench-secret"
IDENTITY = "300:0.NA/88.118.2"

#: Lines per chunk of the streamed load batch.
LOAD_CHUNK = 1000


class MirrorMismatch(AssertionError):
    """A mirror that reported itself caught up does not hold the primary's data."""


async def load(url: str, entries: int) -> None:
    async def chunks():
        for first in range(0, entries, LOAD_CHUNK):
            yield b"".join(
                orjson.dumps({"handle": f"{PREFIX}/B-{i:07d}", "values": sample_values(PREFIX, i)}) + b"\n"
                for i in range(first, min(entries, first + LOAD_CHUNK))
            )

    headers = {"Authorization": basic_auth_header(IDENTITY, SECRET), "Content-Type": "application/x-ndjson"}
    timeout = aiohttp.ClientTimeout(total=None)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.post(url + "/api/batch", data=chunks(), headers=headers) as reply,
    ):
        assert reply.status == 200, reply.status
        refused = 0
        async for raw in reply.content:
            refused += orjson.loads(raw)["responseCode"] != 1
        assert refused == 0, f"{refused} lines refused"


async def primary_last(url: str) -> int:
    """The primary's last journal sequence number, as its feed reports it."""
    async with HttpFeed(url) as feed:
        return (await feed.fetch(0, 1)).last


async def store_facts(path: Path) -> tuple[int, str, int]:
    """``(last sequence, records digest, record count)`` of the SQLite store at ``path``."""
    async with SqliteStore(path) as store:
        last = await store.last_seq()
        digest, count = await records_digest(store)
    return last, digest, count


async def catch_up_once(url: str, folder: Path, batch: int) -> tuple[int, float, int]:
    """A fresh mirror of ``url`` in ``folder`` catches up from sequence 0:
    ``(entries applied, seconds, applied sequence)``."""
    folder.mkdir()
    async with SqliteStore(folder / DATABASE_NAME) as store, HttpFeed(url) as feed:
        registry = Registry(store)
        await registry.open()
        mirror = Mirror(registry, feed, folder / STATE_NAME, url, batch=batch)
        assert mirror.applied_seq == 0
        started = time.perf_counter()
        applied = await mirror.catch_up()
        seconds = time.perf_counter() - started
        return applied, seconds, mirror.applied_seq


async def bench_catch_up(work: Path, entries: int, runs: int, batch: int = MAX_JOURNAL_PAGE) -> list[float]:
    """Load a primary node process (data folder under ``work``) with
    ``entries`` records, then ``runs`` times time a fresh mirror catching
    up from it and check what it holds. Returns the rates (entries/s).

    Raises:
        MirrorMismatch: a mirror's cursor, record count or digest differs
            from the primary's.
    """
    work.mkdir(parents=True, exist_ok=True)
    primary_dir = work / "primary"
    shutil.rmtree(primary_dir, ignore_errors=True)
    await init_node(primary_dir, PREFIX, site_address="127.0.0.1", site_port=8000, secret=SECRET)
    rates: list[float] = []
    with NodeProcess(primary_dir) as primary:
        started = time.perf_counter()
        await load(primary.url, entries)
        took = time.perf_counter() - started
        print(f"primary node (own process, {primary.url}): {entries:,} records loaded through"
              f" POST /api/batch in {took:.1f} s ({entries / took:,.0f}/s)", flush=True)
        last = await primary_last(primary.url)
        # The primary is idle from here on: read its store beside it (SQLite WAL allows a second reader).
        own_last, digest, count = await store_facts(primary_dir / DATABASE_NAME)
        if own_last != last or count < entries:
            raise MirrorMismatch(f"primary: feed says last {last}, store {own_last}; {count:,} records for {entries:,}")
        print(f"   primary: last sequence {last:,}, {count:,} records, digest {digest}", flush=True)
        for run in range(1, runs + 1):
            folder = work / f"mirror-{run}"
            shutil.rmtree(folder, ignore_errors=True)
            applied, seconds, applied_seq = await catch_up_once(primary.url, folder, batch)
            state = read_state(folder / STATE_NAME) or {}
            _, got_digest, got_count = await store_facts(folder / DATABASE_NAME)
            checks = [
                (applied_seq, last, "cursor"),
                (state.get("applied_seq"), last, "cursor file"),
                (applied, last, "entries applied"),
                (got_count, count, "records"),
                (got_digest, digest, "digest"),
            ]
            problems = [f"{what} {got} (primary: {want})" for got, want, what in checks if got != want]
            if problems:
                raise MirrorMismatch(f"run {run}: the caught-up mirror differs: {'; '.join(problems)}")
            rates.append(applied / seconds)
            print(f"   run {run}: mirror catch-up {rates[-1]:,.0f} entries/s ({applied:,} entries in {seconds:.2f} s;"
                  f" cursor {applied_seq:,} = primary's last, {got_count:,} records, digest equal)", flush=True)
            shutil.rmtree(folder)
    return rates


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=200_000, help="records loaded into the primary")
    parser.add_argument("--runs", type=int, default=3, help="runs; the median is reported")
    parser.add_argument("--batch", type=int, default=MAX_JOURNAL_PAGE, help="journal entries per pull")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-mirror-") as tmp:
        rates = await bench_catch_up(Path(tmp), args.entries, args.runs, args.batch)
    print(f"mirror catch-up: median {statistics.median(rates):,.0f} entries/s over {args.runs} runs"
          f" (batch {args.batch}, {args.entries:,} records, primary over loopback)")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
