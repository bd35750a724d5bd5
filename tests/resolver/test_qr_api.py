"""``GET /qr/{handle}.png|.svg`` on authoritative and recursive nodes: every
image decodes back to exactly its payload, at the level, size and
resolution asked for; bad parameters are refused by name.

Nodes and resolvers are real aiohttp servers on loopback (a
:class:`LocalHierarchy`); images are decoded with zxing-cpp (PNG directly,
SVG after rasterising with cairosvg), as a scanner would read them.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import threading
import time
import urllib.request
from pathlib import Path

import aiohttp
import cairosvg
import pytest
import yarl
from PIL import Image

from idcore.handle import Handle, parse, url_path
from idcore.rest_json import values_from_json
from idcore.values import ValueReference
from qr.payload import DEFAULT_RESOLVER_URL
from qr.symbol import ModuleSize, make_symbol
from qr.verify import Decoded, decode, open_image
from resolver import qr_render
from resolver.node_app import build_node_app
from resolver.qr_api import RENDERER
from resolver.qr_render import ImageJob, Renderer
from scripts.node_process import NodeProcess, free_port, run_cli
from tests.resolver.conftest import sample
from tests.resolver.front_fixtures import put_record, take_down, text_value

CHINESE = "88.118.2/批次-2024/产品 1"  #: a suffix with CJK, a "/" and a space
PUBLIC_URL = "https://ID.Example.CN/r/"  #: as an operator might write it


def png_code(body: bytes) -> Decoded:
    codes = decode(open_image(body))
    assert len(codes) == 1, codes
    return codes[0]


def svg_code(body: bytes, modules: int) -> Decoded:
    """Rasterised at 8 pixels a module, as a print preview would be."""
    png = cairosvg.svg2png(bytestring=body, output_width=modules * 8, output_height=modules * 8)
    return png_code(png)


def qr_path(handle: str, kind: str = "png") -> yarl.URL:
    return yarl.URL(f"/qr/{url_path(handle)}.{kind}", encoded=True)


def modules_of(payload: str, level: str = "Q") -> int:
    return make_symbol(payload, level).modules


@pytest.fixture
async def node_client(aiohttp_client, registry):
    """The node of 88.118.2 (memory store) with QR codes pointing to PUBLIC_URL."""
    await put_record_at(registry, "88.118.2/PRD-1")
    await put_record_at(registry, CHINESE)
    return await aiohttp_client(build_node_app(registry, resolver_url=PUBLIC_URL))


async def put_record_at(registry, handle: str) -> None:
    admin = ValueReference("0.NA/88.118.2", 300)
    await registry.put(Handle.from_text(handle), values_from_json([text_value(2001, "PRODUCT_NAME", "减速机")]), admin)


# --- the node ------------------------------------------------------------------------


async def test_a_node_png_decodes_to_the_url_of_its_resolver_at_level_q_and_300_dpi(node_client):
    reply = await node_client.get(qr_path("88.118.2/PRD-1"))
    assert reply.status == 200
    assert reply.content_type == "image/png"
    assert reply.headers["Cache-Control"] == "public, max-age=86400"
    body = await reply.read()
    payload = "https://id.example.cn/r/88.118.2/PRD-1"  # scheme and host lower-cased, no trailing slash
    code = png_code(body)
    assert (code.text, code.level) == (payload, "Q")
    image = Image.open(io.BytesIO(body))
    dots = ModuleSize.snapped(0.5, 300).dots
    assert image.size == (modules_of(payload) * dots,) * 2
    assert round(image.info["dpi"][0]) == 300
    assert parse(code.text, base_path="/r").to_text() == "88.118.2/PRD-1"


async def test_a_node_svg_decodes_and_is_sized_in_millimetres(node_client):
    reply = await node_client.get(qr_path("88.118.2/PRD-1", "svg"), params={"module": "0.8", "dpi": "600"})
    assert reply.status == 200
    assert reply.content_type == "image/svg+xml"
    body = await reply.read()
    payload = "https://id.example.cn/r/88.118.2/PRD-1"
    modules = modules_of(payload)
    assert svg_code(body, modules).text == payload
    width = float(re.search(rb'width="([0-9.]+)mm"', body).group(1))
    assert width == pytest.approx(modules * ModuleSize.snapped(0.8, 600).mm, abs=1e-3)


@pytest.mark.parametrize("level", ["L", "M", "Q", "H", "h"])
@pytest.mark.parametrize("kind", ["png", "svg"])
async def test_the_level_asked_for_is_the_level_decoded(node_client, level, kind):
    reply = await node_client.get(qr_path("88.118.2/PRD-1", kind), params={"level": level})
    assert reply.status == 200
    body = await reply.read()
    payload = "https://id.example.cn/r/88.118.2/PRD-1"
    code = png_code(body) if kind == "png" else svg_code(body, modules_of(payload, level.upper()))
    assert (code.text, code.level) == (payload, level.upper())


@pytest.mark.parametrize(
    ("params", "dots"),
    [
        ({"dpi": "600", "module": "1"}, 24),  # 1 mm at 600 dpi: 23.6 dots, snapped to 24
        ({"dpi": "203", "module": "0.33"}, 3),  # a 203-dpi thermal label printer
        ({"dpi": "72", "module": "0.1"}, 1),  # never less than one dot
    ],
)
async def test_png_pixels_are_modules_times_dots(node_client, params, dots):
    reply = await node_client.get(qr_path("88.118.2/PRD-1"), params={**params, "form": "handle"})
    body = await reply.read()
    image = Image.open(io.BytesIO(body))
    assert image.size[0] == modules_of("88.118.2/PRD-1") * dots
    assert round(image.info["dpi"][0]) == int(params["dpi"])
    assert png_code(body).text == "88.118.2/PRD-1"


async def test_size_sets_the_whole_symbol_width_snapped_to_dots(node_client):
    modules = modules_of("88.118.2/PRD-1")
    reply = await node_client.get(qr_path("88.118.2/PRD-1"), params={"size": "20", "form": "handle", "dpi": "300"})
    body = await reply.read()
    dots = ModuleSize.snapped(20 / modules, 300).dots
    assert Image.open(io.BytesIO(body)).size[0] == modules * dots
    reply = await node_client.get(qr_path("88.118.2/PRD-1", "svg"), params={"size": "20", "form": "handle"})
    width = float(re.search(rb'width="([0-9.]+)mm"', await reply.read()).group(1))
    assert width == pytest.approx(20, abs=ModuleSize.snapped(0.1, 300).mm * modules / 2)


async def test_a_chinese_suffix_round_trips_in_both_forms(node_client):
    reply = await node_client.get(qr_path(CHINESE), params={"form": "handle"})
    assert reply.status == 200
    assert png_code(await reply.read()).text == CHINESE
    reply = await node_client.get(qr_path(CHINESE, "svg"))
    payload = "https://id.example.cn/r/" + url_path(CHINESE)
    assert svg_code(await reply.read(), modules_of(payload)).text == payload
    assert parse(payload, base_path="/r").to_text() == CHINESE


@pytest.mark.parametrize(
    ("query", "parameter", "fragment"),
    [
        ("level=X", "level", "L, M, Q, H"),
        ("level=", "level", "L, M, Q, H"),
        ("dpi=abc", "dpi", "72..2400"),
        ("dpi=71", "dpi", "72..2400"),
        ("dpi=2401", "dpi", "72..2400"),
        ("dpi=300.5", "dpi", "whole number"),
        ("module=0.09", "module", "0.1..5"),
        ("module=5.01", "module", "0.1..5"),
        ("module=nan", "module", "0.1..5"),
        ("module=1e0", "module", "0.1..5"),
        ("module=-1", "module", "0.1..5"),
        ("size=2", "size", "2.9..925"),
        ("size=926", "size", "2.9..925"),
        ("size=3", "size", "size must be in"),  # a valid size, but modules under 0.1 mm for this code
        ("module=1&size=30", "size", "not both"),
        ("form=text", "form", "url or handle"),
        ("level=L&level=H", "level", "more than once"),
        ("colour=red", "colour", "level, dpi, module, size, form"),
        ("dpi=2400&module=5", "dpi", "MAX_PNG_SIDE_PIXELS"),
    ],
)
async def test_every_bad_parameter_is_a_400_naming_it(node_client, query, parameter, fragment):
    reply = await node_client.get(yarl.URL(f"/qr/88.118.2/PRD-1.png?{query}", encoded=True))
    assert reply.status == 400
    assert reply.headers["Cache-Control"] == "no-store"
    body = await reply.json()
    assert body["responseCode"] == 202
    assert parameter in body["message"] and fragment in body["message"]


async def test_unknown_handles_and_formats_are_404_and_delegated_ones_400(node_client, hierarchy):
    reply = await node_client.get(qr_path("88.118.2/NO-SUCH"))
    assert reply.status == 404
    assert reply.headers["Cache-Control"] == "no-store"
    assert (await reply.json()) == {
        "responseCode": 100, "message": "88.118.2/NO-SUCH does not exist", "handle": "88.118.2/NO-SUCH"
    }
    reply = await node_client.get("/qr/88.118.2/PRD-1.gif")
    assert reply.status == 404 and "png or .svg" in (await reply.json())["message"]
    reply = await node_client.get("/qr/not-a-handle.png")
    assert reply.status == 400 and (await reply.json())["responseCode"] == 102
    # the top node of a hierarchy holds a delegation, not the record
    async with aiohttp.ClientSession() as session:
        async with session.get(hierarchy.top.url + f"/qr/{sample(1)}.png") as top:
            assert top.status == 400
            assert (await top.json())["responseCode"] == 301
        async with session.get(hierarchy.enterprise.url + f"/qr/{sample(1)}.png") as enterprise:
            assert enterprise.status == 200  # the demo hierarchy's nodes point to the demo resolver
            assert png_code(await enterprise.read()).text == f"{DEFAULT_RESOLVER_URL}/{sample(1)}"


async def test_head_and_other_methods(node_client):
    reply = await node_client.head(qr_path("88.118.2/PRD-1"))
    assert reply.status == 200 and reply.content_type == "image/png"
    reply = await node_client.post(qr_path("88.118.2/PRD-1"))
    assert reply.status == 405 and reply.headers["Allow"] == "GET, HEAD"


# --- the resolver ----------------------------------------------------------------------


async def test_a_resolver_derives_its_url_from_the_request(make_resolver_client):
    client = await make_resolver_client()
    reply = await client.get(qr_path(sample(3)))
    assert reply.status == 200
    assert reply.headers["Cache-Control"] == "public, max-age=86400"
    host = f"{client.server.host}:{client.server.port}"
    assert png_code(await reply.read()).text == f"http://{host}/{sample(3)}"
    # the Host header a phone's browser would send, any case: lower-cased in the code
    reply = await client.get(qr_path(sample(3)), headers={"Host": "ID.Example.CN:8443"})
    assert png_code(await reply.read()).text == f"http://id.example.cn:8443/{sample(3)}"
    reply = await client.get(qr_path(sample(3)), headers={"Host": "evil.example@id.example.cn"})
    assert reply.status == 400 and "public_url" in (await reply.json())["message"]


async def test_a_resolver_with_a_public_url_uses_it(make_resolver_client):
    client = await make_resolver_client(public_url=PUBLIC_URL)
    reply = await client.get(qr_path(sample(4), "svg"), params={"level": "M"}, headers={"Host": "other.example"})
    payload = f"https://id.example.cn/r/{sample(4)}"
    code = svg_code(await reply.read(), modules_of(payload, "M"))
    assert (code.text, code.level) == (payload, "M")
    reply = await client.get(qr_path(sample(4)), params={"form": "handle", "level": "L"})
    assert png_code(await reply.read()).text == sample(4)


async def test_a_resolver_answers_as_resolution_does(make_resolver_client, hierarchy):
    client = await make_resolver_client()
    reply = await client.get(qr_path("88.118.2/NO-SUCH"))
    assert reply.status == 404 and reply.headers["Cache-Control"] == "no-store"
    assert (await reply.json())["responseCode"] == 100
    reply = await client.get(qr_path("88.118.2/PRD-1.png"), params={"level": "Z"})
    assert reply.status == 400 and "level" in (await reply.json())["message"]
    await take_down(hierarchy.enterprise)
    reply = await client.get(qr_path(sample(5)))
    assert reply.status == 502 and reply.headers["Cache-Control"] == "no-store"


async def test_a_resolver_draws_a_chinese_handle_it_resolves(make_resolver_client, hierarchy):
    await put_record(hierarchy.enterprise, CHINESE, [text_value(2001, "PRODUCT_NAME", "减速机")])
    client = await make_resolver_client(public_url=PUBLIC_URL)
    reply = await client.get(qr_path(CHINESE))
    assert reply.status == 200
    payload = "https://id.example.cn/r/" + url_path(CHINESE)
    assert png_code(await reply.read()).text == payload
    reply = await client.get(qr_path(CHINESE, "svg"), params={"form": "handle"})
    assert svg_code(await reply.read(), modules_of(CHINESE)).text == CHINESE


# --- drawing off the event loop ----------------------------------------------------------


async def test_identical_requests_are_drawn_once(make_resolver_client, monkeypatch):
    drawn = []
    real_draw = qr_render.draw

    def counting_draw(job):
        drawn.append(job)
        return real_draw(job)

    monkeypatch.setattr(qr_render, "draw", counting_draw)
    async with Renderer(in_threads=True) as renderer:  # threads: the patched function is the one run
        job = ImageJob(sample(1), "png", "Q", 300, None, None)
        bodies = await asyncio.gather(*(renderer.image(job) for _ in range(5)))  # in flight together
        again = await renderer.image(job)  # then from the memo
        other = await renderer.image(ImageJob(sample(1), "png", "H", 300, None, None))
    assert len(set(bodies)) == 1 and again == bodies[0] and other != again
    assert len(drawn) == 2


async def test_a_flood_beyond_the_queue_is_refused_as_busy(monkeypatch):
    monkeypatch.setattr(qr_render, "MAX_WAITING_RENDERS", 3)
    release = threading.Event()

    def slow_draw(job):
        release.wait(10)
        return b"image"

    monkeypatch.setattr(qr_render, "draw", slow_draw)
    async with Renderer(1, in_threads=True) as renderer:
        jobs = [ImageJob(f"88.1/{n}", "png", "Q", 300) for n in range(qr_render.RENDERS_PER_WORKER + 3 + 1)]
        tasks = [asyncio.ensure_future(renderer.image(job)) for job in jobs]
        done, _ = await asyncio.wait(tasks, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
        (refused,) = done
        with pytest.raises(qr_render.ServerTooBusy, match="MAX_WAITING_RENDERS"):
            refused.result()
        release.set()
        results = await asyncio.gather(*(t for t in tasks if t is not refused))
    assert results == [b"image"] * (len(jobs) - 1)


async def test_a_killed_worker_process_is_replaced(node_client):
    first = await node_client.get(qr_path("88.118.2/PRD-1"), params={"level": "L"})
    assert first.status == 200
    pool = node_client.app[RENDERER]._pool
    assert pool._processes
    for pid in list(pool._processes):  # the worker processes
        os.kill(pid, signal.SIGKILL)
    await asyncio.sleep(0.2)
    reply = await node_client.get(qr_path("88.118.2/PRD-1"), params={"level": "M"})  # not memoised
    assert reply.status == 200
    assert png_code(await reply.read()).level == "M"


def test_a_served_node_points_its_codes_to_the_configured_resolver(tmp_path, monkeypatch):
    """``idnode serve`` passes ``IDNODE_RESOLVER_URL`` to the node, draws in
    worker processes, and still stops cleanly on Ctrl-C."""
    port = free_port()
    assert run_cli("init", "--data", str(tmp_path), "--prefix", "88.118.2", "--site-port", str(port)).returncode == 0
    monkeypatch.setenv("IDNODE_RESOLVER_URL", "HTTPS://Scan.Example.CN")
    node = NodeProcess(tmp_path, port).start()
    try:
        with urllib.request.urlopen(node.url + "/qr/0.NA/88.118.2.png", timeout=30) as reply:
            body = reply.read()
        assert png_code(body).text == "https://scan.example.cn/0.NA/88.118.2"
    finally:
        node.stop()
    assert node.process.returncode == 0
    log = next(tmp_path.glob("serve-*.log")).read_text()
    assert "Traceback" not in log, log


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            found.add(child)
            todo.append(child)
    return found


def running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_killed_node_leaves_no_worker_processes_behind(tmp_path):
    """SIGKILL runs no shutdown code: the workers notice on their own."""
    port = free_port()
    assert run_cli("init", "--data", str(tmp_path), "--prefix", "88.118.2", "--site-port", str(port)).returncode == 0
    node = NodeProcess(tmp_path, port).start()
    try:
        with urllib.request.urlopen(node.url + "/qr/0.NA/88.118.2.svg", timeout=30) as reply:
            assert reply.status == 200
        helpers = descendants(node.process.pid)
        assert len(helpers) >= 2  # at least the forkserver and a worker
    finally:
        node.kill()
    deadline = time.monotonic() + 10
    while any(map(running, helpers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in helpers if running(pid)]
