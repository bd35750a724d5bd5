"""The in-process tier's bounds: entry count, bytes, LRU order, keep time;
and the layering in front of a shared tier. Pure: no sockets, no Redis."""

from __future__ import annotations

import pytest

from cache.entry import ENTRY_OVERHEAD_BYTES, CacheEntry, EntryKind
from cache.layered import LayeredCache
from cache.memory import MemoryCache


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def entry(name: str = "88.118.2/A", payload: int = 0, ttl: int = 60, stored_at: float = 1_000_000.0) -> CacheEntry:
    values = b'["' + b"x" * payload + b'"]'
    return CacheEntry(EntryKind.ANSWER, name, values, ttl, stored_at)


def key(n: int) -> str:
    return f"h:88.118.2/N{n}"


def kept(cache: MemoryCache, count: int) -> list[int]:
    """Which of keys 0..count-1 the tier still has (peeking refreshes them,
    so call this only once the evictions under test have happened)."""
    return [n for n in range(count) if cache.peek(key(n)) is not None]


def test_entry_size_counts_values_reply_body_name_and_overhead():
    e = entry("88.118.2/A", payload=100)
    # the values twice: once as such, once inside the ready-made reply body
    assert e.size == ENTRY_OVERHEAD_BYTES + 2 * len(e.values_json) + 3 * len("88.118.2/A")


def test_the_entry_bound_evicts_the_least_recently_used():
    cache = MemoryCache(max_entries=3)
    for n in range(3):
        cache.store(key(n), entry(), 60)
    assert cache.peek(key(0)) is not None  # 0 is now the most recently used
    cache.store(key(3), entry(), 60)
    assert len(cache) == 3 and cache.evictions == 1
    assert kept(cache, 4) == [0, 2, 3]


def test_the_byte_bound_evicts_until_the_new_entry_fits():
    one = entry(payload=1000).size
    cache = MemoryCache(max_bytes=3 * one)
    for n in range(3):
        cache.store(key(n), entry(payload=1000), 60)
    assert cache.bytes == 3 * one
    cache.store(key(3), entry(payload=2000), 60)  # needs the room of two
    assert cache.bytes == one + entry(payload=2000).size <= cache.max_bytes
    assert cache.evictions == 2
    assert kept(cache, 4) == [2, 3]


def test_replacing_an_entry_accounts_its_bytes_once():
    cache = MemoryCache()
    cache.store(key(0), entry(payload=1000), 60)
    cache.store(key(0), entry(payload=10), 60)
    assert len(cache) == 1 and cache.bytes == entry(payload=10).size
    assert cache.health()["bytes"] == cache.bytes and cache.health()["entries"] == 1


def test_an_entry_larger_than_the_tier_is_not_kept_and_drops_the_older_one():
    cache = MemoryCache(max_bytes=2000)
    cache.store(key(1), entry(payload=10), 60)
    cache.store(key(0), entry(payload=10), 60)
    cache.store(key(0), entry(payload=5000), 60)
    # the old, smaller answer for key 0 must not outlive its replacement
    assert cache.peek(key(0)) is None
    assert cache.peek(key(1)) is not None  # nothing else was evicted for it
    assert cache.bytes == entry(payload=10).size and cache.evictions == 0


def test_entries_are_dropped_when_their_keep_time_passes():
    clock = Clock()
    cache = MemoryCache(clock=clock)
    cache.store(key(0), entry(), 10)
    clock.now += 9.9
    assert cache.peek(key(0)) is not None
    clock.now += 0.1
    assert cache.peek(key(0)) is None and len(cache) == 0 and cache.bytes == 0
    cache.store(key(1), entry(), 0)  # no keep time: not stored
    assert cache.peek(key(1)) is None


async def test_delete_prefix_follows_segment_boundaries():
    cache = MemoryCache()
    inside = ["h:88.118/A", "h:88.118.2/B", "d:88.118", "d:88.118.2", "h:0.NA/88.118.2"]
    outside = ["h:88.1180/C", "d:88.1180", "h:88.11/D", "h:0.NA/88.1180", "d:88"]
    for k in inside + outside:
        cache.store(k, entry(), 60)
    assert await cache.delete_prefix("88.118") == len(inside)
    assert [k for k in inside if cache.peek(k) is not None] == []
    assert [k for k in outside if cache.peek(k) is not None] == outside
    assert cache.bytes == len(outside) * entry().size
    assert cache.clear() == len(outside) and cache.bytes == 0


def test_constructor_refuses_a_tier_without_room():
    with pytest.raises(ValueError):
        MemoryCache(max_entries=0)
    with pytest.raises(ValueError):
        MemoryCache(max_bytes=0)


class DictTier(MemoryCache):
    """A stand-in shared tier (the Redis tier is tested against a real server)."""

    name = "shared"


async def test_a_shared_hit_is_promoted_for_the_rest_of_its_keep_time():
    clock = Clock()
    local, shared = MemoryCache(clock=clock), DictTier(clock=clock)
    cache = LayeredCache(local, shared, stale_window=100, clock=clock)
    e = entry(ttl=60, stored_at=clock.now - 50)  # 10 s fresh, then 100 s stale
    await shared.put(key(0), e, 110)
    assert await cache.lookup(key(0)) == (e, "shared")
    assert await cache.lookup(key(0)) == (e, "memory")
    clock.now += 109.9
    assert local.peek(key(0)) is e
    clock.now += 0.1
    assert local.peek(key(0)) is None
    # a shared entry already past its stale window is not promoted
    await shared.put(key(1), entry(ttl=60, stored_at=clock.now - 500), 10)
    assert (await cache.lookup(key(1)))[1] == "shared" and local.peek(key(1)) is None
