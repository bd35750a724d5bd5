"""TTL arithmetic of the cache policy and the entry format (pure)."""

from __future__ import annotations

import pytest

from cache.entry import SCHEMA_VERSION, CacheEntry, EntryKind
from cache.policy import STALE_RETRY_INITIAL_SECONDS, STALE_RETRY_MAX_SECONDS, CachePolicy, stale_retry_delay


def test_answer_ttl_is_the_smallest_value_ttl_within_the_caps():
    policy = CachePolicy(min_ttl=5, max_ttl=600)
    assert policy.answer_ttl([86400, 120, 3600]) == 120
    assert policy.answer_ttl([1, 86400]) == 5  # raised to the minimum
    assert policy.answer_ttl([7200]) == 600  # cut to the maximum
    assert policy.answer_ttl([]) == 5


def test_negative_and_delegation_caps_are_their_own():
    policy = CachePolicy(min_ttl=1, max_ttl=600, negative_ttl=10, max_delegation_ttl=300)
    assert policy.not_found_ttl() == 10
    assert policy.delegation_ttl([86400]) == 300
    assert policy.delegation_ttl([30, 86400]) == 30


def test_keep_time_includes_the_stale_window_and_prefetch_is_near_the_end():
    policy = CachePolicy(stale_window=100, prefetch_fraction=0.1)
    assert policy.keep_seconds(60) == 160
    assert policy.wants_prefetch(100, 9.5)
    assert not policy.wants_prefetch(100, 10.5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"min_ttl": 10, "max_ttl": 5}, "above max_ttl"),
        ({"negative_ttl": -1}, "negative_ttl"),
        ({"prefetch_fraction": 1.0}, "prefetch_fraction"),
        ({"stale_window": 1.5}, "stale_window"),
    ],
)
def test_bad_policies_are_refused_with_the_setting_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CachePolicy(**kwargs)


def test_stale_retry_backoff_doubles_to_a_cap():
    delays = [stale_retry_delay(n) for n in range(1, 10)]
    assert delays[0] == STALE_RETRY_INITIAL_SECONDS
    assert delays[1] == 2 * STALE_RETRY_INITIAL_SECONDS
    assert delays == sorted(delays) and delays[-1] == STALE_RETRY_MAX_SECONDS


def test_entry_round_trip_and_freshness():
    entry = CacheEntry(EntryKind.ANSWER, "88.118.2/PRD-1", b'[{"index":1}]', 60, 1000.0)
    again = CacheEntry.from_bytes(entry.to_bytes())
    assert (again.kind, again.name, again.values_json, again.ttl, again.stored_at) == (
        EntryKind.ANSWER, "88.118.2/PRD-1", b'[{"index":1}]', 60, 1000.0
    )
    assert entry.is_fresh(1059.9) and not entry.is_fresh(1060.0)
    assert entry.remaining(1070.0) == -10.0


def test_entry_of_another_schema_or_garbage_is_refused():
    raw = CacheEntry(EntryKind.NOT_FOUND, "88/X", b"[]", 5, 1.0).to_bytes()
    with pytest.raises(ValueError, match="schema"):
        CacheEntry.from_bytes(raw.replace(f'"v":{SCHEMA_VERSION}'.encode(), f'"v":{SCHEMA_VERSION + 1}'.encode()))
    with pytest.raises(ValueError):
        CacheEntry.from_bytes(b"not json")
