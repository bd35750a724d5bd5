"""The demo in a real browser: headless Chromium, as a phone 390 pixels wide,
opens a sample identifier's proxy URL at the recursive node of ``idnode
demo`` and must show the product's fields without horizontal scrolling.

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
import pytest

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


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/test.sh installs it)")
async def test_a_phone_shows_the_product_page_of_a_demo_identifier(tmp_path):
    demo, port, log = start_demo(tmp_path / "demo", tmp_path, samples=10)
    browser, endpoint = start_chromium(tmp_path / "profile")
    try:
        handle = sample_handle("88.118.2", 7)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{endpoint}/json/list") as reply:
                page = next(t for t in await reply.json() if t["type"] == "page")
            async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                tab = DevTools(ws)
                await tab.call("Emulation.setDeviceMetricsOverride", width=PHONE_WIDTH, height=PHONE_HEIGHT,
                               deviceScaleFactor=3, mobile=True)
                await tab.call("Page.navigate", url=f"http://127.0.0.1:{port}/{handle}")
                for _ in range(200):
                    result = await tab.call("Runtime.evaluate", expression=READ_PAGE, returnByValue=True)
                    shown = json.loads(result["result"]["value"])
                    if shown["ready"] == "complete" and shown["fields"]:
                        break
                    await asyncio.sleep(0.05)
    finally:
        browser.kill()
        browser.wait()
        assert interrupt(demo) == 0, log.read_text(errors="replace")

    expected = {v["type"]: v["data"]["value"] for v in sample_values("88.118.2", 7)}
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
