"""The recursive resolver's cache against a real hierarchy on loopback:
delegations, TTLs, negative entries, serve-stale, coalescing and prefetch.

Tests that need control of time build a RecursiveResolver on a FakeClock
(:func:`make_direct_resolver`); tests of the HTTP front end run a
recursive_app. Upstream requests are counted at the nodes (node_requests)
or at the resolver's transport, never inferred from timing.
"""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from cache.entry import EntryKind, answer_key, delegation_key
from cache.policy import STALE_RETRY_INITIAL_SECONDS, CachePolicy, stale_retry_delay
from idcore.errors import UpstreamError
from idcore.handle import Handle
from resolver.hierarchy import LocalHierarchy, sample_values
from resolver.recursive import sites_from_values_json
from resolver.recursive_api import RESOLVER
from tests.resolver.conftest import (
    ENTERPRISE,
    SECONDARY,
    TOP,
    delegate_to,
    metric,
    put_record,
    sample,
    take_down,
    text_value,
    upstream_requests,
)

#: Generous bound for "answers without hanging" when upstream is down: a
#: refused connection fails at once, the resolution budget is 5 s.
NO_HANG_SECONDS = 10.0


async def get(client, path: str, **params):
    reply = await client.get(path, params=params, allow_redirects=False)
    return reply.status, reply.headers, await reply.read()


def memory_entry(client, key: str):
    return client.app[RESOLVER].memory.peek(key)


def handle_key(text: str) -> str:
    return answer_key(Handle.from_text(text).key)


async def wait_for(condition, what: str, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.01)


def prefetches(resolver) -> float:
    return resolver.metrics.registry.get_sample_value("idnode_resolver_prefetches_total")


# --- the walk and its delegations ------------------------------------------------


async def test_three_level_walk_answers_and_caches_both_delegations(resolver_client, hierarchy, node_requests):
    status, headers, body = await get(resolver_client, f"/api/handles/{sample(1)}")
    assert status == 200 and headers["X-Idnode-Cache"] == "upstream"
    reply = orjson.loads(body)
    assert reply["handle"] == sample(1)
    names = {v["type"]: v["data"]["value"] for v in reply["values"]}
    assert names["PRODUCT_NAME"] == sample_values(ENTERPRISE, 1)[0]["data"]["value"]
    assert node_requests.per_node() == {TOP: 1, SECONDARY: 1, ENTERPRISE: 1}

    for prefix in (SECONDARY, ENTERPRISE):
        entry = memory_entry(resolver_client, delegation_key(prefix))
        assert entry is not None and entry.kind is EntryKind.DELEGATION and entry.name == prefix
        ports = {s.interfaces[0].port for site in sites_from_values_json(entry.values_json) for s in site.servers}
        assert ports == {hierarchy.nodes[prefix].port}

    node_requests.clear()
    status, headers, _ = await get(resolver_client, f"/api/handles/{sample(2)}")
    assert status == 200 and headers["X-Idnode-Cache"] == "upstream"
    assert node_requests.asked == [(ENTERPRISE, sample(2))]


# --- TTL ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value_ttls", "policy", "expected"),
    [
        ((300, 40), CachePolicy(), 40),  # the smallest value TTL
        ((300, 40), CachePolicy(max_ttl=20), 20),  # clamped down
        ((300, 40), CachePolicy(min_ttl=100), 100),  # clamped up
        ((0,), CachePolicy(), 1),  # ttl 0 still gets the default min_ttl
    ],
)
async def test_answer_ttl_is_the_smallest_value_ttl_within_the_caps(
    make_resolver_client, hierarchy, value_ttls, policy, expected
):
    handle = "88.118.2/TTL-1"
    values = [text_value(2001 + i, "NOTE", f"v{i}", ttl) for i, ttl in enumerate(value_ttls)]
    await put_record(hierarchy.enterprise, handle, values)
    client = await make_resolver_client(policy=policy)

    status, headers, _ = await get(client, f"/{handle}", noredirect="")
    assert status == 200
    entry = memory_entry(client, handle_key(handle))
    assert entry.kind is EntryKind.ANSWER and entry.ttl == expected
    cache_control = headers["Cache-Control"]
    assert cache_control.startswith("public, max-age=")
    assert expected - 1 <= int(cache_control.rpartition("=")[2]) <= expected
    assert "Expires" in headers


def test_policy_arithmetic():
    policy = CachePolicy(min_ttl=5, max_ttl=100, negative_ttl=30, max_delegation_ttl=50, prefetch_fraction=0.1)
    assert policy.answer_ttl([300, 60, 90]) == 60
    assert policy.answer_ttl([1]) == 5 and policy.answer_ttl([10_000]) == 100 and policy.answer_ttl([]) == 5
    assert policy.delegation_ttl([86400]) == 50 and policy.delegation_ttl([20, 40]) == 20
    assert policy.not_found_ttl() == 30
    assert CachePolicy(max_ttl=10, negative_ttl=30).not_found_ttl() == 10
    assert policy.keep_seconds(60) == 60 + policy.stale_window
    assert policy.wants_prefetch(100, 9.9) and not policy.wants_prefetch(100, 10.0)
    assert [stale_retry_delay(n) for n in (1, 2, 3)] == [1.0, 2.0, 4.0] and stale_retry_delay(99) == 30.0
    with pytest.raises(ValueError, match="min_ttl"):
        CachePolicy(min_ttl=10, max_ttl=5)


# --- negative caching, and failures that must never be cached ------------------


async def test_not_found_is_cached_for_the_negative_ttl(make_direct_resolver, clock, hierarchy, node_requests):
    resolver = await make_direct_resolver(CachePolicy(negative_ttl=30, prefetch_fraction=0))
    handle = Handle.from_text("88.118.2/LATER-1")

    first = await resolver.resolve(handle)
    assert first.source == "upstream" and first.entry.kind is EntryKind.NOT_FOUND and first.entry.ttl == 30
    await put_record(hierarchy.enterprise, handle.to_text(), [text_value(2001, "NOTE", "now it exists")])

    clock.advance(29.5)
    cached = await resolver.resolve(handle)
    assert cached.source == "memory" and cached.entry.kind is EntryKind.NOT_FOUND
    assert node_requests.count(ENTERPRISE, handle.to_text()) == 1

    clock.advance(1)
    fresh = await resolver.resolve(handle)
    assert fresh.source == "upstream" and fresh.entry.kind is EntryKind.ANSWER
    assert b"now it exists" in fresh.entry.values_json
    assert node_requests.count(ENTERPRISE, handle.to_text()) == 2


async def test_not_found_is_cached_through_the_front_end(resolver_client, node_requests):
    for _ in range(3):
        status, _, body = await get(resolver_client, "/api/handles/88.118.2/NOPE-1")
        assert status == 404 and orjson.loads(body)["responseCode"] == 100
    assert node_requests.count(ENTERPRISE, "88.118.2/NOPE-1") == 1


async def test_an_upstream_failure_is_never_cached(resolver_client, hierarchy):
    await take_down(hierarchy.enterprise)
    status, _, body = await get(resolver_client, f"/api/handles/{sample(3)}")
    assert status == 502
    assert "88.118.2" in orjson.loads(body)["message"]
    assert memory_entry(resolver_client, handle_key(sample(3))) is None

    await hierarchy.enterprise.start()
    status, headers, body = await get(resolver_client, f"/api/handles/{sample(3)}")
    assert status == 200 and headers["X-Idnode-Cache"] == "upstream"
    assert orjson.loads(body)["handle"] == sample(3)


async def test_auth_gets_a_fresh_answer_past_a_cached_not_found_and_replaces_it(
    resolver_client, hierarchy, node_requests
):
    handle = "88.118.2/LATE-1"
    assert (await get(resolver_client, f"/api/handles/{handle}"))[0] == 404
    await put_record(hierarchy.enterprise, handle, [text_value(2001, "NOTE", "registered late")])
    assert (await get(resolver_client, f"/api/handles/{handle}"))[0] == 404  # still the cached "not found"
    assert node_requests.count(ENTERPRISE, handle) == 1

    status, headers, body = await get(resolver_client, f"/api/handles/{handle}", auth="true")
    assert status == 200 and headers["X-Idnode-Cache"] == "upstream"
    assert orjson.loads(body)["values"][0]["data"]["value"] == "registered late"

    status, headers, body = await get(resolver_client, f"/api/handles/{handle}")
    assert status == 200 and headers["X-Idnode-Cache"] == "memory"
    assert b"registered late" in body
    assert node_requests.count(ENTERPRISE, handle) == 2


async def test_an_answer_too_large_for_the_memory_tier_does_not_leave_the_old_one_behind(
    make_resolver_client, hierarchy
):
    handle = "88.118.2/GROW-1"
    await put_record(hierarchy.enterprise, handle, [text_value(2001, "NOTE", "small")])
    client = await make_resolver_client(memory_max_bytes=8000)
    assert b"small" in (await get(client, f"/api/handles/{handle}"))[2]
    await put_record(hierarchy.enterprise, handle, [text_value(2001, "NOTE", "large " + "x" * 10_000)])

    status, _, body = await get(client, f"/api/handles/{handle}", auth="true")
    assert status == 200 and b"large" in body
    status, _, body = await get(client, f"/api/handles/{handle}")
    assert status == 200 and b"large" in body  # not the small answer cached before


# --- delegations -------------------------------------------------------------------


async def test_each_delegation_keeps_its_own_clamped_ttl(make_direct_resolver, clock, hierarchy, node_requests):
    await delegate_to(hierarchy.nodes[SECONDARY], ENTERPRISE, hierarchy.enterprise, ttl=120)
    resolver = await make_direct_resolver(CachePolicy(max_delegation_ttl=600))
    await resolver.resolve(Handle.from_text(sample(1)))
    assert resolver.memory.peek(delegation_key(ENTERPRISE)).ttl == 120  # its site value's TTL
    assert resolver.memory.peek(delegation_key(SECONDARY)).ttl == 600  # 86400, clamped

    clock.advance(121)  # the enterprise delegation has expired, the secondary's has not
    node_requests.clear()
    await resolver.resolve(Handle.from_text(sample(2)))
    assert node_requests.per_node() == {SECONDARY: 1, ENTERPRISE: 1}

    clock.advance(600)  # both expired: back to the bootstrap
    node_requests.clear()
    await resolver.resolve(Handle.from_text(sample(3)))
    assert node_requests.per_node() == {TOP: 1, SECONDARY: 1, ENTERPRISE: 1}


async def test_a_moved_node_is_found_again_through_the_parent(make_direct_resolver, hierarchy, node_requests):
    resolver = await make_direct_resolver()
    await resolver.resolve(Handle.from_text(sample(1)))  # caches the delegations
    async with LocalHierarchy((ENTERPRISE,)) as elsewhere:
        moved = elsewhere.top
        node_requests.watch(moved, "moved")
        await put_record(moved, "88.118.2/MOVED-1", [text_value(2001, "NOTE", "at the new node")])
        await put_record(moved, "88.118.2/MOVED-2", [text_value(2001, "NOTE", "also there")])
        await take_down(hierarchy.enterprise)
        await delegate_to(hierarchy.nodes[SECONDARY], ENTERPRISE, moved)
        transport = resolver.transport
        transport.urls.clear()
        node_requests.clear()

        result = await resolver.resolve(Handle.from_text("88.118.2/MOVED-1"))
        assert result.entry.kind is EntryKind.ANSWER and b"at the new node" in result.entry.values_json
        # the stale delegation failed, the parent referred to the new node
        assert transport.servers() == [hierarchy.enterprise.url, hierarchy.nodes[SECONDARY].url, moved.url]

        # the corrected delegation is what the resolver now knows
        entry = resolver.memory.peek(delegation_key(ENTERPRISE))
        assert entry is not None
        ports = {s.interfaces[0].port for site in sites_from_values_json(entry.values_json) for s in site.servers}
        assert ports == {moved.port}
        transport.urls.clear()
        result = await resolver.resolve(Handle.from_text("88.118.2/MOVED-2"))
        assert result.entry.kind is EntryKind.ANSWER
        assert transport.servers() == [moved.url]


async def test_a_moved_node_is_found_again_from_the_bootstrap(make_direct_resolver, clock, hierarchy, node_requests):
    # The secondary's delegation expires before the enterprise's, so the
    # only cached start left is the enterprise node that moved away.
    await delegate_to(hierarchy.top, SECONDARY, hierarchy.nodes[SECONDARY], ttl=60)
    await delegate_to(hierarchy.nodes[SECONDARY], ENTERPRISE, hierarchy.enterprise, ttl=600)
    resolver = await make_direct_resolver()
    await resolver.resolve(Handle.from_text(sample(1)))
    clock.advance(61)
    assert resolver.memory.peek(delegation_key(SECONDARY)) is None
    assert resolver.memory.peek(delegation_key(ENTERPRISE)) is not None
    async with LocalHierarchy((ENTERPRISE,)) as elsewhere:
        moved = elsewhere.top
        await put_record(moved, "88.118.2/MOVED-1", [text_value(2001, "NOTE", "at the new node")])
        await take_down(hierarchy.enterprise)
        await delegate_to(hierarchy.nodes[SECONDARY], ENTERPRISE, moved)
        resolver.transport.urls.clear()

        result = await resolver.resolve(Handle.from_text("88.118.2/MOVED-1"))
        assert result.entry.kind is EntryKind.ANSWER and b"at the new node" in result.entry.values_json
        assert resolver.transport.servers() == [
            hierarchy.enterprise.url,
            hierarchy.top.url,
            hierarchy.nodes[SECONDARY].url,
            moved.url,
        ]


# --- serve-stale -------------------------------------------------------------------


async def test_an_expired_answer_is_served_stale_while_upstream_is_down(make_resolver_client, hierarchy):
    handle = "88.118.2/STALE-1"
    await put_record(hierarchy.enterprise, handle, [text_value(2001, "NOTE", "first", ttl=1)])
    client = await make_resolver_client(policy=CachePolicy(min_ttl=0, prefetch_fraction=0))
    status, headers, _ = await get(client, f"/api/handles/{handle}")
    assert status == 200 and headers["X-Idnode-Cache"] == "upstream"
    assert memory_entry(client, handle_key(handle)).ttl == 1

    for node in hierarchy.nodes.values():
        await take_down(node)
    await asyncio.sleep(1.1)  # the answer's TTL passes
    before = upstream_requests(client.app)
    started = time.monotonic()
    status, headers, body = await get(client, f"/api/handles/{handle}")
    assert time.monotonic() - started < NO_HANG_SECONDS
    assert status == 200
    assert headers["X-Idnode-Cache"] == "stale" and headers["Warning"].startswith("110 ")
    reply = orjson.loads(body)
    assert reply["stale"] is True and reply["values"][0]["data"]["value"] == "first"
    tried = upstream_requests(client.app) - before
    assert tried >= 1  # it did try upstream first

    for _ in range(5):  # within the retry backoff: served stale without asking upstream
        status, headers, _ = await get(client, f"/api/handles/{handle}")
        assert status == 200 and headers["X-Idnode-Cache"] == "stale"
    assert upstream_requests(client.app) - before == tried

    await put_record(hierarchy.enterprise, handle, [text_value(2001, "NOTE", "second", ttl=1)])
    for node in hierarchy.nodes.values():
        await node.start()
    await asyncio.sleep(STALE_RETRY_INITIAL_SECONDS + 0.2)
    status, headers, body = await get(client, f"/api/handles/{handle}")
    assert status == 200 and headers["X-Idnode-Cache"] == "upstream" and "Warning" not in headers
    reply = orjson.loads(body)
    assert "stale" not in reply and reply["values"][0]["data"]["value"] == "second"


async def test_without_a_stale_entry_a_dead_hierarchy_is_a_clear_502(resolver_client, hierarchy):
    for node in hierarchy.nodes.values():
        await take_down(node)
    started = time.monotonic()
    status, _, body = await get(resolver_client, f"/api/handles/{sample(1)}")
    assert time.monotonic() - started < NO_HANG_SECONDS
    assert status == 502
    message = orjson.loads(body)["message"]
    assert "bootstrap" in message and hierarchy.top.url in message and "cannot connect" in message


async def test_a_dead_node_behind_a_cached_delegation_is_named_in_the_502(resolver_client, hierarchy):
    assert (await get(resolver_client, f"/api/handles/{sample(1)}"))[0] == 200  # delegations cached
    await take_down(hierarchy.enterprise)
    status, _, body = await get(resolver_client, f"/api/handles/{sample(2)}")
    assert status == 502
    message = orjson.loads(body)["message"]
    assert "node of 88.118.2" in message and "cannot connect" in message, message


# --- request coalescing ------------------------------------------------------------


async def test_concurrent_lookups_of_one_handle_share_one_upstream_request(resolver_client, node_requests):
    node_requests.delay[ENTERPRISE] = 0.3  # so that every lookup arrives while the walk runs
    replies = await asyncio.gather(*(get(resolver_client, f"/api/handles/{sample(7)}") for _ in range(50)))
    assert {status for status, _, _ in replies} == {200}
    assert len({body for _, _, body in replies}) == 1 and orjson.loads(replies[0][2])["handle"] == sample(7)
    assert node_requests.count(ENTERPRISE, sample(7)) == 1
    coalesced = metric(resolver_client.app, "idnode_resolver_coalesced_lookups_total")
    from_memory = metric(resolver_client.app, "idnode_resolver_answers_total", source="memory")
    assert coalesced >= 1 and coalesced + from_memory == 49


async def test_a_waiter_hanging_up_does_not_cancel_the_shared_walk(make_direct_resolver, node_requests):
    resolver = await make_direct_resolver()
    node_requests.delay[ENTERPRISE] = 0.3
    handle = Handle.from_text(sample(8))
    leaving = asyncio.create_task(resolver.resolve(handle))
    staying = asyncio.create_task(resolver.resolve(handle))
    await asyncio.sleep(0.1)
    leaving.cancel()
    result = await staying
    assert result.entry.kind is EntryKind.ANSWER and result.entry.name == sample(8)
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert node_requests.count(ENTERPRISE, sample(8)) == 1


async def test_concurrent_lookups_share_one_failure_too(make_direct_resolver, hierarchy):
    resolver = await make_direct_resolver()
    await take_down(hierarchy.top)
    results = await asyncio.gather(
        *(resolver.resolve(Handle.from_text(sample(9))) for _ in range(10)), return_exceptions=True
    )
    assert all(isinstance(r, UpstreamError) for r in results)
    assert resolver.transport.servers() == [hierarchy.top.url]


# --- prefetch ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["resolve", "fresh_hit"])
async def test_a_hit_near_expiry_is_answered_from_cache_and_refreshed(make_direct_resolver, clock, node_requests, path):
    # answers (30 min) expire before delegations (at most 1 h): the refresh goes through the cached one
    resolver = await make_direct_resolver(CachePolicy(prefetch_fraction=0.1, max_ttl=1800))
    handle = Handle.from_text(sample(4))
    first = (await resolver.resolve(handle)).entry
    ttl = first.ttl
    node_requests.clear()

    async def hit():
        if path == "fresh_hit":
            return resolver.fresh_hit(handle.key)
        result = await resolver.resolve(handle)
        assert result.source == "memory"
        return result.entry

    clock.advance(ttl * 0.5)  # before the prefetch window: a plain hit
    assert await hit() is first
    await asyncio.sleep(0.05)
    assert node_requests.asked == [] and prefetches(resolver) == 0

    clock.advance(ttl * 0.45)  # in the last tenth of the TTL
    assert await hit() is first  # answered from the cache at once
    await wait_for(lambda: resolver.memory.peek(handle_key(sample(4))) is not first, "the background refresh")
    refreshed = resolver.memory.peek(handle_key(sample(4)))
    assert refreshed.stored_at == clock.now and refreshed.values_json == first.values_json
    assert node_requests.asked == [(ENTERPRISE, sample(4))]  # through the cached delegation
    assert prefetches(resolver) == 1
