"""The demo in a real browser: headless Chromium, as a phone 390 pixels wide,
opens a sample identifier's proxy URL at the recursive node of ``idnode
demo`` and must show the product's fields without horizontal scrolling.
The phone path end to end: the URL a printed code carries (fetched from the
demo's ``/qr/`` endpoint and decoded, as a phone camera reads it) opens that
same page.

Chromium is driven over its DevTools protocol (a websocket; aiohttp is the
client), so the test reads what the browser laid out, not the HTML we sent.
The test command installs Debian's ``chromium``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import cairosvg
import pytest

from qr.symbol import make_symbol
from qr.verify import decode, open_image
from resolver.hierarchy import sample_handle, sample_values
from scripts.node_process import START_TIMEOUT
from tests.scripts.demo_process import interrupt, start_demo

#: A phone's CSS viewport (an iPhone 14's is 390 x 844).
PHONE_WIDTH, PHONE_HEIGHT = 390, 844

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

#: What the page must let a person read, as JavaScript returning JSON.
READ_PAGE = """JSON.stringify({
  ready: document.readyState,
  scrollWidth: document.documentElement.scrollWidth,
  innerWidth: window.innerWidth,
  title: document.querySelector('h1') && document.querySelector('h1').innerText,
  handle: document.querySelector('.handle') && document.querySelector('.handle').innerText,
  fields: Array.from(document.querySelectorAll('main > dl > div')).map(
      d => [d.querySelector('dt').innerText, d.querySelector('dd').innerText]),
  json: document.querySelector('footer a') && document.querySelector('footer a').getAttribute('href'),
})"""


class DevTools:
    """One page of a Chromium, over the DevTools protocol."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self._ids)
        await self.ws.send_json({"id": message_id, "method": method, "params": params})
        while True:
            message = await asyncio.wait_for(self.ws.receive_json(), timeout=30)
            if message.get("id") == message_id:
                assert "error" not in message, message
                return message["result"]


def start_chromium(profile: Path) -> tuple[subprocess.Popen, str]:
    """Headless Chromium with a debugging port; the process and its HTTP endpoint."""
    log = profile.with_suffix(".log")
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=out,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        found = re.search(r"DevTools listening on ws://([^/]+)/", log.read_text(errors="replace"))
        if found:  # it announces its endpoint on stderr
            return process, f"http://{found.group(1)}"
        time.sleep(0.05)
    process.kill()
    process.wait()
    raise AssertionError(f"chromium did not start: {log.read_text(errors='replace')[-2000:]}")


pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/test.sh installs it)")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> int:
    """``idnode demo`` with 10 samples; its recursive node's port."""
    folder = tmp_path_factory.mktemp("demo")
    process, port, log = start_demo(folder / "data", folder, samples=10)
    try:
        yield port
    finally:
        assert interrupt(process) == 0, log.read_text(errors="replace")


@pytest.fixture(scope="module")
def chromium(tmp_path_factory) -> str:
    """A headless Chromium; its DevTools HTTP endpoint."""
    browser, endpoint = start_chromium(tmp_path_factory.mktemp("chromium") / "profile")
    try:
        yield endpoint
    finally:
        browser.kill()
        browser.wait()


async def read_on_a_phone(endpoint: str, url: str) -> dict[str, Any]:
    """Open ``url`` in a new tab at phone size; what READ_PAGE finds there."""
    async with aiohttp.ClientSession() as session:
        async with session.put(f"{endpoint}/json/new?about:blank") as reply:
            page = await reply.json()
        try:
            async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                tab = DevTools(ws)
                await tab.call("Emulation.setDeviceMetricsOverride", width=PHONE_WIDTH, height=PHONE_HEIGHT,
                               deviceScaleFactor=3, mobile=True)
                await tab.call("Page.navigate", url=url)
                shown: dict[str, Any] = {}
                for _ in range(200):
                    result = await tab.call("Runtime.evaluate", expression=READ_PAGE, returnByValue=True)
                    # no value while the navigation replaces the document the script ran in
                    value = result["result"].get("value")
                    shown = json.loads(value) if isinstance(value, str) else {}
                    if shown.get("ready") == "complete" and shown["fields"]:
                        break
                    await asyncio.sleep(0.05)
        finally:
            async with session.get(f"{endpoint}/json/close/{page['id']}") as reply:
                await reply.read()
    return shown


def assert_shows_the_product(shown: dict[str, Any], handle: str, number: int) -> None:
    expected = {v["type"]: v["data"]["value"] for v in sample_values("88.118.2", number)}
    assert shown["handle"] == handle
    assert shown["title"] == expected["PRODUCT_NAME"]
    labels = {label.lower(): value for label, value in shown["fields"]}
    assert labels["product name"] == expected["PRODUCT_NAME"]
    assert labels["batch"] == expected["BATCH"]
    assert labels["manufacture date"] == expected["MANUFACTURE_DATE"]
    assert labels["enterprise"] == expected["ENTERPRISE"]  # Chinese text, as registered
    assert shown["json"] == f"/api/handles/{handle}"
    # laid out for the phone: the viewport is the phone's and nothing sticks out sideways
    assert shown["innerWidth"] == PHONE_WIDTH
    assert shown["scrollWidth"] <= PHONE_WIDTH


async def test_a_phone_shows_the_product_page_of_a_demo_identifier(demo, chromium):
    handle = sample_handle("88.118.2", 7)
    shown = await read_on_a_phone(chromium, f"http://127.0.0.1:{demo}/{handle}")
    assert_shows_the_product(shown, handle, 7)


async def test_scanning_a_printed_code_opens_the_product_page(demo, chromium):
    """Label to page: the demo's recursive node draws the code (its own URL
    taken from the request, as no public_url is set), a camera decodes it,
    and the browser opens what it says."""
    handle = sample_handle("88.118.2", 9)
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{demo}/qr/{handle}.png") as reply,
    ):
        assert reply.status == 200, await reply.text()
        assert reply.content_type == "image/png"
        png = await reply.read()
    (code,) = decode(open_image(png))
    assert code.text == f"http://127.0.0.1:{demo}/{handle}"
    assert code.level == "Q"
    shown = await read_on_a_phone(chromium, code.text)
    assert_shows_the_product(shown, handle, 9)
    # the enterprise node (the demo's port + 3) prints codes for the same resolver
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{demo + 3}/qr/{handle}.svg", params={"size": "25"}) as reply,
    ):
        assert reply.status == 200, await reply.text()
        svg = await reply.read()
    modules = make_symbol(code.text).modules
    (from_node,) = decode(open_image(cairosvg.svg2png(bytestring=svg, output_width=modules * 8)))
    assert from_node.text == code.text
