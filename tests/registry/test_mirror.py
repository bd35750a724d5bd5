"""A mirror copies the primary's journal into its own store: in batches,
updates and deletes included, idempotently, through outages; it serves
reads and refuses writes; the journal feed is an administrator's read."""

from __future__ import annotations

import asyncio
import base64
from unittest import mock

import orjson
import pytest
from aiohttp.test_utils import make_mocked_request

from idcore.handle import Handle, prefix_handle
from idcore.rest_json import values_from_json
from idcore.values import ReservedIndex, ValueReference
from registry import batch
from registry.memory_store import MemoryStore
from registry.mirror import STATE_NAME, Backoff, JournalPage, Mirror, write_state
from registry.node_setup import prefix_record_values, site_for
from registry.service import Registry
from resolver import journal_api
from resolver.hierarchy import sample_handle, sample_values
from resolver.mirror_app import build_mirror_app
from resolver.node_app import build_node_app
from tests.registry.mirror_helpers import LocalFeed, snapshot

PREFIX = "88.118.2"
SECRET = "primary-secret-1"
ADMIN = ValueReference(prefix_handle(PREFIX).to_text(), ReservedIndex.AUTH)


async def register(registry: Registry, first: int, count: int) -> None:
    items = []
    for number in range(first, first + count):
        line = {"handle": sample_handle(PREFIX, number), "values": sample_values(PREFIX, number)}
        items.append(batch.parse_line(number, orjson.dumps(line)))
    results = await registry.apply_batch(items, ADMIN)
    assert all(r["responseCode"] == 1 for r in results)


@pytest.fixture
async def primary():
    async with MemoryStore() as store:
        registry = Registry(store)
        await registry.open()
        await registry.home_prefix(PREFIX, prefix_record_values(PREFIX, SECRET.encode(), site_for("127.0.0.1", 8000)))
        await register(registry, 1, 120)
        yield registry


@pytest.fixture
async def make_mirror(primary, tmp_path):
    async with MemoryStore() as store:
        registry = Registry(store)
        await registry.open()
        feed = LocalFeed(primary)

        def make(batch_size: int = 25, **kwargs) -> Mirror:
            return Mirror(registry, feed, tmp_path / STATE_NAME, "http://primary.test", batch=batch_size, **kwargs)

        yield make


async def test_a_mirror_catches_up_from_zero_in_batches(primary, make_mirror):
    mirror = make_mirror(batch_size=25)
    assert mirror.registry.homed_prefixes == ()
    applied = await mirror.catch_up()
    last = (await primary.store.journal(after=0, limit=10**6))[-1].seq
    assert applied == last > 25 and mirror.feed.pages >= last // 25
    assert mirror.applied_seq == mirror.primary_seq == last
    assert await snapshot(mirror.registry.store) == await snapshot(primary.store)
    assert mirror.registry.homed_prefixes == (PREFIX,)
    assert mirror.status()["lagEntries"] == 0
    # the cursor is on disk, written after the commit
    assert orjson.loads(mirror.state_path.read_bytes()) == {"primary": "http://primary.test", "applied_seq": last}


async def test_updates_and_deletes_reach_the_mirror(primary, make_mirror):
    mirror = make_mirror()
    await mirror.catch_up()
    changed = Handle.from_text(sample_handle(PREFIX, 3))
    await primary.put(changed, values_from_json([{"index": 1, "type": "URL", "data": "https://example.com/new"}]), ADMIN)
    await primary.delete(Handle.from_text(sample_handle(PREFIX, 4)), ADMIN)
    await primary.delete(Handle.from_text(sample_handle(PREFIX, 5)), ADMIN)
    await register(primary, 500, 3)
    assert mirror.status()["lagEntries"] == 0  # not known until the next pull
    await mirror.catch_up()
    mine = await snapshot(mirror.registry.store)
    assert mine == await snapshot(primary.store)
    assert changed.key in mine and Handle.from_text(sample_handle(PREFIX, 4)).key not in mine
    answer = await mirror.registry.resolve(changed)
    assert b"https://example.com/new" in answer.values_json


async def test_replaying_from_zero_changes_nothing(primary, make_mirror):
    mirror = make_mirror(batch_size=40)
    await mirror.catch_up()
    before = await snapshot(mirror.registry.store)
    own_journal = await mirror.registry.store.journal(after=0, limit=10**6)
    # as after a crash between the commit and the cursor write: the state says 0
    write_state(mirror.state_path, {"primary": "http://primary.test", "applied_seq": 0})
    again = make_mirror(batch_size=40)
    assert again.applied_seq == 0
    await again.catch_up()
    assert await snapshot(again.registry.store) == before == await snapshot(primary.store)
    # records are written whole: a replay rewrites nothing, so journals nothing
    assert await again.registry.store.journal(after=0, limit=10**6) == own_journal


async def test_a_mirror_of_another_primary_is_refused(make_mirror, tmp_path):
    write_state(tmp_path / STATE_NAME, {"primary": "http://other.test", "applied_seq": 9})
    with pytest.raises(Exception, match="mirror of http://other.test"):
        make_mirror()


async def test_the_mirror_backs_off_while_the_primary_is_down_then_catches_up(primary, make_mirror, caplog):
    mirror = make_mirror(backoff=Backoff(initial=0.01, maximum=0.05))
    mirror.feed.down = True
    task = asyncio.create_task(mirror.run(poll_seconds=0.01))
    try:
        for _ in range(200):
            await asyncio.sleep(0.01)
            if mirror.failures >= 3:
                break
        assert mirror.failures >= 3 and mirror.applied_seq == 0
        assert mirror.status()["primaryReachable"] is False
        assert len([r for r in caplog.records if "cannot copy the journal" in r.message]) == 1  # logged once
        mirror.feed.down = False
        for _ in range(300):
            await asyncio.sleep(0.01)
            if mirror.failures == 0 and mirror.applied_seq and mirror.applied_seq == mirror.primary_seq:
                break
        assert await snapshot(mirror.registry.store) == await snapshot(primary.store)
        assert mirror.status()["primaryReachable"] is True
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_backoff_grows_to_its_maximum():
    backoff = Backoff(initial=0.5, maximum=4.0)
    assert [backoff.delay(n) for n in (1, 2, 3, 4, 5, 9)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_a_malformed_feed_reply_is_refused():
    with pytest.raises(Exception, match="malformed"):
        JournalPage.from_json({"last": 1, "entries": [{"seq": "1"}]})
    with pytest.raises(Exception, match="sequence order"):
        entry = {"at_ms": 1, "op": "delete", "handle": "88.118.2/X", "record": None}
        JournalPage.from_json({"last": 2, "entries": [{**entry, "seq": 2}, {**entry, "seq": 1}]})


async def test_the_mirror_serves_reads_and_refuses_writes(make_mirror, aiohttp_client):
    mirror = make_mirror()
    await mirror.catch_up()
    client = await aiohttp_client(build_mirror_app(mirror))
    reply = await client.get(f"/api/handles/{sample_handle(PREFIX, 7)}")
    assert reply.status == 200 and (await reply.json())["handle"] == sample_handle(PREFIX, 7)
    auth = {"Authorization": "Basic " + base64.b64encode(f"300:0.NA/{PREFIX}:{SECRET}".encode()).decode()}
    for method, path in (("PUT", f"/api/handles/{PREFIX}/NEW"), ("DELETE", f"/api/handles/{sample_handle(PREFIX, 7)}"),
                         ("POST", "/api/batch")):
        reply = await client.request(method, path, data=b"[]", headers={**auth, "Content-Type": "application/json"})
        body = await reply.json()
        assert reply.status == 403 and "this node is a mirror of http://primary.test" in body["message"]
    assert (await mirror.registry.store.get(Handle.from_text(sample_handle(PREFIX, 7)).key)) is not None
    status = await (await client.get("/api/mirror")).json()
    assert status["primary"] == "http://primary.test" and status["lagEntries"] == 0
    assert status["appliedSeq"] == status["primarySeq"] > 0


def remote_request(app, remote: str, query: str, headers=None):
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (remote, 40000) if name == "peername" else default
    return make_mocked_request("GET", f"/api/journal?{query}", app=app, transport=transport, headers=headers or {})


async def test_the_journal_feed_is_open_on_loopback_and_needs_an_admin_elsewhere(primary):
    app = build_node_app(primary)
    reply = await journal_api.get_journal(remote_request(app, "127.0.0.1", "after=0&limit=3"))
    body = orjson.loads(reply.body)
    assert reply.status == 200 and [e["seq"] for e in body["entries"]] == [1, 2, 3]
    assert body["entries"][0]["op"] == "home" and body["entries"][0]["prefix"] == PREFIX
    assert body["last"] > 3
    reply = await journal_api.get_journal(remote_request(app, "203.0.113.9", "after=0"))
    assert reply.status == 401
    good = "Basic " + base64.b64encode(f"300:0.NA/{PREFIX}:{SECRET}".encode()).decode()
    reply = await journal_api.get_journal(remote_request(app, "203.0.113.9", "after=0", {"Authorization": good}))
    assert reply.status == 200
    bad = "Basic " + base64.b64encode(f"300:0.NA/{PREFIX}:wrong".encode()).decode()
    reply = await journal_api.get_journal(remote_request(app, "203.0.113.9", "after=0", {"Authorization": bad}))
    assert reply.status in (401, 403)
    over = journal_api.MAX_JOURNAL_PAGE + 1
    reply = await journal_api.get_journal(remote_request(app, "127.0.0.1", f"limit={over}"))
    assert reply.status == 400
