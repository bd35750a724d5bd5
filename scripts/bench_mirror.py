"""Benchmark a mirror's catch-up rate: journal entries/s applied by a mirror
reading a primary node (its own process, over loopback) from sequence 0.

The primary is loaded once with ``--entries`` records (one journal entry
each, through ``POST /api/batch``). Each run starts a mirror with an empty
SQLite store (``synchronous=FULL``, as ``idnode mirror`` runs) in this
process and times :meth:`Mirror.catch_up`: HTTP pages of ``--batch``
entries (records included), each applied as one transaction, cursor file
synced after each. Prints every run and the median.

Not a test: figures depend on the machine.

    .venv/bin/python scripts/bench_mirror.py [--entries 200000] [--runs 3] [--batch 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

from idcore.settings import DATABASE_NAME
from registry.mirror import STATE_NAME, Mirror
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


async def load(url: str, entries: int) -> None:
    async def chunks():
        for first in range(entries):
            if first % LOAD_CHUNK == 0:
                yield b"".join(
                    orjson.dumps({"handle": f"{PREFIX}/B-{i:07d}", "values": sample_values(PREFIX, i)}) + b"\n"
                    for i in range(first, min(entries, first + LOAD_CHUNK))
                )

    headers = {"Authorization": basic_auth_header(IDENTITY, SECRET), "Content-Type": "application/x-ndjson"}
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.post(url + "/api/batch", data=chunks(), headers=headers) as reply:
            assert reply.status == 200, reply.status
            refused = 0
            async for raw in reply.content:
                refused += orjson.loads(raw)["responseCode"] != 1
            assert refused == 0, f"{refused} lines refused"


async def catch_up_once(url: str, folder: Path, batch: int) -> tuple[int, float]:
    folder.mkdir()
    async with SqliteStore(folder / DATABASE_NAME) as store, HttpFeed(url) as feed:
        registry = Registry(store)
        await registry.open()
        mirror = Mirror(registry, feed, folder / STATE_NAME, url, batch=batch)
        started = time.perf_counter()
        applied = await mirror.catch_up()
        return applied, time.perf_counter() - started


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=MAX_JOURNAL_PAGE)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-mirror-") as tmp:
        work = Path(tmp)
        await init_node(work / "primary", PREFIX, site_address="127.0.0.1", site_port=8000, secret=SECRET)
        with NodeProcess(work / "primary") as primary:
            started = time.perf_counter()
            await load(primary.url, args.entries)
            print(f"primary loaded with {args.entries} records in {time.perf_counter() - started:.1f}s", flush=True)
            rates = []
            for run in range(1, args.runs + 1):
                applied, seconds = await catch_up_once(primary.url, work / f"mirror-{run}", args.batch)
                rates.append(applied / seconds)
                print(f"run {run}: {applied} entries in {seconds:.2f}s = {applied / seconds:,.0f} entries/s", flush=True)
    print(f"mirror catch-up, median of {args.runs}: {statistics.median(rates):,.0f} entries/s "
          f"(batch {args.batch}, {args.entries} records, primary over loopback)")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
