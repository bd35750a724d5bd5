"""Filing upward: a child files its journal's master data and its daily
statistics with the parent, at least once through outages, stored exactly
once; only the child itself may file, for its own prefix only."""

from __future__ import annotations

import asyncio
import base64
import datetime

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from idcore.errors import UpstreamUnavailable
from idcore.handle import Handle, prefix_handle
from idcore.values import ALL_ADMIN_PERMISSIONS, AdminRef, HandleValue, ReservedIndex, ValueReference, ValueType
from registry import batch
from registry.filing import FILING_STATE_NAME, Filer, grant_filing
from registry.filing_store import FILINGS_NAME, FilingStore
from registry.memory_store import MemoryStore
from registry.mirror import Backoff, write_state
from registry.node_setup import prefix_record_values, site_for
from registry.resolution_stats import ResolutionStats
from registry.service import Registry
from resolver.filing_api import FILINGS, SIGNATURE_HEADER, HttpParent
from resolver.hierarchy import sample_handle, sample_values
from resolver.node_api import STATS
from resolver.node_app import build_node_app
from resolver.rest_client import basic_auth_header

PARENT, CHILD, OTHER = "88.118", "88.118.2", "88.118.3"
PARENT_SECRET, CHILD_SECRET, OTHER_SECRET = "parent-secret-1", "child-secret-1", "other-secret-1"
PARENT_ADMIN = ValueReference(prefix_handle(PARENT).to_text(), ReservedIndex.AUTH)
CHILD_ADMIN = ValueReference(prefix_handle(CHILD).to_text(), ReservedIndex.AUTH)
CHILD_ID = CHILD_ADMIN.to_text()


async def register(registry: Registry, first: int, count: int) -> None:
    items = [
        batch.parse_line(n, orjson.dumps({"handle": sample_handle(CHILD, n), "values": sample_values(CHILD, n)}))
        for n in range(first, first + count)
    ]
    results = await registry.apply_batch(items, CHILD_ADMIN)
    assert all(r["responseCode"] == 1 for r in results)


async def delegate(parent: Registry, child: str) -> None:
    admin = HandleValue(ReservedIndex.ADMIN, ValueType.HS_ADMIN, AdminRef(PARENT_ADMIN.handle, 300, ALL_ADMIN_PERMISSIONS))
    await parent.put(prefix_handle(child), [HandleValue(1, ValueType.HS_SITE, site_for("127.0.0.1", 8001)), admin],
                     PARENT_ADMIN)


class SwitchableParent:
    """An :class:`HttpParent` that can be made unreachable, counting deliveries."""

    def __init__(self, inner: HttpParent) -> None:
        self.inner, self.down, self.sent = inner, False, 0

    async def file(self, body: bytes) -> dict:
        if self.down:
            raise UpstreamUnavailable("cannot reach the parent: connection refused")
        self.sent += 1
        return await self.inner.file(body)


@pytest.fixture
async def nodes(tmp_path, aiohttp_client):
    """The parent (88.118, delegating 88.118.2 and 88.118.3 with filing
    granted) serving HTTP with a filing store; the child (88.118.2) in memory."""
    child_key = Ed25519PrivateKey.generate()
    async with MemoryStore() as parent_store, MemoryStore() as child_store, FilingStore(tmp_path / FILINGS_NAME) as filings:
        parent = Registry(parent_store)
        await parent.open()
        await parent.home_prefix(PARENT, prefix_record_values(PARENT, PARENT_SECRET.encode(), site_for("127.0.0.1", 8000)))
        for child, secret in ((CHILD, CHILD_SECRET), (OTHER, OTHER_SECRET)):
            await delegate(parent, child)
        await grant_filing(parent, CHILD, CHILD_SECRET, child_key.public_key(), PARENT_ADMIN)
        await grant_filing(parent, OTHER, OTHER_SECRET, None, PARENT_ADMIN)
        app = build_node_app(parent)
        app[FILINGS] = filings
        client = await aiohttp_client(app)
        child = Registry(child_store)
        await child.open()
        await child.home_prefix(CHILD, prefix_record_values(CHILD, CHILD_SECRET.encode(), site_for("127.0.0.1", 8001)))
        async with HttpParent(str(client.make_url("")), CHILD_ID, CHILD_SECRET, child_key) as http:
            parent_link = SwitchableParent(http)

            def make_filer(batch_size: int = 25, **kwargs) -> Filer:
                return Filer(child_store, parent_link, tmp_path / FILING_STATE_NAME, "http://parent.test", CHILD,
                             batch=batch_size, **kwargs)

            yield {"parent": parent, "child": child, "client": client, "filings": filings, "make_filer": make_filer,
                   "link": parent_link, "key": child_key, "tmp": tmp_path}


async def master_data_seqs(child: Registry) -> list[int]:
    return [e.seq for e in await child.store.journal(after=0, limit=10**6)
            if e.op in ("create", "update", "delete") and e.handle.upper().startswith(CHILD + "/")]


async def test_filing_catch_up_after_the_parent_was_down(nodes, caplog):
    child, filings, link = nodes["child"], nodes["filings"], nodes["link"]
    await register(child, 1, 40)
    filer = nodes["make_filer"](batch_size=25, backoff=Backoff(initial=0.01, maximum=0.05))
    link.down = True
    task = asyncio.create_task(filer.run(poll_seconds=0.01))
    try:
        for n in range(5):  # the child keeps registering while its parent is away
            await register(child, 100 + 20 * n, 20)
            await child.delete(Handle.from_text(sample_handle(CHILD, 3 + n)), CHILD_ADMIN)
            await asyncio.sleep(0.02)
        assert filer.failures >= 3 and filer.filed_seq == 0
        assert filer.status()["parentReachable"] is False
        assert len([r for r in caplog.records if "cannot file with" in r.message]) == 1  # logged once
        link.down = False
        last = await child.store.last_seq()
        for _ in range(500):
            await asyncio.sleep(0.01)
            if filer.failures == 0 and filer.filed_seq == last:
                break
        assert filer.filed_seq == last and filer.status()["lagEntries"] == 0
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    filed = [entry for entry, _ in await filings.entries(CHILD)]
    assert [e.seq for e in filed] == await master_data_seqs(child)  # all, in order, once each
    assert len(filed) == 140 + 5
    first = next(e for e in filed if e.handle == sample_handle(CHILD, 1))
    assert first.op == "create" and first.types[:3] == ["HS_ADMIN", "PRODUCT_NAME", "PRODUCT_TYPE"]
    assert [e.op for e in filed if e.handle == sample_handle(CHILD, 3)] == ["create", "delete"]
    assert orjson.loads(filer.state_path.read_bytes())["filed_seq"] == last  # the cursor is on disk
    [lag] = await filings.lag(CHILD)
    assert lag["filedSeq"] == lag["childLastSeq"] == last and lag["lagEntries"] == 0


async def test_replaying_acknowledged_batches_changes_nothing(nodes):
    child, filings = nodes["child"], nodes["filings"]
    await register(child, 1, 60)
    filer = nodes["make_filer"](batch_size=20)
    await filer.catch_up()
    before = await filings.entries(CHILD)
    # as after a crash between the parent's acknowledgement and the cursor write
    write_state(filer.state_path, {"parent": "http://parent.test", "prefix": CHILD, "filed_seq": 0})
    again = nodes["make_filer"](batch_size=20)
    assert again.filed_seq == 0
    sent = nodes["link"].sent
    await again.catch_up()
    assert nodes["link"].sent > sent and again.filed_seq == filer.filed_seq
    assert await filings.entries(CHILD) == before  # same rows, same filing times


async def test_a_filer_for_another_parent_or_prefix_is_refused(nodes):
    write_state(nodes["tmp"] / FILING_STATE_NAME, {"parent": "http://other.test", "prefix": CHILD, "filed_seq": 9})
    with pytest.raises(Exception, match="filing with http://other.test"):
        nodes["make_filer"]()


def master_data(child: str, handle: str, seq: int = 1) -> bytes:
    entry = {"seq": seq, "at_ms": 1, "op": "create", "handle": handle, "types": ["URL"]}
    return orjson.dumps({"kind": "master-data", "child": child, "through": seq, "last": seq, "entries": [entry]})


def signed(key: Ed25519PrivateKey, body: bytes, identity: str = CHILD_ID, secret: str = CHILD_SECRET) -> dict:
    return {"Authorization": basic_auth_header(identity, secret), "Content-Type": "application/json",
            SIGNATURE_HEADER: base64.b64encode(key.sign(body)).decode()}


async def test_unauthenticated_unsigned_or_wrong_prefix_filings_are_refused(nodes):
    client, key, filings = nodes["client"], nodes["key"], nodes["filings"]
    good = master_data(CHILD, f"{CHILD}/A")
    json_only = {"Content-Type": "application/json"}
    reply = await client.post("/api/filings", data=good, headers=json_only)
    assert reply.status == 401
    reply = await client.post("/api/filings", data=good, headers=signed(key, good, secret="wrong"))
    assert reply.status == 401
    # the child's node key is recorded at the parent: a filing must be signed by it
    reply = await client.post("/api/filings", data=good, headers={**signed(key, good), SIGNATURE_HEADER: ""})
    assert reply.status == 401 and "not signed" in (await reply.json())["message"]
    forged = signed(Ed25519PrivateKey.generate(), good)
    assert (await client.post("/api/filings", data=good, headers=forged)).status == 401
    # authenticated for 88.118.2, filing for 88.118.3
    other = master_data(OTHER, f"{OTHER}/A")
    reply = await client.post("/api/filings", data=other, headers=signed(key, other))
    assert reply.status == 403 and "may not file for 88.118.3" in (await reply.json())["message"]
    # a handle of another prefix inside the child's own filing
    smuggled = master_data(CHILD, f"{OTHER}/A")
    assert (await client.post("/api/filings", data=smuggled, headers=signed(key, smuggled))).status == 400
    assert await filings.entries(CHILD) == [] and await filings.entries(OTHER) == []
    reply = await client.post("/api/filings", data=good, headers=signed(key, good))
    assert reply.status == 200 and (await reply.json())["acknowledged"] == 1
    # 88.118.3 recorded no node key: Basic auth alone files for it
    other_auth = {"Authorization": basic_auth_header(f"300:0.NA/{OTHER}", OTHER_SECRET), "Content-Type": "application/json"}
    assert (await client.post("/api/filings", data=other, headers=other_auth)).status == 200


async def test_daily_statistics_are_filed_with_sensible_numbers(nodes, aiohttp_client):
    child, client = nodes["child"], nodes["client"]
    await register(child, 1, 30)
    child_app = build_node_app(child)
    child_client = await aiohttp_client(child_app)
    for n in range(1, 11):
        assert (await child_client.get(f"/api/handles/{sample_handle(CHILD, n)}")).status == 200
    for n in range(3):
        assert (await child_client.get(f"/api/handles/{CHILD}/MISSING-{n}")).status == 404
    stats_path = nodes["tmp"] / "resolution_stats.json"
    child_app[STATS].save(stats_path)
    filer = nodes["make_filer"](stats_path=stats_path)
    report = await filer.file_statistics()
    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    assert report["day"] == today and report["registrations"] == {"day": 30, "total": 30}
    resolution = report["resolution"]
    assert resolution["requests"] == 13 and resolution["successes"] == 10
    latency = resolution["latencyMs"]
    assert 0 < latency["min"] <= latency["avg"] <= latency["max"] < 5000
    assert 1 <= resolution["peakPerSecond"]["requests"] <= 13 and resolution["peakPerSecond"]["at"].startswith(today)
    reply = await client.get("/api/filings", params={"child": CHILD, "statistics": ""})
    [stored] = (await reply.json())["statistics"]
    assert stored["resolution"] == resolution
    # yesterday's report is filed once a day, not again
    await filer.file_due_statistics()
    sent = nodes["link"].sent
    await filer.file_due_statistics()
    assert nodes["link"].sent == sent


def test_resolution_counters_keep_the_peak_second():
    now = [1_764_000_000.2]
    stats = ResolutionStats(clock=lambda: now[0])
    for latency in (0.001, 0.003, 0.002):
        stats.record(True, latency)
    now[0] += 1.0
    stats.record(False, 0.010)
    summary = stats.summary(datetime.datetime.fromtimestamp(now[0], datetime.UTC).date().isoformat())
    assert summary["requests"] == 4 and summary["successes"] == 3
    assert summary["latencyMs"] == {"min": 1.0, "avg": 4.0, "max": 10.0}
    assert summary["peakPerSecond"]["requests"] == 3
    assert summary["peakPerSecond"]["at"].startswith("2025-11-24T16:00:00")
    assert stats.summary("2001-01-01")["requests"] == 0


async def test_the_parent_answers_who_filed_what_and_shows_lag(nodes):
    child, client = nodes["child"], nodes["client"]
    await register(child, 1, 50)
    filer = nodes["make_filer"](batch_size=20)
    await filer.file_once()
    lag = (await (await client.get("/api/filings/lag")).json())["children"]
    [row] = [r for r in lag if r["child"] == CHILD]
    assert row["filedSeq"] == 20 and row["childLastSeq"] == await child.store.last_seq()
    assert row["lagEntries"] == row["childLastSeq"] - 20 and row["lastFilingMs"] > 0
    await filer.catch_up()
    lag = (await (await client.get("/api/filings/lag", params={"child": CHILD})).json())["children"]
    assert lag[0]["lagEntries"] == 0
    handle = sample_handle(CHILD, 7)
    reply = await client.get("/api/filings", params={"child": CHILD, "handle": handle})
    [entry] = (await reply.json())["entries"]
    assert entry["handle"] == handle and entry["op"] == "create" and entry["filed_ms"] >= entry["at_ms"]
