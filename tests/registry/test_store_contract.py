"""Both stores keep the same contract: atomic transactions, an ordered
journal written with each change, key-ordered listing per prefix."""

from __future__ import annotations

import asyncio

import pytest

from idcore.errors import StorageError
from registry.memory_store import MemoryStore
from registry.read_cache import MISS, RecordCache
from registry.records import StoredRecord
from registry.sqlite_store import SqliteStore
from registry.store import Op


def rec(handle: str, body: bytes = b"[]") -> StoredRecord:
    return StoredRecord(handle, body)


@pytest.fixture(params=["memory", "sqlite"])
async def store(request, tmp_path):
    if request.param == "memory":
        yield MemoryStore()
    else:
        async with SqliteStore(tmp_path / "s.sqlite3") as sqlite:
            yield sqlite


async def test_writes_are_visible_and_journaled_in_order(store):
    def write(txn):
        txn.put("88.1/A", rec("88.1/A"), Op.CREATE, "300:0.NA/88.1")
        txn.put("88.1/B", rec("88.1/B"), Op.CREATE, "300:0.NA/88.1")
        txn.delete("88.1/A", "88.1/A", "300:0.NA/88.1")
        return "done"

    assert await store.transact(write) == "done"
    assert await store.get("88.1/A") is None
    assert await store.get("88.1/B") == rec("88.1/B")
    journal = await store.journal()
    assert [(e.seq, e.op, e.handle) for e in journal] == [(1, "create", "88.1/A"), (2, "create", "88.1/B"), (3, "delete", "88.1/A")]
    assert all(e.actor == "300:0.NA/88.1" and e.at_ms > 0 for e in journal)
    assert [e.seq for e in await store.journal(after=1, limit=1)] == [2]


async def test_a_failing_transaction_changes_nothing(store):
    await store.transact(lambda txn: txn.put("88.1/KEEP", rec("88.1/KEEP", b"[1]"), Op.CREATE, None))

    def fail(txn):
        txn.put("88.1/KEEP", rec("88.1/KEEP", b"[2]"), Op.UPDATE, None)
        txn.put("88.1/NEW", rec("88.1/NEW"), Op.CREATE, None)
        raise ValueError("refused half way")

    with pytest.raises(ValueError, match="half way"):
        await store.transact(fail)
    assert (await store.get("88.1/KEEP")).blob == b"[1]"
    assert await store.get("88.1/NEW") is None
    assert len(await store.journal()) == 1


async def test_transactions_see_their_own_writes(store):
    def write(txn):
        assert txn.get("88.1/X") is None
        txn.put("88.1/X", rec("88.1/X"), Op.CREATE, None)
        txn.prefetch(["88.1/X", "88.1/Y"])
        return txn.get("88.1/X")

    assert await store.transact(write) == rec("88.1/X")


async def test_listing_is_per_prefix_in_key_order(store):
    keys = ["88.1/b", "88.1/a", "88.1/c", "88.10/x", "88.1.2/y", "88/z"]

    def write(txn):
        for key in keys:
            txn.put(key, rec(key), Op.CREATE, None)

    await store.transact(write)
    assert await store.count_handles("88.1") == 3
    assert await store.count_handles_at("88.1") == (3, len(keys))
    assert [h for _, h in await store.list_handles("88.1", limit=10)] == ["88.1/a", "88.1/b", "88.1/c"]
    assert [h for _, h in await store.list_handles("88.1", offset=1, limit=1)] == ["88.1/b"]
    assert [h for _, h in await store.list_handles("88.1", after="88.1/a", limit=10)] == ["88.1/b", "88.1/c"]
    batches = [b async for b in store.iter_handles("88.1", batch=2)]
    assert batches == [["88.1/a", "88.1/b"], ["88.1/c"]]


async def test_homed_prefixes_are_journaled(store):
    def home(txn):
        txn.set_homed("88.abc", True, "system")

    await store.transact(home)
    assert await store.homed_prefixes() == ["88.abc"]
    await store.transact(lambda txn: txn.set_homed("88.ABC", False, "system"))
    assert await store.homed_prefixes() == []
    assert [e.op for e in await store.journal()] == ["home", "unhome"]


async def test_concurrent_writers_are_each_committed_once(store):
    async def one(i: int) -> None:
        await store.transact(lambda txn: txn.put(f"88.1/{i:04}", rec(f"88.1/{i:04}"), Op.CREATE, None))

    async def counts() -> list[tuple[int, int]]:
        seen = []
        for _ in range(50):
            seen.append(await store.count_handles_at("88.1"))
            await asyncio.sleep(0)
        return seen

    *_, seen = await asyncio.gather(*(one(i) for i in range(300)), counts())
    # every handle here was created by one journaled write: each count matches its position
    assert all(count == seq for count, seq in seen), seen
    assert await store.count_handles("88.1") == 300
    assert len(await store.journal(limit=1000)) == 300


async def test_sqlite_persists_across_reopen(tmp_path):
    path = tmp_path / "p.sqlite3"
    async with SqliteStore(path) as store:
        await store.transact(lambda txn: txn.put("88.1/A", rec("88.1/A", b"[7]"), Op.CREATE, None))
    async with SqliteStore(path) as store:
        assert (await store.get("88.1/A")).blob == b"[7]"
        assert [e.handle for e in await store.journal()] == ["88.1/A"]


async def test_sqlite_group_commit_isolates_a_failing_job(tmp_path):
    async with SqliteStore(tmp_path / "g.sqlite3") as store:
        def bad(txn):
            txn.put("88.1/BAD", rec("88.1/BAD"), Op.CREATE, None)
            raise KeyError("no")

        results = await asyncio.gather(
            *(store.transact(lambda txn, i=i: txn.put(f"88.1/{i}", rec(f"88.1/{i}"), Op.CREATE, None)) for i in range(20)),
            store.transact(bad),
            return_exceptions=True,
        )
        assert isinstance(results[-1], KeyError)
        assert await store.count_handles("88.1") == 20
        assert await store.get("88.1/BAD") is None


async def test_sqlite_refuses_a_missing_folder(tmp_path):
    with pytest.raises(StorageError, match="does not exist"):
        await SqliteStore(tmp_path / "nowhere" / "db.sqlite3").open()


async def test_sqlite_read_cache_never_serves_a_replaced_record(tmp_path):
    async with SqliteStore(tmp_path / "c.sqlite3", cache=RecordCache(max_entries=10)) as store:
        await store.transact(lambda txn: txn.put("88.1/A", rec("88.1/A", b"[1]"), Op.CREATE, None))
        assert (await store.get("88.1/A")).blob == b"[1]"
        assert len(store.cache) == 1  # cached by the read
        await store.transact(lambda txn: txn.put("88.1/A", rec("88.1/A", b"[2]"), Op.UPDATE, None))
        assert (await store.get("88.1/A")).blob == b"[2]"
        await store.transact(lambda txn: txn.delete("88.1/A", "88.1/A", None))
        assert await store.get("88.1/A") is None
        for i in range(30):  # bounded by entries
            await store.get(f"88.1/miss-{i}")
        assert len(store.cache) == 10


def test_read_cache_drops_reads_overtaken_by_a_commit():
    cache = RecordCache(max_entries=10)
    generation = cache.generation
    cache.begin_commit()  # a commit starts while the read is under way
    cache.offer("k", rec("old"), generation)
    cache.end_commit([("k", rec("new"))])
    assert cache.lookup("k") is MISS  # the possibly stale read was not kept
    generation = cache.generation
    cache.offer("k", rec("new"), generation)
    assert cache.lookup("k") == rec("new")
    cache.begin_commit()
    cache.end_commit([("k", None)])
    assert cache.lookup("k") is None  # known absent now


def test_read_cache_is_bounded_by_bytes():
    cache = RecordCache(max_entries=1000, max_bytes=20_000)
    for i in range(50):
        cache.offer(f"k{i}", rec(f"h{i}", b"x" * 100), cache.generation)
    assert cache.size_bytes <= 20_000
    assert 0 < len(cache) < 50


async def test_sqlite_writer_failure_fails_waiting_and_later_writes(tmp_path, monkeypatch):
    store = SqliteStore(tmp_path / "f.sqlite3")
    await store.open()
    try:
        def broken(self, conn, group):
            raise RuntimeError("disk on fire")

        monkeypatch.setattr(SqliteStore, "_commit_group", broken)
        with pytest.raises(StorageError, match="disk on fire"):
            await store.transact(lambda txn: txn.put("88.1/A", rec("88.1/A"), Op.CREATE, None))
        with pytest.raises(StorageError, match="takes no more writes"):
            await store.transact(lambda txn: None)
    finally:
        await store.close()


async def test_sqlite_refuses_writes_after_close(tmp_path):
    store = SqliteStore(tmp_path / "c.sqlite3")
    with pytest.raises(StorageError, match="not open"):
        await store.transact(lambda txn: None)
    await store.open()
    await store.close()
    with pytest.raises(StorageError, match="closed"):
        await store.transact(lambda txn: None)


async def test_scan_records_pages_every_prefix_in_key_order(store):
    keys = ["88.1/b", "88.1/a", "88.10/x", "88.1.2/y", "88/z"]

    def write(txn):
        for key in keys:
            txn.put(key, rec(key, key.encode()), Op.CREATE, None)

    await store.transact(write)
    first = await store.scan_records(limit=3)
    assert first == [(k, k, k.encode()) for k in sorted(keys)[:3]]
    rest = await store.scan_records(after=first[-1][0], limit=10)
    assert [k for k, _, _ in rest] == sorted(keys)[3:]
    assert await store.scan_records(after=sorted(keys)[-1], limit=10) == []


async def test_last_seq_is_the_highest_journal_number(store):
    assert await store.last_seq() == 0
    await store.transact(lambda txn: txn.put("88.1/A", rec("88.1/A"), Op.CREATE, None))
    await store.transact(lambda txn: txn.delete("88.1/A", "88.1/A", None))
    assert await store.last_seq() == 2 == (await store.journal())[-1].seq
