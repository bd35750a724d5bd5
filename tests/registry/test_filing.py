"""Filing upward: a child files its journal's master data and its daily
statistics with the parent, at least once through outages, stored exactly
once; only the child itself may file, for its own prefix only."""

from __future__ import annotations

import asyncio
import base64
import datetime
import time
from types import SimpleNamespace

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from idcore.errors import UpstreamUnavailable
from idcore.handle import Handle, prefix_handle
from idcore.rest_json import values_from_json
from idcore.values import (
    ALL_ADMIN_PERMISSIONS,
    AdminRef,
    HandleValue,
    ReservedIndex,
    ValueReference,
    ValueType,
)
from registry import batch
from registry.filing import (
    FILING_STATE_NAME,
    MAX_STATISTICS_BACKFILL_DAYS,
    REFUSAL_LOG_SECONDS,
    Filer,
    ParentRefused,
    grant_filing,
)
from registry.daily_registrations import registrations
from registry.filing_store import FILINGS_NAME, FilingStore
from registry.memory_store import MemoryStore
from registry.mirror import Backoff, write_state
from registry.node_setup import prefix_record_values, site_for
from registry.resolution_stats import MAX_DAYS_KEPT, ResolutionStats
from registry.service import Registry
from registry.sqlite_store import SqliteStore
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


async def test_the_http_parent_reports_refused_credentials_as_a_refusal(nodes):
    url = str(nodes["client"].make_url(""))
    body = master_data(CHILD, f"{CHILD}/R-1")
    async with HttpParent(url, CHILD_ID, "not-the-secret", nodes["key"]) as wrong_secret:
        with pytest.raises(ParentRefused) as refused:
            await wrong_secret.file(body)
    assert refused.value.parent_status == 401 and "credentials" in refused.value.message
    async with HttpParent(url, CHILD_ID, CHILD_SECRET, Ed25519PrivateKey.generate()) as wrong_key:
        with pytest.raises(ParentRefused, match="not signed"):
            await wrong_key.file(body)


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


# --- daily statistics over missed days, and a refusing parent -----------------

DAY_MS = 86_400_000
#: 2025-03-01T00:00:00Z, the first day of the journals the tests below write.
DAY_1_MS = 1_740_787_200_000


def day_n(n: int) -> str:
    """The UTC day ``n`` days after 2025-02-28 (day 1 is 2025-03-01)."""
    return (datetime.date(2025, 2, 28) + datetime.timedelta(days=n)).isoformat()


@pytest.fixture
def journal_clock(monkeypatch):
    """The time stamped on journal entries, settable: stores have no clock of
    their own, every transaction reads ``time.time()`` of registry.store."""
    now = [DAY_1_MS / 1000]
    monkeypatch.setattr("registry.store.time", SimpleNamespace(time=lambda: now[0]))
    return now


@pytest.fixture(params=["memory", "sqlite"])
async def child_node(request, tmp_path, journal_clock):
    """The child's registry (88.118.2 homed) on a memory or SQLite store."""
    store = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "child.sqlite3")
    async with store:
        child = Registry(store)
        await child.open()
        await child.home_prefix(CHILD, prefix_record_values(CHILD, CHILD_SECRET.encode(), site_for("127.0.0.1", 8001)))
        yield child


class RecordingParent:
    """A :class:`Parent` in memory: acknowledges everything, keeps the
    statistics reports; ``fail_on_day`` makes the filing of that day fail
    (once), ``refusal`` makes every filing refused with that message."""

    def __init__(self) -> None:
        self.reports: list[dict] = []
        self.fail_on_day: str | None = None
        self.refusal: str | None = None
        self.refused = 0

    async def file(self, body: bytes) -> dict:
        if self.refusal is not None:
            self.refused += 1
            raise ParentRefused(self.refusal, parent_status=403)
        filing = orjson.loads(body)
        if filing["kind"] == "master-data":
            return {"responseCode": 1, "acknowledged": filing["through"]}
        if filing["day"] == self.fail_on_day:
            self.fail_on_day = None
            raise UpstreamUnavailable("cannot reach the parent: connection reset")
        self.reports.append(filing)
        return {"responseCode": 1, "child": filing["child"], "day": filing["day"]}


def stats_filer(store, parent, tmp_path, now_s: float, **kwargs) -> Filer:
    return Filer(store, parent, tmp_path / FILING_STATE_NAME, "http://parent.test", CHILD,
                 clock=lambda: now_s, **kwargs)


async def write_six_days(child: Registry, journal_clock: list[float]) -> None:
    """Day 1: 5 created; day 2: one updated; day 3: 3 created; day 4: one
    deleted; day 5: nothing; day 6 (the filer's today): 2 created."""
    def at(day: int, hour: int) -> None:
        journal_clock[0] = (DAY_1_MS + (day - 1) * DAY_MS + hour * 3_600_000) / 1000

    at(1, 1)  # the prefix was homed at 00:00 of day 1
    await register(child, 1, 5)
    at(2, 23)
    await child.put(Handle.from_text(sample_handle(CHILD, 2)), values_from_json(sample_values(CHILD, 99)), CHILD_ADMIN)
    at(3, 0)
    await register(child, 6, 3)
    at(4, 12)
    await child.delete(Handle.from_text(sample_handle(CHILD, 4)), CHILD_ADMIN)
    at(6, 8)
    await register(child, 20, 2)


#: The registrations of days 1..5 of :func:`write_six_days`.
SIX_DAYS_EXPECTED = {day_n(1): {"day": 5, "total": 5}, day_n(2): {"day": 0, "total": 5},
                     day_n(3): {"day": 3, "total": 8}, day_n(4): {"day": 0, "total": 7},
                     day_n(5): {"day": 0, "total": 7}}


async def test_missed_days_are_each_filed_once_with_their_registrations_and_end_of_day_totals(
    child_node, journal_clock, tmp_path
):
    child = child_node
    await write_six_days(child, journal_clock)
    counters = ResolutionStats(clock=lambda: (DAY_1_MS + DAY_MS) / 1000 + 60)  # day 2
    counters.record(True, 0.002)
    counters.save(tmp_path / "resolution_stats.json")
    parent = RecordingParent()
    day_6_noon = (DAY_1_MS + 5 * DAY_MS) / 1000 + 12 * 3600
    filer = stats_filer(child.store, parent, tmp_path, day_6_noon, stats_path=tmp_path / "resolution_stats.json")
    assert await filer.file_due_statistics() == [day_n(n) for n in range(1, 6)]
    assert {r["day"]: r["registrations"] for r in parent.reports} == SIX_DAYS_EXPECTED
    assert [r["day"] for r in parent.reports] == sorted(SIX_DAYS_EXPECTED)  # oldest first
    assert [r["resolution"]["requests"] for r in parent.reports] == [0, 1, 0, 0, 0]
    assert await child.store.count_handles(CHILD) == 9  # today's two count in no filed day
    assert orjson.loads(filer.state_path.read_bytes())["statistics_day"] == day_n(5)
    assert await filer.file_due_statistics() == [] and len(parent.reports) == 5
    again = stats_filer(child.store, parent, tmp_path, day_6_noon + 3600)  # a restart the same day
    assert await again.file_due_statistics() == [] and len(parent.reports) == 5
    # the on-demand report of a past day agrees with the filed one
    assert (await filer.statistics(day_n(3)))["registrations"] == SIX_DAYS_EXPECTED[day_n(3)]


async def test_a_filer_that_died_after_an_acknowledged_day_resumes_at_the_next(child_node, journal_clock, tmp_path):
    child = child_node
    await write_six_days(child, journal_clock)
    parent = RecordingParent()
    parent.fail_on_day = day_n(4)
    day_6_noon = (DAY_1_MS + 5 * DAY_MS) / 1000 + 12 * 3600
    with pytest.raises(UpstreamUnavailable):
        await stats_filer(child.store, parent, tmp_path, day_6_noon).file_due_statistics()
    assert orjson.loads((tmp_path / FILING_STATE_NAME).read_bytes())["statistics_day"] == day_n(3)
    resumed = stats_filer(child.store, parent, tmp_path, day_6_noon)  # a new process, from the state file
    assert await resumed.file_due_statistics() == [day_n(4), day_n(5)]
    assert [r["day"] for r in parent.reports] == [day_n(n) for n in range(1, 6)]  # each once
    assert {r["day"]: r["registrations"] for r in parent.reports} == SIX_DAYS_EXPECTED


async def test_totals_are_counted_at_the_journal_position_they_subtract_from(child_node, journal_clock, tmp_path):
    child = child_node
    await write_six_days(child, journal_clock)
    # the count and the journal position come from one read: writes after it change neither
    count, last = await child.store.count_handles_at(CHILD)
    assert (count, last) == (await child.store.count_handles(CHILD), await child.store.last_seq())
    assert await registrations(child.store, CHILD, SIX_DAYS_EXPECTED) == SIX_DAYS_EXPECTED
    assert (await registrations(child.store, CHILD, [day_n(3)]))[day_n(3)] == {"day": 3, "total": 8}


async def test_statistics_older_than_the_backfill_bound_are_skipped_with_one_warning(
    child_node, journal_clock, tmp_path, caplog
):
    child = child_node
    await register(child, 1, 4)  # day 1
    now = DAY_1_MS / 1000 + (MAX_STATISTICS_BACKFILL_DAYS + 20) * 86400
    parent = RecordingParent()
    yesterday = day_n(MAX_STATISTICS_BACKFILL_DAYS + 20)
    oldest = day_n(21)
    # a filer that filed day 5, then was down
    write_state(tmp_path / FILING_STATE_NAME, {"parent": "http://parent.test", "prefix": CHILD,
                                               "filed_seq": 0, "statistics_day": day_n(5)})
    filer = stats_filer(child.store, parent, tmp_path, now)
    parent.fail_on_day = oldest  # the first day filed fails, so the retry skips the same days again
    with pytest.raises(UpstreamUnavailable):
        await filer.file_due_statistics()
    assert await filer.file_due_statistics() == days_between(oldest, yesterday)
    assert [r["day"] for r in parent.reports] == days_between(oldest, yesterday)
    assert len(days_between(oldest, yesterday)) == MAX_STATISTICS_BACKFILL_DAYS
    assert all(r["registrations"] == {"day": 0, "total": 4} for r in parent.reports)
    [warning] = [r for r in caplog.records if "are not filed" in r.message]  # once, though retried
    assert warning.levelname == "WARNING" and f"{day_n(6)} through {day_n(20)}" in warning.message
    # a first run starts at the later of the journal's first day and the bound
    caplog.clear()
    (tmp_path / FILING_STATE_NAME).unlink()
    first_run = stats_filer(child.store, RecordingParent(), tmp_path, now)
    assert await first_run.due_statistics_days() == days_between(oldest, yesterday)
    assert f"{day_n(1)} through {day_n(20)}" in caplog.text
    recent = stats_filer(child.store, RecordingParent(), tmp_path, DAY_1_MS / 1000 + 3 * 86400)
    assert await recent.due_statistics_days() == [day_n(1), day_n(2), day_n(3)]


async def test_every_back_filled_day_has_its_resolution_counters(child_node, journal_clock, tmp_path):
    child = child_node
    await register(child, 1, 2)  # day 1
    now = DAY_1_MS / 1000 + 60 * 86400  # day 61, long after: the bound applies
    seconds = [0.0]
    stats = ResolutionStats(clock=lambda: seconds[0])
    for day in range(61 - MAX_DAYS_KEPT + 1, 62):  # one request a day, as long as counters are kept
        seconds[0] = DAY_1_MS / 1000 + (day - 1) * 86400 + 3600
        stats.record(True, 0.001)
    stats.save(tmp_path / "stats.json")
    parent = RecordingParent()
    filer = stats_filer(child.store, parent, tmp_path, now, stats_path=tmp_path / "stats.json")
    assert len(await filer.file_due_statistics()) == MAX_STATISTICS_BACKFILL_DAYS
    assert [r["resolution"]["requests"] for r in parent.reports] == [1] * MAX_STATISTICS_BACKFILL_DAYS


async def test_a_first_run_on_an_empty_journal_files_yesterday_only(tmp_path):
    async with MemoryStore() as store:
        filer = stats_filer(store, RecordingParent(), tmp_path, DAY_1_MS / 1000 + 40 * 86400)
        assert await filer.due_statistics_days() == [day_n(40)]


def days_between(first: str, last: str) -> list[str]:
    start, end = datetime.date.fromisoformat(first), datetime.date.fromisoformat(last)
    return [(start + datetime.timedelta(days=n)).isoformat() for n in range((end - start).days + 1)]


async def test_a_refusing_parent_is_logged_as_an_error_shown_in_status_and_retried(tmp_path, caplog):
    async with MemoryStore() as store:
        child = Registry(store)
        await child.open()
        await child.home_prefix(CHILD, prefix_record_values(CHILD, CHILD_SECRET.encode(), site_for("127.0.0.1", 8001)))
        await register(child, 1, 3)
        parent = RecordingParent()
        parent.refusal = "300:0.NA/88.118.2 may not file for 88.118.2"
        now = [time.time()]
        filer = Filer(store, parent, tmp_path / FILING_STATE_NAME, "http://parent.test", CHILD,
                      backoff=Backoff(initial=0.001, maximum=0.005), clock=lambda: now[0])

        def refusal_logs() -> list:
            return [r for r in caplog.records if "refused this filer's credentials" in r.message]

        async def until(condition) -> None:
            for _ in range(1000):
                if condition():
                    return
                await asyncio.sleep(0.005)
            raise AssertionError("timed out")

        task = asyncio.create_task(filer.run(poll_seconds=0.005))
        try:
            await until(lambda: parent.refused >= 5)
            [logged] = refusal_logs()  # an unchanged refusal is logged once ...
            assert logged.levelname == "ERROR" and "idnode filing grant" in logged.message
            assert filer.status()["refused"] == parent.refusal and filer.status()["parentReachable"] is False
            now[0] += REFUSAL_LOG_SECONDS  # ... and again after a while
            await until(lambda: len(refusal_logs()) == 2)
            parent.refusal = "the filing is not signed by the node key recorded in 0.NA/88.118.2"
            await until(lambda: len(refusal_logs()) == 3)  # a new refusal is news
            assert parent.refusal in refusal_logs()[-1].message
            assert not task.done()
            parent.refusal = None  # the operator granted filing at the parent
            last = await store.last_seq()
            await until(lambda: filer.filed_seq == last and filer.failures == 0)
            assert filer.status()["refused"] is None and filer.status()["parentReachable"] is True
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
