"""POST /api/batch over a real loopback server."""

from __future__ import annotations

import io

import orjson
import pytest

from idcore import limits
from resolver.node_app import build_node_app
from tests.conftest import basic

NDJSON = {"Content-Type": "application/x-ndjson"}


@pytest.fixture
async def client(aiohttp_client, registry):
    return await aiohttp_client(build_node_app(registry))


def op(i: int, **extra) -> bytes:
    return orjson.dumps({"handle": f"88.118.2/B-{i}", "values": [{"index": 1, "type": "URL", "data": f"https://e/{i}"}], **extra})


async def results(reply) -> list[dict]:
    return [orjson.loads(line) for line in (await reply.read()).splitlines()]


async def test_one_result_per_line_in_order_with_blank_lines_counted(client):
    body = b"\n".join([op(1), b"", op(2), b"{broken", op(3)]) + b"\n"
    reply = await client.post("/api/batch", data=body, headers={**basic(), **NDJSON})
    assert reply.status == 200 and reply.content_type == "application/x-ndjson"
    got = await results(reply)
    assert [(r["line"], r["responseCode"]) for r in got] == [(1, 1), (3, 1), (4, 4), (5, 1)]


async def test_a_last_line_without_newline_counts(client):
    reply = await client.post("/api/batch", data=op(1) + b"\n" + op(2), headers={**basic(), **NDJSON})
    assert [r["line"] for r in await results(reply)] == [1, 2]


async def test_an_overlong_line_is_refused_and_skipped(client):
    long_line = b'{"handle":"88.118.2/x","values":[],"pad":"' + b"x" * (2 * limits.MAX_BATCH_LINE_BYTES) + b'"}'
    body = op(1) + b"\n" + long_line + b"\n" + op(3) + b"\n"
    reply = await client.post("/api/batch", data=io.BytesIO(body), headers={**basic(), **NDJSON})
    got = await results(reply)
    assert [(r["line"], r["responseCode"]) for r in got] == [(1, 1), (2, 4), (3, 1)]
    assert str(limits.MAX_BATCH_LINE_BYTES) in got[1]["message"]


async def test_a_batch_needs_credentials(client):
    reply = await client.post("/api/batch", data=op(1), headers=NDJSON)
    assert reply.status == 401 and (await reply.json())["responseCode"] == 402


async def test_a_node_failure_mid_batch_ends_with_a_stop_line(client, registry, monkeypatch):
    real = registry.apply_batch
    calls = 0

    async def failing_after_first(items, identity):
        nonlocal calls
        calls += 1
        if calls > 1:
            raise RuntimeError("disk full")
        return await real(items, identity)

    monkeypatch.setattr(registry, "apply_batch", failing_after_first)

    async def body():
        yield op(1) + b"\n"
        import asyncio

        await asyncio.sleep(0.2)  # the first group commits on its own
        yield op(2) + b"\n"

    reply = await client.post("/api/batch", data=body(), headers={**basic(), **NDJSON})
    got = await results(reply)
    assert got[0]["line"] == 1 and got[0]["responseCode"] == 1
    assert "line" not in got[-1] and got[-1]["responseCode"] == 2 and "disk full" in got[-1]["message"]
