"""``idnode resolver``, ``idnode resolve``, ``idnode flush`` and ``idnode demo``
as real processes.

The hierarchy the resolver walks runs in this test process, in a thread with
its own event loop (so that blocking subprocess calls here do not stop it);
the recursive node and every client are separate ``idnode`` processes. The
demo test runs the whole README walkthrough as one ``idnode demo`` process.
"""

from __future__ import annotations

import asyncio
import http.server
import re
import subprocess
import threading
from typing import Any, Awaitable, Callable

import orjson
import pytest

from resolver.hierarchy import LocalHierarchy, sample_handle
from scripts.node_process import IDNODE, START_TIMEOUT, free_port, run_cli
from tests.resolver.front_fixtures import put_record, text_value
from tests.scripts.demo_process import (
    get_json,
    interrupt,
    start_demo,
    wait_until_answering,
)

ENTERPRISE = "88.118.2"
PLAIN = sample_handle(ENTERPRISE, 1)
MISSING = f"{ENTERPRISE}/NO-SUCH-PRODUCT"

#: One line of ``--trace`` output: number, level, server, milliseconds, outcome.
HOP_LINE = re.compile(r"^\s+(\d+)\. (\S+)\s+(http://\S+)\s+(\d+\.\d\d) ms  (.+)$")


class HierarchyThread:
    """A :class:`LocalHierarchy` (in memory, with sample products) served
    from a thread of this process until the context exits."""

    def __init__(self, samples: int = 20) -> None:
        self.samples = samples
        self.nodes: dict[str, str] = {}  #: prefix -> base URL
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._hierarchy: LocalHierarchy | None = None
        self._thread = threading.Thread(target=self._run, name="hierarchy", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to the test thread, not lost in this one
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with LocalHierarchy() as hierarchy:
            await hierarchy.register_samples(self.samples)
            self._hierarchy = hierarchy
            self.nodes = {prefix: node.url for prefix, node in hierarchy.nodes.items()}
            self._ready.set()
            await self._stop.wait()

    @property
    def top(self) -> str:
        return self.nodes["88"]

    def call(self, work: Callable[[LocalHierarchy], Awaitable[Any]]) -> Any:
        """Run ``work(hierarchy)`` on the hierarchy's own loop and wait for it."""
        assert self._loop is not None and self._hierarchy is not None
        return asyncio.run_coroutine_threadsafe(work(self._hierarchy), self._loop).result(30)

    def __enter__(self) -> HierarchyThread:
        self._thread.start()
        assert self._ready.wait(START_TIMEOUT), "the hierarchy did not start"
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        assert not self._thread.is_alive()
        if self._error is not None:
            raise self._error


@pytest.fixture(scope="module")
def hierarchy():
    with HierarchyThread() as nodes:
        yield nodes


@pytest.fixture(scope="module")
def resolver(hierarchy, tmp_path_factory):
    """``idnode resolver --bootstrap TOP --port P`` as a subprocess; its URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("resolver") / "resolver.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [*IDNODE, "resolver", "--bootstrap", hierarchy.top, "--port", str(port), "--log-level", "warning"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(url + "/healthz", process, log)
        yield url
    finally:
        status = interrupt(process)
    assert status == 0, log.read_text(errors="replace")
    assert f"idnode recursive node on http://127.0.0.1:{port}/" in log.read_text()


def resolve(resolver: str, *args: str) -> subprocess.CompletedProcess:
    return run_cli("resolve", *args, "--resolver", resolver)


def test_resolve_prints_the_records_values_and_where_the_answer_came_from(resolver):
    handle = sample_handle(ENTERPRISE, 3)
    first = resolve(resolver, handle)
    assert first.returncode == 0, first.stderr
    out = first.stdout.decode()
    assert out.splitlines()[0] == f"{handle}  (answered from upstream)"
    assert re.search(r"^\s+2001  PRODUCT_NAME\s+工业相机 IC-5M$", out, re.MULTILINE)
    assert re.search(r"^\s+2004  BATCH\s+B-202601-000$", out, re.MULTILINE)
    assert re.search(r"^\s+100  HS_ADMIN\s+\{.*\"handle\":\"0.NA/88.118.2\"", out, re.MULTILINE)
    assert re.search(r"^\(\d+\.\d\d ms round trip to the resolver\)$", out, re.MULTILINE)
    again = resolve(resolver, handle)
    assert again.stdout.decode().splitlines()[0] == f"{handle}  (answered from memory)"


@pytest.mark.parametrize(
    "form", ["hdl:{h}", "{h}\r\n", "https://id.example.cn/{h}", "HTTPS://ID.EXAMPLE.CN/api/handles/{h}"]
)
def test_resolve_accepts_every_input_form_of_an_identifier(resolver, form):
    done = resolve(resolver, form.format(h=PLAIN))
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().startswith(PLAIN + "  (answered from ")


def test_resolve_sends_a_handle_with_spaces_unicode_and_url_delimiters_intact(resolver, hierarchy):
    handle = f"{ENTERPRISE}/零件 #7?x=1&y=%41"
    hierarchy.call(lambda h: put_record(h.enterprise, handle, [text_value(2001, "PRODUCT_NAME", "齿轮")]))
    done = resolve(resolver, handle)
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    assert out.startswith(f"{handle}  (answered from upstream)")
    assert "齿轮" in out


def test_resolve_asks_for_a_suffix_with_dot_segments_as_it_is(resolver, hierarchy):
    dotted, plain = f"{ENTERPRISE}/lot/../7", f"{ENTERPRISE}/7"
    hierarchy.call(lambda h: put_record(h.enterprise, dotted, [text_value(2001, "PRODUCT_NAME", "dotted")]))
    hierarchy.call(lambda h: put_record(h.enterprise, plain, [text_value(2001, "PRODUCT_NAME", "plain")]))
    done = resolve(resolver, dotted)
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    assert out.startswith(f"{dotted}  (answered from upstream)")
    assert "dotted" in out and "plain" not in out


def test_resolve_json_prints_the_reply_as_parseable_json(resolver):
    done = resolve(resolver, PLAIN, "--json")
    assert done.returncode == 0, done.stderr
    body = orjson.loads(done.stdout)
    assert body["responseCode"] == 1 and body["handle"] == PLAIN
    assert {v["type"] for v in body["values"]} >= {"PRODUCT_NAME", "MODEL", "ORIGIN"}


def test_resolve_trace_prints_the_three_hops_with_their_timings(resolver, hierarchy):
    done = resolve(resolver, sample_handle(ENTERPRISE, 4), "--trace")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.decode().splitlines()
    assert lines[0] == f"trace of {sample_handle(ENTERPRISE, 4)} via {resolver}:"
    matches = [HOP_LINE.match(line) for line in lines[1:4]]
    hops = [m.groups() for m in matches if m is not None]
    assert len(hops) == 3, lines[1:4]
    assert [(number, level, server) for number, level, server, _, _ in hops] == [
        ("1", "(bootstrap)", hierarchy.nodes["88"]),
        ("2", "88.118", hierarchy.nodes["88.118"]),
        ("3", "88.118.2", hierarchy.nodes["88.118.2"]),
    ]
    assert [outcome for *_, outcome in hops] == ["referral to 88.118", "referral to 88.118.2", "answer (8 values)"]
    total = sum(float(ms) for _, _, _, ms, _ in hops)
    summary = re.fullmatch(r"  3 request\(s\), (\d+\.\d\d) ms upstream", lines[4])
    assert summary is not None and abs(float(summary.group(1)) - total) < 0.05
    assert lines[5] == f"{sample_handle(ENTERPRISE, 4)}  (answered from upstream)"


def test_resolve_json_trace_is_parseable_too(resolver):
    done = resolve(resolver, PLAIN, "--json", "--trace")
    assert done.returncode == 0, done.stderr
    body = orjson.loads(done.stdout)
    assert [hop["level"] for hop in body["trace"]] == ["(bootstrap)", "88.118", "88.118.2"]
    assert all(hop["ms"] >= 0 for hop in body["trace"])


def test_resolve_of_a_handle_that_does_not_exist_exits_1(resolver):
    done = resolve(resolver, MISSING)
    assert done.returncode == 1
    assert f"{MISSING}: response code 100: Handle Not Found" in done.stderr.decode()
    assert PLAIN not in done.stdout.decode()


def test_resolve_of_text_that_is_not_an_identifier_exits_2(resolver):
    done = resolve(resolver, "PRD-2026-000001")
    assert done.returncode == 2
    assert "'PRD-2026-000001' is not an identifier" in done.stderr.decode()
    assert "has no '/'" in done.stderr.decode()


@pytest.mark.parametrize("resolver_url", ["resolver.example.cn", "http://[::1", "ftp://127.0.0.1:8000"])
def test_resolve_with_a_resolver_that_is_not_an_http_url_exits_2(resolver_url):
    done = resolve(resolver_url, PLAIN)
    assert done.returncode == 2
    assert f"--resolver {resolver_url!r} is not an http(s):// URL" in done.stderr.decode()


def test_resolve_with_no_resolver_listening_exits_3():
    done = resolve(f"http://127.0.0.1:{free_port()}", PLAIN)
    assert done.returncode == 3
    assert "cannot reach http://127.0.0.1:" in done.stderr.decode()


class HtmlOnly(http.server.BaseHTTPRequestHandler):
    """A web server that is not a resolver: every path is an HTML page."""

    def do_GET(self) -> None:
        body = b"<html><body>Welcome to nginx!</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_resolve_against_something_that_is_not_a_resolver_exits_3():
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), HtmlOnly) as server:
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        try:
            done = resolve(f"http://127.0.0.1:{server.server_address[1]}", PLAIN)
        finally:
            server.shutdown()
            thread.join()
    assert done.returncode == 3
    assert "answered HTTP 200 with a body that is not JSON" in done.stderr.decode()


def test_resolve_when_the_resolver_cannot_reach_the_hierarchy_exits_1(tmp_path):
    # a resolver whose bootstrap node is down answers 502; the command reports it
    port, dead = free_port(), free_port()
    log = tmp_path / "resolver.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [*IDNODE, "resolver", "--bootstrap", f"http://127.0.0.1:{dead}", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_answering(f"http://127.0.0.1:{port}/healthz", process, log)
        done = resolve(f"http://127.0.0.1:{port}", PLAIN)
    finally:
        assert interrupt(process) == 0
    assert done.returncode == 1
    stderr = done.stderr.decode()
    assert f"{PLAIN}: response code 2: no server of the bootstrap (top-level) sites answered" in stderr
    assert "cannot connect" in stderr


def test_flush_forgets_a_cached_answer(resolver):
    handle = sample_handle(ENTERPRISE, 5)
    assert resolve(resolver, handle).returncode == 0
    assert "answered from memory" in resolve(resolver, handle).stdout.decode()
    flushed = run_cli("flush", handle, "--resolver", resolver)
    assert flushed.returncode == 0, flushed.stderr
    assert flushed.stdout.decode().strip() == f"flushed {handle}: 1 entry"
    assert "answered from upstream" in resolve(resolver, handle).stdout.decode()
    by_prefix = run_cli("flush", "--prefix", ENTERPRISE, "--resolver", resolver)
    assert by_prefix.returncode == 0, by_prefix.stderr
    assert re.fullmatch(rf"flushed everything under {ENTERPRISE}: \d+ entr(y|ies)\n", by_prefix.stdout.decode())
    assert "answered from upstream" in resolve(resolver, handle).stdout.decode()
    both = run_cli("flush", handle, "--prefix", "88.118.2", "--resolver", resolver)
    assert both.returncode == 2 and "not both" in both.stderr.decode()


def test_resolver_refuses_a_bootstrap_that_is_not_a_url():
    done = run_cli("resolver", "--bootstrap", "top-node.example:8000", "--port", str(free_port()))
    assert done.returncode == 4
    assert "must be http(s)://<IP address>:<port>" in done.stderr.decode()


# --- the demo ------------------------------------------------------------------------


def test_the_demo_resolves_a_sample_through_all_three_levels_and_stops_on_ctrl_c(tmp_path):
    data = tmp_path / "demo"
    process, port, log = start_demo(data, tmp_path, samples=20)
    resolver = f"http://127.0.0.1:{port}"
    try:
        body = get_json(f"{resolver}/api/handles/{sample_handle(ENTERPRISE, 20)}?trace=true")
        assert body["responseCode"] == 1
        assert any(v["type"] == "PRODUCT_NAME" for v in body["values"])
        assert [(hop["level"], hop["server"]) for hop in body["trace"]] == [
            ("(bootstrap)", f"http://127.0.0.1:{port + 1}"),
            ("88.118", f"http://127.0.0.1:{port + 2}"),
            ("88.118.2", f"http://127.0.0.1:{port + 3}"),
        ]
        assert body["trace"][-1]["outcome"].startswith("answer (")
        # the command the demo tells people to try
        traced = run_cli("resolve", sample_handle(ENTERPRISE, 1), "--trace", "--resolver", resolver)
        assert traced.returncode == 0, traced.stderr
        assert len([line for line in traced.stdout.decode().splitlines() if HOP_LINE.match(line)]) == 3
        # the 21st sample was never registered
        assert run_cli("resolve", sample_handle(ENTERPRISE, 21), "--resolver", resolver).returncode == 1
    finally:
        status = interrupt(process)
    output = log.read_text(errors="replace")
    assert status == 0, output
    assert f"recursive node   (any)      {resolver}" in output
    assert output.rstrip().endswith("demo stopped")
    assert {p.name for p in data.iterdir()} == {"88", "88.118", "88.118.2"}

    # "its data stays": a second run, on other ports, serves the first run's data
    process, port, log = start_demo(data, tmp_path, samples=25)
    try:
        body = get_json(f"http://127.0.0.1:{port}/api/handles/{sample_handle(ENTERPRISE, 20)}?trace=true")
        assert [hop["server"] for hop in body["trace"]] == [f"http://127.0.0.1:{port + n}" for n in (1, 2, 3)]
        assert get_json(f"http://127.0.0.1:{port}/api/handles/{sample_handle(ENTERPRISE, 25)}")["responseCode"] == 1
    finally:
        assert interrupt(process) == 0, log.read_text(errors="replace")
