"""Benchmark the recursive node: cache hits, cold resolution, cache memory.

Prints, each as the median of ``--runs`` runs (a baseline and its subject
measured in the same run, alternating, so both see the same machine):

a. cache-hit requests/s over HTTP keep-alive (``wrk``, ``--connections``
   connections cycling through ``--handles`` sample handles, every one in the
   in-process tier) against one recursive node process, and against a bare
   aiohttp process answering one constant real answer (``--bare-body``:
   ``each`` handle's own answer instead, or a constant of N bytes); the
   ratio, and each server's CPU time per request (from /proc, steadier than
   requests/s on a shared machine);
b. the same with two worker processes of each, listening on one port with
   SO_REUSEPORT (the kernel spreads connections over the workers, as a
   deployment without a proxy in front does), the resolvers sharing a
   throwaway ``redis-server``;
c. resolution latency through the three-level hierarchy on loopback, p50 and
   p99 of ``RecursiveResolver.resolve()`` of distinct handles: cold (the
   in-process tier emptied before each lookup: no answer, no delegation) and
   with the delegations cached (only the final hop);
d. memory of 100,000 answers in the in-process tier, by tracemalloc and by
   resident memory, against the byte estimate the tier bounds itself by
   (``ENTRY_OVERHEAD_BYTES + len(values_json)``).

The hierarchy (``LocalHierarchy`` over SQLite, with sample products) and
every server run as processes of their own, started by this script with
hidden ``--serve-*`` options and stopped on exit, Ctrl-C included. Only
loopback is used. Not a test: figures depend on the machine. Needs ``wrk``
and ``redis-server`` (Debian packages).

    .venv/bin/python scripts/bench_resolver.py [--runs 3] [--duration 10] [--connections 64] [--only a,b,c,d]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import NamedTuple, Self

import aiohttp
import orjson
from aiohttp import web

from cache.entry import ENTRY_OVERHEAD_BYTES, CacheEntry, EntryKind, answer_key
from cache.layered import LayeredCache
from cache.memory import MemoryCache
from idcore.handle import Handle
from idcore.rest_json import dumps
from resolver.hierarchy import LocalHierarchy, sample_handle
from resolver.metrics import SOURCES, ResolverMetrics
from resolver.recursive import RecursiveResolver
from resolver.recursive_api import METRICS
from resolver.recursive_app import recursive_app
from resolver.resolver_settings import build_resolver_settings
from resolver.serve import tune_garbage_collector
from resolver.upstream import HttpTransport
from scripts.bench_wrk import run_wrk
from scripts.node_process import free_port

SCRIPT = Path(__file__).resolve()
REPO = SCRIPT.parent.parent
HOST = "127.0.0.1"

#: Seconds a server may take to listen, and the hierarchy to register its samples.
START_TIMEOUT = 30
HIERARCHY_START_TIMEOUT = 600

#: Seconds a stopped child may take to finish before it is killed.
STOP_TIMEOUT = 10

#: Handles resolved by the in-process resolver before (c) measures, so its
#: connection pool and the nodes' code paths are warm.
LATENCY_WARMUP_LOOKUPS = 200

#: Keep time of the entries built for (d): a day, so none expires while measured.
MEMORY_KEEP_SECONDS = 86400

# Each wrk thread cycles through every path, so any handle is asked within
# one sweep; the requests are built once, in init (where wrk has set the
# Host header), not per request.
WRK_CYCLE = """
local paths = {%(paths)s}
local requests = {}
local i = 0
init = function(args)
  for n, path in ipairs(paths) do requests[n] = wrk.format("GET", path) end
end
request = function()
  i = i %% #requests + 1
  return requests[i]
end
"""


def median(values: list[float]) -> float:
    return statistics.median(values)


def handle_path(handle: str) -> str:
    return "/api/handles/" + handle


# --- child processes ----------------------------------------------------------------


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when the benchmark dies, however it dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def serve_hierarchy(info: Path, samples: int, data_dir: Path | None) -> None:
    """Run a LocalHierarchy with ``samples`` products until SIGTERM/SIGINT;
    write its bootstrap URL and sample handles to ``info`` once it answers."""

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with LocalHierarchy(data_dir=data_dir) as hierarchy:
            handles = await hierarchy.register_samples(samples)
            tune_garbage_collector()  # as every node process does
            partial = info.with_suffix(".partial")
            partial.write_bytes(orjson.dumps({"bootstrap": hierarchy.top.url, "handles": handles,
                                              "levels": len(hierarchy.prefixes)}))
            partial.rename(info)
            await stop.wait()

    asyncio.run(run())


def serve_resolver(port: int, bootstrap: str, redis_url: str | None, reuse_port: bool, stats: Path) -> None:
    """What ``resolver.serve.run_resolver`` does, with SO_REUSEPORT when
    asked; on shutdown the answers by source go to ``stats``."""
    flags = {"bootstrap": bootstrap, "host": HOST, "port": port, "redis_url": redis_url}
    settings = build_resolver_settings(flags=flags)
    app = recursive_app(settings)

    async def write_stats(app: web.Application) -> None:
        registry = app[METRICS].registry
        counts = {s: registry.get_sample_value("idnode_resolver_answers_total", {"source": s}) for s in SOURCES}
        stats.write_bytes(orjson.dumps(counts))

    app.on_shutdown.append(write_stats)
    tune_garbage_collector()
    web.run_app(app, host=HOST, port=port, access_log=None, print=None, reuse_port=reuse_port)


def serve_bare(port: int, body_file: Path, reuse_port: bool) -> None:
    """A bare aiohttp handler served like the resolver (same GC tuning, no
    access log). ``body_file`` is JSON mapping request paths (without the
    leading slash) to bodies; a path not in it gets the ``""`` entry."""
    bodies = {path: body.encode() for path, body in orjson.loads(body_file.read_bytes()).items()}
    default = bodies[""]
    headers = {"Content-Type": "application/json; charset=utf-8"}

    async def constant(request: web.Request) -> web.Response:
        return web.Response(body=bodies.get(request.match_info["tail"], default), headers=headers)

    app = web.Application()
    app.router.add_get("/{tail:.*}", constant)
    tune_garbage_collector()
    web.run_app(app, host=HOST, port=port, access_log=None, print=None, reuse_port=reuse_port)


class Children:
    """The subprocesses this benchmark starts; all stopped when the block ends."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.procs: list[tuple[subprocess.Popen, Path]] = []

    def start(self, name: str, *args: str) -> subprocess.Popen:
        """This script in one of its child modes (``--serve-*``)."""
        return self.spawn(name, [sys.executable, str(SCRIPT), *args])

    def spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = self.work / f"{name}.log"
        with open(log, "ab") as out:  # the child keeps its own descriptor
            proc = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append((proc, log))
        return proc

    def log_of(self, proc: subprocess.Popen) -> str:
        log = next(log for p, log in self.procs if p is proc)
        return "\n".join(log.read_text(errors="replace").splitlines()[-20:])

    def stop(self, *procs: subprocess.Popen) -> None:
        """SIGTERM (aiohttp shuts down cleanly), then SIGKILL after STOP_TIMEOUT."""
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs = [(p, log) for p, log in self.procs if p not in procs]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop(*(p for p, _ in self.procs))


def listening(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a socket listening on ``port``: with
    SO_REUSEPORT one worker answering says nothing about the other."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port and fields[9] in inodes:
                return True
    return False


def wait_listening(children: Children, procs: list[subprocess.Popen], port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    waiting = list(procs)
    while waiting:
        for proc in waiting:
            if proc.poll() is not None:
                raise SystemExit(f"server exited with {proc.returncode}:\n{children.log_of(proc)}")
        waiting = [p for p in waiting if not listening(p.pid, port)]
        if waiting and time.monotonic() > deadline:
            raise SystemExit(f"server did not listen on {port} within {START_TIMEOUT}s:\n{children.log_of(waiting[0])}")
        time.sleep(0.05)


def start_redis(children: Children, work: Path) -> str:
    """A throwaway redis-server on a free loopback port, without persistence
    (as ``tests/redis_server.py`` runs one); returns its URL."""
    port = free_port()
    log = work / "redis.log"
    proc = children.spawn("redis", [shutil.which("redis-server"), "--port", str(port), "--bind", HOST, "--save", "",
                                    "--appendonly", "no", "--dir", str(work), "--logfile", str(log)])
    wait_listening(children, [proc], port)
    return f"redis://{HOST}:{port}/0"


class Hierarchy(NamedTuple):
    bootstrap: str
    handles: list[str]
    levels: int


def start_hierarchy(children: Children, work: Path, samples: int, store: str) -> Hierarchy:
    info = work / "hierarchy.json"
    info.unlink(missing_ok=True)  # an earlier run's, in the same --work folder
    args = ["--serve-hierarchy", str(info), "--samples", str(samples)]
    if store == "sqlite":
        shutil.rmtree(work / "hierarchy", ignore_errors=True)
        args += ["--data-dir", str(work / "hierarchy")]
    proc = children.start("hierarchy", *args)
    began = time.monotonic()
    while not info.exists():
        if proc.poll() is not None:
            raise SystemExit(f"hierarchy exited with {proc.returncode}:\n{children.log_of(proc)}")
        if time.monotonic() - began > HIERARCHY_START_TIMEOUT:
            raise SystemExit(f"hierarchy not ready within {HIERARCHY_START_TIMEOUT}s:\n{children.log_of(proc)}")
        time.sleep(0.1)
    raw = orjson.loads(info.read_bytes())
    print(f"hierarchy: {raw['levels']} levels over {store}, {len(raw['handles']):,} sample products"
          f" registered in {time.monotonic() - began:.1f} s, bootstrap {raw['bootstrap']}")
    return Hierarchy(raw["bootstrap"], raw["handles"], raw["levels"])


# --- a, b. cache-hit throughput -------------------------------------------------------


async def prewarm(url: str, handles: list[str], *, new_connections: bool) -> list[bytes]:
    """Ask the resolver for every handle once (each resolved upstream or
    taken from Redis); returns the answer bodies. With ``new_connections``
    every request opens its own connection, so SO_REUSEPORT spreads them
    over the workers."""
    bodies = []
    connector = aiohttp.TCPConnector(force_close=new_connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        for handle in handles:
            async with session.get(url + handle_path(handle)) as reply:
                bodies.append(await reply.read())
                if reply.status != 200:
                    raise SystemExit(f"pre-warm: {handle} answered {reply.status}: {bodies[-1][:300]!r}")
    return bodies


def bare_bodies(mode: str, handles: list[str], answers: list[bytes]) -> tuple[dict[str, str], str]:
    """What the bare handler answers, by path, and a description of it.

    ``one``: one real answer (of median size) to every path; ``each``: each
    handle's own answer, as the resolver does; a number: one constant JSON
    body of that many bytes.
    """
    if mode == "each":
        bodies = {handle_path(h)[1:]: a.decode() for h, a in zip(handles, answers, strict=True)}
        bodies[""] = answers[0].decode()
        return bodies, f"each handle's own answer ({min(map(len, answers))}-{max(map(len, answers))} bytes)"
    if mode == "one":
        body = sorted(answers, key=len)[len(answers) // 2]
        return {"": body.decode()}, f"one constant real answer ({len(body)} bytes)"
    shell = '{"responseCode":1,"pad":""}'
    return {"": shell.replace('""', '"' + "x" * max(0, int(mode) - len(shell)) + '"')}, f"a constant {mode}-byte body"


def read_stats(paths: list[Path]) -> list[dict[str, float]]:
    return [orjson.loads(p.read_bytes()) if p.exists() else {} for p in paths]


def bench_hits(children: Children, work: Path, hierarchy: Hierarchy, args: argparse.Namespace, workers: int,
               redis_url: str | None) -> dict[str, float]:
    """Measure (a) with one worker, (b) with two; returns the medians."""
    label = "a" if workers == 1 else "b"
    handles = hierarchy.handles[: args.handles]
    reuse = ["--reuse-port"] if workers > 1 else []
    resolver_port, bare_port = free_port(), free_port()
    stats = [work / f"{label}-resolver-{n}.json" for n in range(workers)]
    for path in stats:
        path.unlink(missing_ok=True)
    resolvers = []
    for n in range(workers):
        extra = ["--redis-url", redis_url] if redis_url else []
        resolvers.append(children.start(f"{label}-resolver-{n}", "--serve-resolver", str(resolver_port),
                                        "--bootstrap", hierarchy.bootstrap, "--stats", str(stats[n]), *extra, *reuse))
    wait_listening(children, resolvers, resolver_port)
    resolver_url = f"http://{HOST}:{resolver_port}"
    answers = asyncio.run(prewarm(resolver_url, handles, new_connections=workers > 1))
    bodies, bare_answers = bare_bodies(args.bare_body, handles, answers)
    body_file = work / "bare-body.json"
    body_file.write_bytes(orjson.dumps(bodies))
    bares = [children.start(f"{label}-bare-{n}", "--serve-bare", str(bare_port), "--body", str(body_file), *reuse)
             for n in range(workers)]
    wait_listening(children, bares, bare_port)
    bare_url = f"http://{HOST}:{bare_port}"

    script = work / "cycle.lua"
    script.write_text(WRK_CYCLE % {"paths": ", ".join(f'"{handle_path(h)}"' for h in handles)})
    resolver_pids, bare_pids = [p.pid for p in resolvers], [p.pid for p in bares]
    connections, threads = args.connections, args.wrk_threads
    run_wrk(resolver_url, script, args.warmup, connections, threads=threads, pids=resolver_pids)  # every worker gets every handle in memory
    run_wrk(bare_url, script, args.warmup, connections, threads=threads, pids=bare_pids)
    pairs = []
    for run in range(args.runs):  # alternate which goes first
        if run % 2 == 0:
            bare_run = run_wrk(bare_url, script, args.duration, connections, threads=threads, pids=bare_pids)
            node_run = run_wrk(resolver_url, script, args.duration, connections, threads=threads, pids=resolver_pids)
        else:
            node_run = run_wrk(resolver_url, script, args.duration, connections, threads=threads, pids=resolver_pids)
            bare_run = run_wrk(bare_url, script, args.duration, connections, threads=threads, pids=bare_pids)
        pairs.append((node_run, bare_run))
        print(f"   run {run + 1}: resolver {node_run.rate:,.0f}/s ({node_run.cpu_us:.0f} us CPU a request),"
              f" bare aiohttp {bare_run.rate:,.0f}/s ({bare_run.cpu_us:.0f} us), ratio {node_run.rate / bare_run.rate:.2f}")
    children.stop(*resolvers, *bares)
    by_source = read_stats(stats)
    shown = "; ".join(
        f"worker {n + 1}: " + ", ".join(f"{s} {int(c or 0):,}" for s, c in a.items() if c) for n, a in enumerate(by_source)
    )
    print(f"   resolver answers by source (pre-warm and warm-up included): {shown or 'not reported'}")

    figures = {
        "resolver": median([n.rate for n, _ in pairs]),
        "bare": median([b.rate for _, b in pairs]),
        "ratio": median([n.rate / b.rate for n, b in pairs]),
        "resolver_cpu": median([n.cpu_us for n, _ in pairs]),
        "bare_cpu": median([b.cpu_us for _, b in pairs]),
        "cpu_ratio": median([b.cpu_us / n.cpu_us for n, b in pairs]),
    }
    what = "one process" if workers == 1 else f"{workers} processes on one port (SO_REUSEPORT), Redis shared"
    print(f"{label}. cache hits over HTTP keep-alive, {what}, {args.connections} connections cycling through"
          f" {len(handles)} handles (answers {min(map(len, answers))}-{max(map(len, answers))} bytes),"
          f" bare answering {bare_answers}: resolver median {figures['resolver']:,.0f}/s,"
          f" bare aiohttp median {figures['bare']:,.0f}/s, ratio median {figures['ratio']:.2f} (target >= 0.80);"
          f" server CPU a request {figures['resolver_cpu']:.0f} us vs {figures['bare_cpu']:.0f} us,"
          f" ratio by CPU {figures['cpu_ratio']:.2f}")
    return figures


# --- c. resolution latency --------------------------------------------------------------


@contextlib.asynccontextmanager
async def in_process_resolver(bootstrap: str) -> AsyncIterator[RecursiveResolver]:
    """A RecursiveResolver as ``recursive_app`` builds it, in-process tier only."""
    settings = build_resolver_settings(flags={"bootstrap": bootstrap})
    async with HttpTransport() as transport:
        local = MemoryCache(max_entries=settings.memory_max_entries, max_bytes=settings.memory_max_bytes)
        cache = LayeredCache(local, None, stale_window=settings.policy.stale_window)
        resolver = RecursiveResolver(
            settings.bootstrap, cache, transport, policy=settings.policy, metrics=ResolverMetrics(),
            request_timeout=settings.request_timeout, time_budget=settings.time_budget,
        )
        try:
            yield resolver
        finally:
            await resolver.close()


async def timed_lookups(resolver: RecursiveResolver, handles: list[str], *, cold: bool, hops: int) -> list[float]:
    """Milliseconds per ``resolve()``; the in-process tier is emptied before
    each one when ``cold``. Checks every lookup took ``hops`` upstream requests."""
    times = []
    for text in handles:
        handle = Handle.from_text(text)
        if cold:
            resolver.memory.clear()
        began = time.perf_counter()
        result = await resolver.resolve(handle)
        times.append((time.perf_counter() - began) * 1000)
        if result.source != "upstream" or len(result.hops) != hops:
            raise SystemExit(f"{text}: answered from {result.source} with {len(result.hops)} hops, expected {hops}")
    return times


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


async def bench_latency(hierarchy: Hierarchy, args: argparse.Namespace) -> dict[str, float]:
    fresh = hierarchy.handles[args.handles:]
    sets = [fresh[i * args.lookups:(i + 1) * args.lookups] for i in range(2 * args.runs)]
    tune_garbage_collector()  # as a serving node does
    cold_runs, warm_runs = [], []
    async with in_process_resolver(hierarchy.bootstrap) as resolver:
        await timed_lookups(resolver, hierarchy.handles[:LATENCY_WARMUP_LOOKUPS], cold=True, hops=hierarchy.levels)
        for run in range(args.runs):
            for kind in (("cold", "warm") if run % 2 == 0 else ("warm", "cold")):
                handles = sets[2 * run + (kind == "warm")]
                if kind == "warm":  # one lookup caches the delegations
                    resolver.memory.clear()
                    await resolver.resolve(Handle.from_text(hierarchy.handles[0]))
                    times = await timed_lookups(resolver, handles, cold=False, hops=1)
                    warm_runs.append(times)
                else:
                    cold_runs.append(await timed_lookups(resolver, handles, cold=True, hops=hierarchy.levels))
            cold, warm = cold_runs[-1], warm_runs[-1]
            print(f"   run {run + 1}: cold p50 {median(cold):.2f} ms, p99 {p99(cold):.2f} ms;"
                  f" delegations cached p50 {median(warm):.2f} ms, p99 {p99(warm):.2f} ms")
    figures = {
        "cold_p50": median([median(t) for t in cold_runs]),
        "cold_p99": median([p99(t) for t in cold_runs]),
        "warm_p50": median([median(t) for t in warm_runs]),
        "warm_p99": median([p99(t) for t in warm_runs]),
    }
    print(f"c. resolution latency on loopback, {args.lookups:,} distinct handles per line and run:"
          f" cold through {hierarchy.levels} levels p50 {figures['cold_p50']:.2f} ms, p99 {figures['cold_p99']:.2f} ms;"
          f" delegations cached (final hop only) p50 {figures['warm_p50']:.2f} ms, p99 {figures['warm_p99']:.2f} ms")
    return figures


# --- d. memory of the in-process tier ---------------------------------------------------


async def real_values(bootstrap: str, handles: list[str]) -> list[bytes]:
    """``values_json`` of the handles' answers as the resolver caches them."""
    async with in_process_resolver(bootstrap) as resolver:
        return [(await resolver.resolve(Handle.from_text(h))).entry.values_json for h in handles]


def rss_anon_bytes() -> int:
    match = re.search(r"RssAnon:\s+(\d+) kB", Path("/proc/self/status").read_text())
    return int(match.group(1)) * 1024 if match else 0


def fill(cache: MemoryCache, records: list[str], count: int, prefix: str) -> list[CacheEntry]:
    """Store ``count`` answers, cycling through ``records`` (each entry its
    own bytes, as if parsed from its own reply)."""
    now = time.time()
    entries = []
    for number in range(1, count + 1):
        name = sample_handle(prefix, number)
        entry = CacheEntry(EntryKind.ANSWER, name, records[number % len(records)].encode(), 86400, now)
        cache.store(answer_key(Handle.from_text(name).key), entry, MEMORY_KEEP_SECONDS)
        entries.append(entry)
    return entries


def memoize(entries: list[CacheEntry]) -> None:
    """Give each entry the reply body a first hit leaves in its memo
    (as ``recursive_api._answer_body`` builds it)."""
    for entry in entries:
        entry.memo[entry.name] = b'{"responseCode":1,"handle":' + dumps(entry.name) + b',"values":' + entry.values_json + b"}"


def measure_memory(values_file: Path, count: int) -> None:
    """Print, as JSON, bytes per entry of ``count`` answers in a MemoryCache:
    by RssAnon (first, without tracemalloc), then by tracemalloc; each as
    stored and after the memo body of a first hit. The list of entries this
    function holds on to is not counted."""
    raw = orjson.loads(values_file.read_bytes())
    records, prefix = raw["values"], raw["prefix"]
    out: dict[str, float] = {}
    own_list = sys.getsizeof([None] * count)

    def fresh_cache() -> MemoryCache:
        return MemoryCache(max_entries=count, max_bytes=2**62)

    gc.collect()
    before = rss_anon_bytes()
    cache = fresh_cache()
    entries = fill(cache, records, count, prefix)
    gc.collect()
    stored = rss_anon_bytes()
    memoize(entries)
    out["rss_stored"] = (stored - before - own_list) / count
    out["rss_memo"] = (rss_anon_bytes() - before - own_list) / count
    out["estimate"] = statistics.fmean(ENTRY_OVERHEAD_BYTES + len(e.values_json) for e in entries)
    out["entry_size"] = cache.bytes / count
    out["values_json"] = statistics.fmean(len(e.values_json) for e in entries)
    del entries, cache
    gc.collect()

    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    cache = fresh_cache()
    entries = fill(cache, records, count, prefix)
    gc.collect()
    out["traced_stored"] = (tracemalloc.get_traced_memory()[0] - before - own_list) / count
    memoize(entries)
    out["traced_memo"] = (tracemalloc.get_traced_memory()[0] - before - own_list) / count
    tracemalloc.stop()
    print(orjson.dumps(out).decode())


def bench_memory(hierarchy: Hierarchy, work: Path, args: argparse.Namespace) -> dict[str, float]:
    values = asyncio.run(real_values(hierarchy.bootstrap, hierarchy.handles[: args.handles]))
    values_file = work / "values.json"
    prefix = hierarchy.handles[0].split("/")[0]
    values_file.write_bytes(orjson.dumps({"prefix": prefix, "values": [v.decode() for v in values]}))
    runs = []
    for run in range(args.runs):  # a fresh process each run: nothing else in its heap
        out = subprocess.run([sys.executable, str(SCRIPT), "--measure-memory", str(values_file),
                              "--entries", str(args.entries)], cwd=REPO, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise SystemExit(f"memory measurement failed:\n{out.stderr}")
        runs.append(orjson.loads(out.stdout.strip().splitlines()[-1]))
        r = runs[-1]
        print(f"   run {run + 1}: tracemalloc {r['traced_stored']:.0f} bytes an entry ({r['traced_memo']:.0f} with a memo"
              f" body), RssAnon {r['rss_stored']:.0f} ({r['rss_memo']:.0f}), estimate {r['estimate']:.0f}")
    figures = {key: median([r[key] for r in runs]) for key in runs[0]}
    per = 100_000 / 1e6
    print(f"d. in-process tier, {args.entries:,} answers of {len(values)} real sample records"
          f" (values_json {figures['values_json']:.0f} bytes on average):"
          f" tracemalloc {figures['traced_stored']:.0f} bytes an entry = {figures['traced_stored'] * per:.1f} MB per 100k"
          f" ({figures['traced_memo']:.0f} bytes = {figures['traced_memo'] * per:.1f} MB once each was served and holds"
          f" its reply body); RssAnon {figures['rss_stored']:.0f} ({figures['rss_memo']:.0f}) bytes an entry;"
          f" estimate ENTRY_OVERHEAD_BYTES ({ENTRY_OVERHEAD_BYTES}) + len(values_json) = {figures['estimate']:.0f} bytes"
          f" = {figures['estimate'] * per:.1f} MB per 100k (CacheEntry.size, which the byte bound sums,"
          f" {figures['entry_size']:.0f})")
    return figures


# --- driver ---------------------------------------------------------------------------------


def summary(results: dict[str, dict[str, float]], runs: int) -> None:
    rows: list[tuple[str, str]] = []
    for label, what in (("a", "1 process"), ("b", "2 processes + Redis")):
        if label in results:
            f = results[label]
            rows += [
                (f"{label}. resolver cache hits, {what}", f"{f['resolver']:,.0f} req/s, {f['resolver_cpu']:.0f} us CPU/req"),
                (f"{label}. bare aiohttp, {what}", f"{f['bare']:,.0f} req/s, {f['bare_cpu']:.0f} us CPU/req"),
                (f"{label}. ratio resolver/bare", f"{f['ratio']:.2f} by req/s, {f['cpu_ratio']:.2f} by CPU (target >= 0.80)"),
            ]
    if "c" in results:
        f = results["c"]
        rows += [
            ("c. cold, 3 levels", f"p50 {f['cold_p50']:.2f} ms, p99 {f['cold_p99']:.2f} ms"),
            ("c. delegations cached, final hop", f"p50 {f['warm_p50']:.2f} ms, p99 {f['warm_p99']:.2f} ms"),
        ]
    if "d" in results:
        f = results["d"]
        rows += [
            ("d. tracemalloc, as stored", f"{f['traced_stored']:.0f} B/entry, {f['traced_stored'] / 10:.1f} MB/100k"),
            ("d. tracemalloc, with memo body", f"{f['traced_memo']:.0f} B/entry, {f['traced_memo'] / 10:.1f} MB/100k"),
            ("d. RssAnon, as stored / with memo", f"{f['rss_stored']:.0f} / {f['rss_memo']:.0f} B/entry"),
            ("d. estimate (overhead + values)", f"{f['estimate']:.0f} B/entry, {f['estimate'] / 10:.1f} MB/100k"),
        ]
    width = max(len(name) for name, _ in rows)
    print(f"\nsummary (medians of {runs} runs)")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")


def child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--serve-hierarchy", type=Path)
    mode.add_argument("--serve-resolver", type=int)
    mode.add_argument("--serve-bare", type=int)
    mode.add_argument("--measure-memory", type=Path)
    parser.add_argument("--samples", type=int)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--bootstrap")
    parser.add_argument("--redis-url")
    parser.add_argument("--stats", type=Path)
    parser.add_argument("--body", type=Path)
    parser.add_argument("--reuse-port", action="store_true")
    parser.add_argument("--entries", type=int)
    args = parser.parse_args(argv)
    if args.measure_memory:
        measure_memory(args.measure_memory, args.entries)
        return
    _die_with_parent()
    if args.serve_hierarchy:
        serve_hierarchy(args.serve_hierarchy, args.samples, args.data_dir)
    elif args.serve_resolver:
        serve_resolver(args.serve_resolver, args.bootstrap, args.redis_url, args.reuse_port, args.stats)
    else:
        serve_bare(args.serve_bare, args.body, args.reuse_port)


def _bare_body(text: str) -> str:
    if text in ("one", "each") or text.isdigit():
        return text
    raise argparse.ArgumentTypeError("give one, each or a number of bytes")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # a SIGTERM stops the servers as Ctrl-C does


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs per figure; the median is reported")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=5, help="seconds of wrk warm-up per server (default %(default)s)")
    parser.add_argument("--connections", type=int, default=64, help="keep-alive connections for wrk")
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (default 1: the machine has 2 cores)")
    parser.add_argument("--handles", type=int, default=300, help="hot handles the load cycles through")
    parser.add_argument("--lookups", type=int, default=3000, help="distinct handles per latency line and run")
    parser.add_argument("--entries", type=int, default=100_000, help="entries for the memory figure")
    parser.add_argument("--bare-body", default="one", type=_bare_body,
                        help="what the bare handler answers: 'one' real answer of median size to every request"
                             " (default), 'each' handle's own answer as the resolver does, or a constant body"
                             " of N bytes")
    parser.add_argument("--store", choices=("sqlite", "memory"), default="sqlite", help="the hierarchy's store")
    parser.add_argument("--only", default="a,b,c,d", help="comma-separated parts among a,b,c,d")
    parser.add_argument("--work", help="work folder (default: a temporary one, removed afterwards)")
    args = parser.parse_args()
    parts = {p.strip() for p in args.only.split(",") if p.strip()}
    if not parts <= {"a", "b", "c", "d"}:
        parser.error("--only takes a comma-separated subset of a,b,c,d")
    if parts & {"a", "b"} and shutil.which("wrk") is None:
        print("wrk not found: skipping a and b (install it with: apt-get install wrk)")
        parts -= {"a", "b"}
    if "b" in parts and shutil.which("redis-server") is None:
        print("redis-server not found: skipping b (install it with: apt-get install redis-server)")
        parts.discard("b")
    signal.signal(signal.SIGTERM, _interrupt)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="idnode-bench-resolver-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, work folder {work}")
    results: dict[str, dict[str, float]] = {}
    samples = args.handles + (2 * args.runs * args.lookups if "c" in parts else 0)
    try:
        with Children(work) as children:
            hierarchy = start_hierarchy(children, work, samples, args.store)
            if "a" in parts:
                results["a"] = bench_hits(children, work, hierarchy, args, 1, None)
            if "b" in parts:
                redis_url = start_redis(children, work)
                results["b"] = bench_hits(children, work, hierarchy, args, 2, redis_url)
            if "c" in parts:
                results["c"] = asyncio.run(bench_latency(hierarchy, args))
            if "d" in parts:
                results["d"] = bench_memory(hierarchy, work, args)
    except KeyboardInterrupt:
        print("interrupted; every server stopped", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    if results:
        summary(results, args.runs)


if __name__ == "__main__":
    if any(a in sys.argv for a in ("--serve-hierarchy", "--serve-resolver", "--serve-bare", "--measure-memory")):
        child_main(sys.argv[1:])
    else:
        main()
