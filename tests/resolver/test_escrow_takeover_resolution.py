"""The recursive resolver in front of an escrow takeover: when the enterprise
node (88.118.2) is down and its parent (88.118) answers for it from escrow,
a warm resolver, which has the enterprise's delegation and some of its
answers cached, fails over to the parent, and its clients are told the
answer is the parent's escrow copy (``"escrow": true``, a notice on the
record page), cached only briefly so the enterprise is asked again soon
after it is back.

Pure tests of the walk, the cache entry and the page first; then real
nodes on loopback (the escrow hierarchy of :mod:`tests.resolver.test_escrow_api`).
"""

from __future__ import annotations

import asyncio
import html

import orjson
import pytest

from cache.entry import (
    SCHEMA_VERSION,
    CacheEntry,
    EntryKind,
    answer_key,
    delegation_key,
)
from cache.policy import CachePolicy
from cache.redis_tier import KEY_NAMESPACE
from idcore.handle import Handle
from resolver.record_page import ESCROW_NOTICE, render_record_page
from resolver.recursive import ESCROW_MAX_TTL_SECONDS
from resolver.recursive_api import RESOLVER
from resolver.walk import Start, Walk
from tests.resolver.conftest import (
    ENTERPRISE,
    SECONDARY,
    sample,
    take_down,
)
from tests.resolver.front_fixtures import ask_node
from tests.resolver import test_escrow_api
from tests.resolver.test_escrow_api import escrow, set_takeover
from tests.resolver.test_walk import RECORD, site

#: Answers expire after two minutes, delegations keep their day: a warm
#: resolver whose answers have expired still starts at the enterprise node.
SHORT_ANSWERS = CachePolicy(max_ttl=120, prefetch_fraction=0)


#: The escrow tests' fixtures: the hierarchy with escrow at every node, and
#: the enterprise's identity at its parent.
hierarchy = test_escrow_api.hierarchy
child_id = test_escrow_api.child_id


def handle_key(text: str) -> str:
    return answer_key(Handle.from_text(text).key)


# --- pure: the walk, the entry, the page -----------------------------------------


def walk_answer(reply: dict) -> Walk:
    handle = Handle.from_text("88.118.2/PRD-1")
    walk = Walk(handle, [Start("88.118", (site(1),))])
    query = walk.next_query()
    assert query is not None
    assert walk.on_reply(query, 200, orjson.dumps(reply))
    return walk


@pytest.mark.parametrize(("marker", "expected"), [(True, True), (None, False), ("true", False), (1, False)])
def test_the_walk_keeps_only_a_literal_escrow_true(marker, expected):
    reply = {"responseCode": 1, "handle": "88.118.2/PRD-1", "values": RECORD}
    if marker is not None:
        reply["escrow"] = marker
    walk = walk_answer(reply)
    assert walk.answer is not None and walk.answer.escrow is expected
    assert ("from escrow" in walk.hops[-1].outcome) is expected


def test_an_escrow_not_found_is_marked_too():
    walk = walk_answer({"responseCode": 100, "handle": "88.118.2/PRD-1", "escrow": True})
    assert walk.answer is not None and not walk.answer.found and walk.answer.escrow


def test_the_escrow_flag_survives_the_shared_tier_and_plain_entries_do_not_grow():
    marked = CacheEntry(EntryKind.ANSWER, "88.118.2/A", orjson.dumps(RECORD), 60, 1000.0, escrow=True)
    again = CacheEntry.from_bytes(marked.to_bytes())
    assert again.escrow is True and again.values_json == marked.values_json and again.ttl == 60
    plain = CacheEntry(EntryKind.ANSWER, "88.118.2/A", orjson.dumps(RECORD), 60, 1000.0)
    assert b"escrow" not in plain.to_bytes()
    assert CacheEntry.from_bytes(plain.to_bytes()).escrow is False


def test_an_entry_of_schema_1_or_with_a_malformed_flag_is_a_miss():
    assert SCHEMA_VERSION == 2  # 1 had no escrow flag: its entries cannot vouch they are not escrow copies
    assert KEY_NAMESPACE == "idnode:v2:"
    raw = orjson.loads(CacheEntry(EntryKind.ANSWER, "88.118.2/A", b"[]", 60, 1000.0, escrow=True).to_bytes())
    with pytest.raises(ValueError, match="schema 1"):
        CacheEntry.from_bytes(orjson.dumps({**raw, "v": 1}))
    with pytest.raises(ValueError, match="escrow flag"):
        CacheEntry.from_bytes(orjson.dumps({**raw, "escrow": "yes"}))


def test_the_record_page_says_the_answer_is_the_parents_escrow_copy():
    marked = render_record_page("88.118.2/A", RECORD, json_url="/api/handles/88.118.2/A", escrow=True)
    plain = render_record_page("88.118.2/A", RECORD, json_url="/api/handles/88.118.2/A")
    assert html.escape(ESCROW_NOTICE) in marked and 'class="escrow"' in marked
    assert 'class="escrow"' not in plain and "RV-40" in marked


# --- real nodes: a warm resolver during a takeover -------------------------------


async def stop_child_and_take_over(hierarchy, tmp_path, child_id) -> None:
    """Escrow the enterprise's backup with its parent, stop the enterprise
    node and turn the parent's takeover on (the samples are escrowed)."""
    await escrow(hierarchy, tmp_path, child_id)
    await take_down(hierarchy.enterprise)
    reply = await set_takeover(hierarchy, True)
    assert reply["restored"]["archives"] == 1


async def test_a_warm_resolver_fails_over_to_escrow_and_back_to_the_child(
    hierarchy, tmp_path, child_id, make_direct_resolver, clock
):
    enterprise, parent = hierarchy.enterprise, hierarchy.nodes[SECONDARY]
    resolver = await make_direct_resolver(SHORT_ANSWERS)
    transport = resolver.transport
    warm = Handle.from_text(sample(1))
    original = (await resolver.resolve(warm)).entry
    assert not original.escrow and original.ttl == 120
    assert resolver.memory.peek(delegation_key(ENTERPRISE)) is not None

    await stop_child_and_take_over(hierarchy, tmp_path, child_id)
    transport.urls.clear()

    # a fresh cached answer is still served as it is, without asking anyone
    result = await resolver.resolve(warm)
    assert result.source == "memory" and not result.entry.escrow and transport.urls == []

    # a handle not cached yet: the cached delegation's server fails, and the
    # walk falls back to the next start, the parent, which answers from escrow
    result = await resolver.resolve(Handle.from_text(sample(3)))
    assert result.source == "upstream" and result.entry.kind is EntryKind.ANSWER and result.entry.escrow
    assert result.entry.ttl == ESCROW_MAX_TTL_SECONDS
    assert transport.servers() == [enterprise.url, parent.url]
    assert [hop.level for hop in result.hops] == [ENTERPRISE, SECONDARY]
    assert "from escrow" in result.hops[-1].outcome
    assert resolver.memory.peek(delegation_key(ENTERPRISE)) is None  # the dead start is forgotten

    # the warm answer expires: it comes from escrow (same values), not stale,
    # and straight from the parent now
    clock.advance(121)
    transport.urls.clear()
    result = await resolver.resolve(warm)
    assert result.source == "upstream" and result.entry.escrow
    assert result.entry.values_json == original.values_json
    assert transport.servers() == [parent.url]

    # an escrow answer is kept for its short TTL only ...
    clock.advance(ESCROW_MAX_TTL_SECONDS - 1)
    assert (await resolver.resolve(warm)).source == "memory"
    # ... so once the child is back and takeover is over, it is found at once
    await enterprise.start()
    await set_takeover(hierarchy, False)
    clock.advance(2)
    transport.urls.clear()
    result = await resolver.resolve(warm)
    assert result.source == "upstream" and not result.entry.escrow and result.entry.ttl == 120
    assert transport.servers() == [parent.url, enterprise.url]
    assert resolver.memory.peek(delegation_key(ENTERPRISE)) is not None


async def test_the_resolvers_replies_carry_the_escrow_marker(hierarchy, tmp_path, child_id, make_resolver_client):
    client = await make_resolver_client()
    warm = await client.get(f"/api/handles/{sample(1)}")
    assert warm.status == 200 and "escrow" not in await warm.json()
    await stop_child_and_take_over(hierarchy, tmp_path, child_id)
    path = f"/api/handles/{sample(3)}"

    first = await client.get(path)
    body = await first.read()
    assert first.status == 200 and first.headers["X-Idnode-Cache"] == "upstream"
    status, direct = await ask_node(hierarchy.nodes[SECONDARY], path)
    assert status == 200 and body == direct  # byte for byte what the parent said, marker and all
    assert orjson.loads(body)["escrow"] is True
    entry = client.app[RESOLVER].memory.peek(handle_key(sample(3)))
    assert entry is not None and entry.escrow and entry.ttl == ESCROW_MAX_TTL_SECONDS

    hit = await client.get(path)  # the hot path's ready-made body has the marker in it
    assert hit.headers["X-Idnode-Cache"] == "memory" and await hit.read() == body

    for query in ("pretty", "type=PRODUCT_NAME", "trace=true"):
        reply = await client.get(f"{path}?{query}")
        answer = await reply.json()
        assert reply.status == 200 and answer["escrow"] is True, query
    assert "from escrow" in answer["trace"][-1]["outcome"]

    page = await client.get(f"/{sample(3)}?noredirect", headers={"Accept": "text/html"})
    text = await page.text()
    assert page.status == 200 and html.escape(ESCROW_NOTICE) in text
    assert int(page.headers["Cache-Control"].rsplit("=", 1)[1]) <= ESCROW_MAX_TTL_SECONDS
    proxied = await client.get(f"/{sample(3)}", headers={"Accept": "application/json"})
    assert (await proxied.json())["escrow"] is True
    scanned = await client.post("/api/scan", data=sample(3).encode(), headers={"Content-Type": "text/plain"})
    assert scanned.status == 200 and (await scanned.json())["escrow"] is True
    missing = await client.get(f"/api/handles/{ENTERPRISE}/NO-SUCH")
    assert missing.status == 404 and (await missing.json())["escrow"] is True
    for reply in (
        await client.post("/api/scan", data=f"{ENTERPRISE}/NO-SUCH".encode(), headers={"Content-Type": "text/plain"}),
        await client.get(f"/{ENTERPRISE}/NO-SUCH", headers={"Accept": "application/json"}),
    ):
        assert reply.status == 404 and (await reply.json())["escrow"] is True
    page = await client.get(f"/{ENTERPRISE}/NO-SUCH", headers={"Accept": "text/html"})
    assert page.status == 404 and html.escape(ESCROW_NOTICE) in await page.text()

    # the warm answer is still fresh: served from cache, not marked
    again = await client.get(f"/api/handles/{sample(1)}")
    assert again.headers["X-Idnode-Cache"] == "memory" and "escrow" not in await again.json()


async def test_a_warm_front_end_answers_from_escrow_once_its_cached_answer_expires(
    hierarchy, tmp_path, child_id, make_resolver_client
):
    client = await make_resolver_client(policy=CachePolicy(max_ttl=1, prefetch_fraction=0))
    path = f"/api/handles/{sample(1)}"
    assert (await client.get(path)).headers["X-Idnode-Cache"] == "upstream"
    await stop_child_and_take_over(hierarchy, tmp_path, child_id)
    await asyncio.sleep(1.1)  # the answer's TTL passes; the delegation's does not

    reply = await client.get(path)
    body = await reply.json()
    assert reply.status == 200 and reply.headers["X-Idnode-Cache"] == "upstream" and "Warning" not in reply.headers
    assert body["escrow"] is True and "stale" not in body
    assert any(v["type"] == "PRODUCT_NAME" for v in body["values"])


async def test_a_second_resolver_gets_the_escrow_answer_from_redis_with_its_marker_and_short_ttl(
    hierarchy, tmp_path, child_id, make_resolver_client, redis_url, redis_server
):
    first = await make_resolver_client(redis_url=redis_url)
    second = await make_resolver_client(redis_url=redis_url)
    await stop_child_and_take_over(hierarchy, tmp_path, child_id)
    path = f"/api/handles/{sample(3)}"
    body = await (await first.get(path)).read()
    assert orjson.loads(body)["escrow"] is True

    pttl = int(redis_server.command("PTTL", KEY_NAMESPACE + handle_key(sample(3)))[1:])
    policy = CachePolicy()
    assert 0 < pttl <= (ESCROW_MAX_TTL_SECONDS + policy.stale_window) * 1000

    shared = await second.get(path)
    assert shared.headers["X-Idnode-Cache"] == "redis" and await shared.read() == body
