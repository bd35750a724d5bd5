"""Benchmark the registry: batch registration and resolution throughput.

Prints, each as the median of ``--runs`` runs:

1. registrations/s for a ``--lines`` batch streamed through ``POST /api/batch``
   of a node running as its own process (a fresh database each run), with the
   node's peak resident memory;
2. registrations/s straight through the store (``SqliteStore.transact`` with
   records already encoded), through the registry (parse, authorise, encode,
   store), and the raw SQLite ceiling for rows of the same size (bare
   ``executemany`` of the handle and journal rows, no idnode code);
3. resolutions/s over HTTP keep-alive (``wrk``, random handles of a key set,
   after one sweep over the set has warmed the node's record cache) against
   the node, and in the same run against a bare aiohttp handler returning a
   constant JSON body of the same size, with the ratio.

Not a test: figures depend on the machine. Needs ``wrk`` (Debian package).

    .venv/bin/python scripts/bench_registry.py [--lines 1000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp
import orjson

from idcore import limits
from idcore.rest_json import values_from_json
from idcore.values import ValueReference
from registry.batch import parse_line
from registry.node_setup import init_node
from registry.records import encode_record
from registry.service import Registry
from registry.sqlite_store import SqliteStore
from registry.store import Op
from resolver.rest_client import basic_auth_header
from resolver.serve import tune_garbage_collector
from scripts.bench_wrk import run_wrk
from scripts.node_process import NodeProcess, free_port

PREFIX = "88.118.2"
SECRET = "bench-secret"
IDENTITY = "300:0.NA/88.118.2"

BARE_SERVER = """
import sys
from aiohttp import web
BODY = open(sys.argv[2], "rb").read()
async def constant(request):
    return web.Response(body=BODY, content_type="application/json")
app = web.Application()
app.router.add_get("/{tail:.*}", constant)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""

WRK_SCRIPT = """
math.randomseed(%(seed)d)
request = function()
  return wrk.format("GET", "/api/handles/%(prefix)s/PRD-" .. string.format("%%08d", math.random(0, %(keys)d - 1)))
end
"""

# Asks for every handle of the key set in turn: one sweep warms the node's
# record cache completely.
WRK_SWEEP = """
counter = -1
request = function()
  counter = (counter + 1) %% %(keys)d
  return wrk.format("GET", "/api/handles/%(prefix)s/PRD-" .. string.format("%%08d", counter))
end
"""

#: Requests per second assumed when sizing the warm-up sweep (a low guess,
#: so the sweep covers the whole key set).
SWEEP_RATE_GUESS = 4000


def product_line(i: int) -> bytes:
    """One batch line: a typical product record (URL and three fields)."""
    return orjson.dumps({
        "handle": f"{PREFIX}/PRD-{i:08d}",
        "values": [
            {"index": 1, "type": "URL", "data": {"format": "string", "value": f"https://trace.example.com/p/{i:08d}"}},
            {"index": 2001, "type": "PRODUCT_NAME", "data": "RV-40 减速机"},
            {"index": 2002, "type": "BATCH", "data": f"B-2024-{i // 10000:04d}"},
            {"index": 2003, "type": "PRODUCTION_DATE", "data": "2024-11-26"},
        ],
    }) + b"\n"


def write_batch(path: Path, lines: int) -> None:
    with path.open("wb") as f:
        for start in range(0, lines, 10_000):
            f.write(b"".join(product_line(i) for i in range(start, min(lines, start + 10_000))))


def median(values: list[float]) -> float:
    return statistics.median(values)


# --- 1. batch through the HTTP API ---------------------------------------------


class RssSampler:
    """Samples a process's private resident memory (RssAnon: what it holds
    itself, without file pages mapped from its database) every ``interval``
    seconds."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid, self.interval, self.samples = pid, interval, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                text = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return
            match = re.search(r"RssAnon:\s+(\d+) kB", text)
            if match:
                self.samples.append(int(match.group(1)) / 1024)
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def upload(url: str, batch_file: Path) -> tuple[int, int]:
    """Stream ``batch_file`` to the node; count result lines and failures."""
    async def chunks():
        with batch_file.open("rb") as f:
            while chunk := f.read(256 * 1024):
                yield chunk

    headers = {"Authorization": basic_auth_header(IDENTITY, SECRET), "Content-Type": "application/x-ndjson"}
    ok = failed = 0
    timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.post(url + "/api/batch", data=chunks(), headers=headers) as reply:
            reply.raise_for_status()
            async for raw in reply.content:
                if b'"responseCode":1,' in raw:
                    ok += 1
                else:
                    failed += 1
                    if failed <= 3:
                        print("   refused:", raw.decode().strip(), file=sys.stderr)
    return ok, failed


async def fresh_node(folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    await init_node(folder, PREFIX, site_address="127.0.0.1", site_port=8000, secret=SECRET)
    return folder


async def bench_http_batch(work: Path, batch_file: Path, lines: int, runs: int) -> Path:
    rates, peaks, starts = [], [], []
    node_dir = work / "http-node"
    for run in range(runs):
        await fresh_node(node_dir)
        with NodeProcess(node_dir) as node, RssSampler(node.process.pid) as rss:
            time.sleep(0.5)
            base_rss = rss.samples[-1] if rss.samples else 0.0
            began = time.perf_counter()
            ok, failed = await upload(node.url, batch_file)
            elapsed = time.perf_counter() - began
        if ok != lines or failed:
            raise SystemExit(f"batch run {run + 1}: {ok} ok, {failed} refused of {lines}")
        rates.append(lines / elapsed)
        peaks.append(max(rss.samples))
        starts.append(base_rss)
        quarters = [rss.samples[min(len(rss.samples) - 1, len(rss.samples) * q // 4)] for q in (1, 2, 3, 4)]
        print(f"   run {run + 1}: {lines / elapsed:,.0f} registrations/s ({elapsed:.1f} s);"
              f" node RssAnon {base_rss:.0f} MiB at start, then {' / '.join(f'{m:.0f}' for m in quarters)} MiB"
              f" at each quarter, {max(rss.samples):.0f} MiB peak")
    print(f"1. HTTP batch: median {median(rates):,.0f} registrations/s over {runs} runs of {lines:,} lines;"
          f" node peak RssAnon median {median(peaks):.0f} MiB (start {median(starts):.0f} MiB)")
    return node_dir


# --- 2. straight through the store and the registry ----------------------------


def encoded_records(lines: int) -> list[tuple[str, object]]:
    values = [values_from_json(orjson.loads(product_line(i))["values"]) for i in range(min(lines, 1))][0]
    out = []
    for i in range(lines):
        handle = f"{PREFIX}/PRD-{i:08d}"
        url = values[0].replace(data=f"https://trace.example.com/p/{i:08d}".encode())
        out.append((handle, encode_record(handle, [url, *values[1:]], [1732600000] * len(values))))
    return out


async def bench_store(work: Path, lines: int, runs: int) -> None:
    records = encoded_records(lines)
    chunk = limits.BATCH_COMMIT_OPS
    rates = []
    for run in range(runs):
        folder = await fresh_node(work / "store-node")
        async with SqliteStore(folder / "idnode.sqlite3") as store:
            began = time.perf_counter()
            for start in range(0, lines, chunk):
                part = records[start:start + chunk]

                def write(txn, part=part):
                    for handle, record in part:
                        txn.put(handle, record, Op.CREATE, IDENTITY)

                await store.transact(write)
            rates.append(lines / (time.perf_counter() - began))
        print(f"   run {run + 1}: store {rates[-1]:,.0f} records/s")
    print(f"2a. store (SqliteStore.transact, {chunk} records a transaction): median {median(rates):,.0f} records/s;"
          f" stored form {len(records[0][1].blob)} bytes a record")

    rows = [(handle, handle, record.blob) for handle, record in records]
    raw_rates = []
    for _ in range(runs):
        path = work / "raw.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("CREATE TABLE handles (key TEXT PRIMARY KEY, handle TEXT NOT NULL, vals BLOB NOT NULL)")
        conn.execute("CREATE TABLE journal (seq INTEGER PRIMARY KEY AUTOINCREMENT, at_ms INTEGER, op TEXT, handle TEXT, actor TEXT)")
        began = time.perf_counter()
        for start in range(0, lines, chunk):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT INTO handles VALUES (?, ?, ?)", rows[start:start + chunk])
            conn.executemany("INSERT INTO journal (at_ms, op, handle, actor) VALUES (1, 'create', ?, ?)",
                             [(r[0], IDENTITY) for r in rows[start:start + chunk]])
            conn.execute("COMMIT")
        raw_rates.append(lines / (time.perf_counter() - began))
        conn.close()
    print(f"2b. raw SQLite ceiling (same rows, bare executemany): median {median(raw_rates):,.0f} rows/s;"
          f" the store reaches {median(rates) / median(raw_rates):.2f} of it")

    tune_garbage_collector()  # as a serving node does
    registry_lines = min(lines, 200_000)
    raw_lines = [product_line(i) for i in range(registry_lines)]
    identity = ValueReference("0.NA/88.118.2", 300)
    reg_rates = []
    for _ in range(runs):
        folder = await fresh_node(work / "registry-node")
        async with SqliteStore(folder / "idnode.sqlite3") as store:
            registry = Registry(store)
            await registry.open()
            began = time.perf_counter()
            for start in range(0, registry_lines, chunk):
                items = [parse_line(i + 1, raw) for i, raw in enumerate(raw_lines[start:start + chunk], start)]
                results = await registry.apply_batch(items, identity)
                assert all(r["responseCode"] == 1 for r in results), results[:3]
            reg_rates.append(registry_lines / (time.perf_counter() - began))
    print(f"2c. registry (parse, authorise, encode, store; no HTTP): median {median(reg_rates):,.0f} registrations/s"
          f" ({registry_lines:,} lines a run)")


# --- 3. resolution over HTTP -----------------------------------------------------


async def bench_resolution(work: Path, node_dir: Path, keys: int, runs: int, seconds: int, connections: int) -> None:
    script = work / "random.lua"
    script.write_text(WRK_SCRIPT % {"seed": 7, "prefix": PREFIX, "keys": keys})
    sweep = work / "sweep.lua"
    sweep.write_text(WRK_SWEEP % {"prefix": PREFIX, "keys": keys})
    with NodeProcess(node_dir) as node:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{node.url}/api/handles/{PREFIX}/PRD-00000001") as reply:
                body = await reply.read()
                assert reply.status == 200, body
        sample = work / "body.json"
        sample.write_bytes(body)
        bare_port = free_port()
        bare = subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(bare_port), str(sample)])
        try:
            time.sleep(1.5)
            bare_url = f"http://127.0.0.1:{bare_port}"
            # warm-up: one sweep over the key set fills the node's record cache
            run_wrk(node.url, sweep, keys // SWEEP_RATE_GUESS + 2, connections)
            run_wrk(bare_url, script, 2, connections)
            pairs = []
            for run in range(runs):  # node and bare alternate, so both see the same machine
                node_run = run_wrk(node.url, script, seconds, connections, pids=[node.process.pid])
                bare_run = run_wrk(bare_url, script, seconds, connections, pids=[bare.pid])
                pairs.append((node_run, bare_run))
                print(f"   run {run + 1}: node {node_run.rate:,.0f}/s ({node_run.cpu_us:.0f} us CPU a request),"
                      f" bare aiohttp {bare_run.rate:,.0f}/s ({bare_run.cpu_us:.0f} us), ratio {node_run.rate / bare_run.rate:.2f}")
        finally:
            bare.terminate()
            bare.wait()
    node_rate = median([n.rate for n, _ in pairs])
    bare_rate = median([b.rate for _, b in pairs])
    ratio = median([n.rate / b.rate for n, b in pairs])
    cpu_ratio = median([b.cpu_us / n.cpu_us for n, b in pairs])
    print(f"3. resolution over HTTP keep-alive ({connections} connections, {keys:,} random handles, {len(body)}-byte answers):"
          f" node median {node_rate:,.0f}/s, bare aiohttp median {bare_rate:,.0f}/s, ratio median {ratio:.2f}"
          f" (by server CPU per request: {cpu_ratio:.2f})")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000, help="batch size (default %(default)s)")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure; the median is reported")
    parser.add_argument("--resolve-runs", type=int, default=7, help="alternating node/bare resolution runs")
    parser.add_argument("--keys", type=int, default=100_000, help="distinct handles resolved (default %(default)s)")
    parser.add_argument("--seconds", type=int, default=6, help="seconds per resolution run")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections for wrk")
    parser.add_argument("--only", choices=("http", "store", "resolve"), help="run one part (resolve needs http)")
    parser.add_argument("--work", help="work folder (default: a temporary one, removed afterwards)")
    args = parser.parse_args()
    if shutil.which("wrk") is None and args.only in (None, "resolve"):
        raise SystemExit("wrk is needed for the resolution benchmark: apt-get install wrk")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="idnode-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, work folder {work}")
    try:
        batch_file = work / "batch.ndjson"
        if args.only in (None, "http", "resolve"):
            write_batch(batch_file, args.lines)
            node_dir = await bench_http_batch(work, batch_file, args.lines, args.runs)
            if args.only in (None, "resolve"):
                await bench_resolution(
                    work, node_dir, min(args.keys, args.lines), args.resolve_runs, args.seconds, args.connections
                )
        if args.only in (None, "store"):
            await bench_store(work, args.lines, args.runs)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
