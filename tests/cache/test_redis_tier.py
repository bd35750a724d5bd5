"""The Redis tier against a real redis-server, including one killed and one
frozen mid-run."""

from __future__ import annotations

import asyncio
import logging
import time

import orjson
import pytest
import redis.asyncio

from cache.entry import SCHEMA_VERSION, CacheEntry, EntryKind, answer_key, delegation_key
from cache.redis_tier import (
    KEY_NAMESPACE,
    PROBE_BACKOFF_BASE_SECONDS,
    CacheUnavailable,
    RedisCache,
    prefix_patterns,
    redact_url,
)
from idcore.errors import UpstreamError

#: Generous bound on one call to a dead Redis: the tier's timeout is 0.1 s,
#: this only has to catch a call that waits for a retry loop or the OS.
QUICK_SECONDS = 2.0

#: How long a restarted Redis may take to be used again: a few probe
#: backoffs (0.25 s, 0.5 s, 1 s ...) plus a slow CI machine.
RECOVERY_DEADLINE_SECONDS = 15.0

LOGGER = "cache.redis_tier"


def entry(kind: EntryKind = EntryKind.ANSWER, name: str = "88.118.2/A1", ttl: int = 60) -> CacheEntry:
    values = (
        b"[]" if kind is EntryKind.NOT_FOUND else b'[{"index":1,"type":"URL","data":{"format":"string","value":"x"}}]'
    )
    return CacheEntry(kind, name, values, ttl, time.time())


def fields(e: CacheEntry) -> tuple:
    return (e.kind, e.name, e.values_json, e.ttl, e.stored_at)


def same(a: CacheEntry | None, b: CacheEntry) -> bool:
    return a is not None and fields(a) == fields(b)


@pytest.fixture
async def tier(redis_url):
    async with RedisCache(redis_url) as cache:
        yield cache


@pytest.fixture
async def raw(redis_url):
    """A plain client, to look at what the tier left in Redis."""
    client = redis.asyncio.from_url(redis_url)
    yield client
    await client.aclose()


def records(caplog, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == level]


async def wait_until_up(cache: RedisCache, key: str) -> None:
    """Keep using the tier, as requests would, until it has reconnected."""
    deadline = time.monotonic() + RECOVERY_DEADLINE_SECONDS
    while cache.health()["state"] != "up":
        assert time.monotonic() < deadline, f"tier did not reconnect: {cache.health()}"
        await cache.get(key)
        await asyncio.sleep(0.05)


# --- storage ------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(EntryKind))
async def test_round_trip_of_each_kind(tier, kind):
    key = delegation_key("88.118.2") if kind is EntryKind.DELEGATION else answer_key("88.118.2/A1")
    stored = entry(kind)
    await tier.put(key, stored, 90)
    assert same(await tier.get(key), stored)
    assert tier.health() == {"state": "up", "url": tier.health()["url"]}


async def test_put_sets_the_redis_expiry(tier, raw):
    await tier.put("h:88.118.2/A1", entry(), 3660)
    pttl = await raw.pttl(KEY_NAMESPACE + "h:88.118.2/A1")
    assert 3650_000 < pttl <= 3660_000


async def test_put_keeps_nothing_for_no_time(tier, raw):
    await tier.put("h:88.118.2/A1", entry(), 0)
    await tier.put("h:88.118.2/A2", entry(), -5)
    assert await raw.dbsize() == 0


async def test_get_many_is_one_answer_per_key(tier):
    one, two = entry(name="88.118.2/1"), entry(name="88.118.2/2")
    await tier.put("h:88.118.2/1", one, 60)
    await tier.put("h:88.118.2/2", two, 60)
    got = await tier.get_many(["h:88.118.2/2", "h:88.118.2/missing", "h:88.118.2/1"])
    assert same(got[0], two) and got[1] is None and same(got[2], one)
    assert await tier.get_many([]) == []


async def test_unparseable_payload_is_a_miss_and_is_removed(tier, raw):
    await raw.set(KEY_NAMESPACE + "h:88.118.2/bad", b"\x00not json")
    await raw.set(KEY_NAMESPACE + "h:88.118.2/bad2", b'{"v": 1}')
    await tier.put("h:88.118.2/good", good := entry(), 60)
    assert await tier.get("h:88.118.2/bad") is None
    got = await tier.get_many(["h:88.118.2/bad2", "h:88.118.2/good"])
    assert got[0] is None and same(got[1], good)
    assert await raw.keys() == [(KEY_NAMESPACE + "h:88.118.2/good").encode()]
    assert tier.health()["state"] == "up"


async def test_other_schema_version_is_a_miss(tier, raw):
    payload = orjson.loads(entry().to_bytes())
    payload["v"] = SCHEMA_VERSION + 1
    await raw.set(KEY_NAMESPACE + "h:88.118.2/A1", orjson.dumps(payload))
    assert await tier.get("h:88.118.2/A1") is None
    # A process of the next version writes under its own namespace.
    await raw.set(f"idnode:v{SCHEMA_VERSION + 1}:h:88.118.2/A2", entry().to_bytes())
    assert await tier.get("h:88.118.2/A2") is None


async def test_delete_says_whether_it_removed(tier):
    await tier.put("h:88.118.2/A1", entry(), 60)
    assert await tier.delete("h:88.118.2/A1") == 1
    assert await tier.delete("h:88.118.2/A1") == 0
    assert await tier.get("h:88.118.2/A1") is None


# --- flushing a prefix -----------------------------------------------------------

UNDER_88_118 = [
    "h:88.118/A",
    "h:88.118.2/B",
    "h:88.118.2.7/C",
    "d:88.118",
    "d:88.118.2",
    "h:0.NA/88.118",
    "h:0.NA/88.118.2",
]
NOT_UNDER_88_118 = [
    "h:88.1180/A",
    "h:88.11/88.118",
    "d:88.1180",
    "d:88.11",
    "h:0.NA/88.1180",
    "h:0.NA/88.11",
    "h:88.119/88.118.2",
]


async def test_delete_prefix_removes_exactly_the_prefix_and_its_sub_prefixes(tier, raw):
    for key in UNDER_88_118 + NOT_UNDER_88_118:
        await tier.put(key, entry(), 60)
    foreign = [f"idnode:v{SCHEMA_VERSION + 1}:h:88.118/A", "other:h:88.118/A"]
    for key in foreign:
        await raw.set(key, b"x")

    assert await tier.delete_prefix("88.118") == len(UNDER_88_118)

    left = {key.decode() for key in await raw.keys()}
    assert left == {KEY_NAMESPACE + key for key in NOT_UNDER_88_118} | set(foreign)
    assert await tier.delete_prefix("88.118") == 0


async def test_delete_prefix_ignores_case_and_treats_glob_characters_literally(tier, raw):
    await tier.put("h:ABC.D/x", entry(), 60)
    await tier.put("d:ABC", entry(EntryKind.DELEGATION), 60)
    await tier.put("h:88.118/A", entry(), 60)
    for pattern_like in ("88.11?", "88.*", "88.11[0-9]", "*", "88\\.118"):
        assert await tier.delete_prefix(pattern_like) == 0
    assert await tier.delete_prefix("abc") == 2
    assert await raw.keys() == [(KEY_NAMESPACE + "h:88.118/A").encode()]


async def test_delete_prefix_works_in_batches(tier, monkeypatch):
    monkeypatch.setattr("cache.redis_tier.SCAN_BATCH", 7)
    for n in range(40):
        await tier.put(f"h:88.118/{n}", entry(), 60)
    assert await tier.delete_prefix("88.118") == 40


def test_prefix_patterns_escape_redis_glob_characters():
    patterns = prefix_patterns("a*b?[c]\\")
    assert patterns[0] == KEY_NAMESPACE + "h:A\\*B\\?\\[C\\]\\\\/*"
    assert patterns[3] == KEY_NAMESPACE + "d:A\\*B\\?\\[C\\]\\\\.*"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("redis://:hunter2@localhost:6379/0", "redis://:***@localhost:6379/0"),
        ("rediss://idnode:hunter2@cache.example:6380/1", "rediss://idnode:***@cache.example:6380/1"),
        ("redis://localhost/0?password=hunter2&db=1", "redis://localhost/0?password=***&db=1"),
        ("unix://:hunter2@/run/redis.sock?db=2", "unix://:***@/run/redis.sock?db=2"),
    ],
)
def test_redact_url_hides_passwords(url, shown):
    assert redact_url(url) == shown


# --- outages -----------------------------------------------------------------------


async def test_killed_redis_turns_the_tier_into_misses_with_one_warning(tier, redis_server, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    await tier.put("h:88.118.2/A1", entry(), 60)
    assert await tier.get("h:88.118.2/A1") is not None
    redis_server.stop()

    # Requests in flight when Redis dies all fail; they are one outage.
    started = time.monotonic()
    assert await asyncio.gather(*(tier.get("h:88.118.2/A1") for _ in range(5))) == [None] * 5
    assert time.monotonic() - started < QUICK_SECONDS

    # While down nothing raises and nothing more is logged.
    assert await tier.get_many(["h:88.118.2/A1", "d:88.118.2"]) == [None, None]
    await tier.put("h:88.118.2/A2", entry(), 60)
    assert await tier.delete("h:88.118.2/A1") == 0
    assert await tier.get("h:88.118.2/A1") is None

    [warning] = records(caplog, logging.WARNING)
    assert redis_server.url in warning.getMessage() and "ConnectionError" in warning.getMessage()
    health = tier.health()
    assert health["state"] == "down" and health["url"] == redis_server.url
    assert "ConnectionError" in health["error"] and time.time() - QUICK_SECONDS < health["since"] <= time.time()

    with pytest.raises(CacheUnavailable) as raised:
        await tier.delete_prefix("88.118")
    assert isinstance(raised.value, UpstreamError) and raised.value.status == 503
    assert raised.value.details["url"] == redis_server.url


async def test_restarted_redis_is_used_again_after_the_backoff(tier, redis_server, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    redis_server.stop()
    assert await tier.get("h:88.118.2/A1") is None
    assert tier.health()["state"] == "down"
    redis_server.start()  # same port, empty

    await wait_until_up(tier, "h:88.118.2/A1")

    [back] = records(caplog, logging.INFO)
    assert back.getMessage() == f"Redis at {redis_server.url} is back"
    assert len(records(caplog, logging.WARNING)) == 1
    await tier.put("h:88.118.2/A1", stored := entry(), 60)
    assert same(await tier.get("h:88.118.2/A1"), stored)
    assert tier.health() == {"state": "up", "url": redis_server.url}


async def test_frozen_redis_costs_one_timeout_and_one_prober(redis_url, redis_server, raw, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    # A timeout long enough that "still waiting" is easy to tell from "done".
    async with RedisCache(redis_url, timeout=1.0) as cache:
        await cache.put("h:88.118.2/A1", stored := entry(), 60)
        redis_server.pause()

        started = time.monotonic()
        assert await cache.get("h:88.118.2/A1") is None
        assert time.monotonic() - started < QUICK_SECONDS
        assert "Timeout" in cache.health()["error"]

        await asyncio.sleep(PROBE_BACKOFF_BASE_SECONDS + 0.1)
        probe = asyncio.create_task(cache.get("h:88.118.2/A1"))
        await asyncio.sleep(0.1)  # the probe now waits on the frozen server
        assert not probe.done()
        # Everyone else gets a miss at once instead of queueing behind it.
        assert await cache.get("h:88.118.2/A1") is None
        await cache.put("h:88.118.2/dropped", entry(), 60)
        assert not probe.done()
        assert await probe is None
        assert cache.health()["state"] == "down"

        redis_server.resume()
        await wait_until_up(cache, "h:88.118.2/A1")
        assert same(await cache.get("h:88.118.2/A1"), stored)
        assert await raw.exists(KEY_NAMESPACE + "h:88.118.2/dropped") == 0
        assert len(records(caplog, logging.WARNING)) == 1
