"""Recursive nodes sharing a real redis-server: the shared tier answers what
another process fetched, and an outage of Redis degrades the node without
stopping it, until Redis is back."""

from __future__ import annotations

import asyncio
import logging
import time

import orjson
import pytest

from cache.entry import EntryKind, answer_key
from cache.redis_tier import KEY_NAMESPACE, PROBE_BACKOFF_BASE_SECONDS
from idcore.handle import Handle
from resolver.recursive_api import RESOLVER
from tests.resolver.conftest import ENTERPRISE, metric, sample

#: How long a restarted Redis may take to be used again: a few probe
#: backoffs (0.25 s, 0.5 s, 1 s ...) plus a slow machine.
RECOVERY_DEADLINE_SECONDS = 15.0

REDIS_LOGGER = "cache.redis_tier"


async def get(client, path: str):
    reply = await client.get(path)
    return reply.status, reply.headers, await reply.read()


async def health(client) -> dict:
    reply = await client.get("/healthz")
    assert reply.status == 200
    return await reply.json()


def in_redis(redis_server, handle: str) -> bool:
    key = KEY_NAMESPACE + answer_key(Handle.from_text(handle).key)
    return redis_server.command("EXISTS", key) == b":1"


async def test_a_second_node_answers_from_redis_without_going_upstream(
    make_resolver_client, redis_url, redis_server, node_requests
):
    first = await make_resolver_client(redis_url=redis_url)
    second = await make_resolver_client(redis_url=redis_url)

    status, headers, body = await get(first, f"/api/handles/{sample(1)}")
    assert status == 200 and headers["X-Idnode-Cache"] == "upstream"
    assert in_redis(redis_server, sample(1))
    assert (await get(first, "/api/handles/88.118.2/NOPE-1"))[0] == 404
    node_requests.clear()

    status, headers, shared = await get(second, f"/api/handles/{sample(1)}")
    assert status == 200 and headers["X-Idnode-Cache"] == "redis"
    assert orjson.loads(shared) == orjson.loads(body)
    assert (await get(second, "/api/handles/88.118.2/NOPE-1"))[0] == 404  # the negative entry is shared too
    assert node_requests.asked == []
    assert metric(second.app, "idnode_resolver_upstream_request_seconds_count") == 0

    # promoted into the second node's own memory: no Redis round trip next time
    status, headers, _ = await get(second, f"/api/handles/{sample(1)}")
    assert headers["X-Idnode-Cache"] == "memory"
    promoted = second.app[RESOLVER].memory.peek(answer_key(Handle.from_text(sample(1)).key))
    assert promoted is not None and promoted.kind is EntryKind.ANSWER


async def test_a_redis_outage_degrades_the_node_until_redis_is_back(
    make_resolver_client, redis_url, redis_server, node_requests, caplog
):
    caplog.set_level(logging.INFO, logger=REDIS_LOGGER)
    client = await make_resolver_client(redis_url=redis_url)
    assert (await get(client, f"/api/handles/{sample(1)}"))[0] == 200
    assert (await health(client))["status"] == "ok"

    redis_server.stop()
    status, headers, _ = await get(client, f"/api/handles/{sample(1)}")
    assert status == 200 and headers["X-Idnode-Cache"] == "memory"
    for number in (2, 3, 4):
        status, headers, _ = await get(client, f"/api/handles/{sample(number)}")
        assert status == 200 and headers["X-Idnode-Cache"] == "upstream"
    await asyncio.sleep(PROBE_BACKOFF_BASE_SECONDS + 0.1)  # a probe of Redis fails: the same outage
    status, headers, _ = await get(client, f"/api/handles/{sample(6)}")
    assert status == 200 and headers["X-Idnode-Cache"] == "upstream"
    report = await health(client)
    assert report["status"] == "degraded"
    assert report["cache"]["redis"]["state"] == "down" and report["cache"]["redis"]["error"]
    assert report["cache"]["memory"]["state"] == "up"
    assert metric(client.app, "idnode_resolver_redis_up") == 0
    warnings = [r for r in caplog.records if r.name == REDIS_LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "unavailable" in warnings[0].getMessage()

    redis_server.start()  # empty, on the same port
    deadline = time.monotonic() + RECOVERY_DEADLINE_SECONDS
    probe = 0
    while (await health(client))["cache"]["redis"]["state"] != "up":
        assert time.monotonic() < deadline, "the node did not go back to Redis"
        probe += 1  # misses are what make the node try Redis again
        assert (await get(client, f"/api/handles/{ENTERPRISE}/PROBE-{probe}"))[0] == 404
        await asyncio.sleep(0.05)
    assert (await health(client))["status"] == "ok"
    assert metric(client.app, "idnode_resolver_redis_up") == 1

    status, headers, _ = await get(client, f"/api/handles/{sample(5)}")
    assert status == 200 and headers["X-Idnode-Cache"] == "upstream"
    assert in_redis(redis_server, sample(5))
    assert not in_redis(redis_server, sample(2))  # fetched while Redis was down
    warnings = [r for r in caplog.records if r.name == REDIS_LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 1


async def flush(client, **params):
    reply = await client.post("/api/cache/flush", params=params)
    return reply.status, await reply.json()


async def test_a_flush_reaches_redis_so_other_nodes_ask_upstream_again(
    make_resolver_client, redis_url, redis_server, node_requests
):
    first = await make_resolver_client(redis_url=redis_url)
    for number in (1, 2):
        assert (await get(first, f"/api/handles/{sample(number)}"))[0] == 200
    status, body = await flush(first, handle=sample(1))
    assert status == 200 and body["flushed"] == 1
    status, body = await flush(first, prefix=ENTERPRISE)
    assert status == 200 and body["flushed"] == 2  # sample 2 and the delegation of 88.118.2
    assert not in_redis(redis_server, sample(1)) and not in_redis(redis_server, sample(2))

    node_requests.clear()
    second = await make_resolver_client(redis_url=redis_url)
    for number in (1, 2):
        status, headers, _ = await get(second, f"/api/handles/{sample(number)}")
        assert status == 200 and headers["X-Idnode-Cache"] == "upstream"
    assert node_requests.count(ENTERPRISE) == 2


@pytest.mark.parametrize("what", ["handle", "prefix"])
async def test_a_flush_that_cannot_reach_redis_says_so(make_resolver_client, redis_url, redis_server, what):
    first = await make_resolver_client(redis_url=redis_url)
    assert (await get(first, f"/api/handles/{sample(1)}"))[0] == 200
    redis_server.pause()  # hung: the entry is still in Redis, out of reach
    try:
        status, body = await flush(first, **{what: sample(1) if what == "handle" else ENTERPRISE})
    finally:
        redis_server.resume()
    # a flush that left the entry in the shared tier must not report success
    assert status == 503, body
    assert "redis" in body["message"].lower() and "not flushed" in body["message"]
