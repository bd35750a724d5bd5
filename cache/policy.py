"""How long things stay in the cache, and what happens when they expire.

Pure arithmetic over the values' own TTLs and the operator's caps, in the
manner of DNS resolvers (Unbound's ``cache-min-ttl``/``cache-max-ttl``/
``cache-max-negative-ttl``, RFC 8767's serve-stale, prefetch near expiry).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from idcore import limits

#: Shortest time an answer is kept fresh, whatever its values say: a record
#: with ``ttl: 0`` would otherwise send every scan upstream.
DEFAULT_MIN_TTL_SECONDS = 1

#: Longest time an answer is kept fresh: a record changed at its node is
#: seen within a day even when its values ask for a year.
DEFAULT_MAX_TTL_SECONDS = 86400

#: Longest time "handle not found" is kept: identifiers are registered and
#: scanned within minutes of each other on a production line, so a negative
#: answer must not outlive that by much.
DEFAULT_NEGATIVE_TTL_SECONDS = 30

#: Longest time a delegation (referral) is kept, whatever TTL the parent's
#: HS_SITE values carry: a moved child is corrected by falling back to the
#: parent, but a child the parent disabled still answers, so this bounds how
#: long a disable takes to reach resolvers. Asking the parent once an hour
#: per prefix costs nothing.
DEFAULT_MAX_DELEGATION_TTL_SECONDS = 3600

#: How long after expiry an entry may still be served when every upstream
#: server fails (RFC 8767 suggests one to three days; a product page from
#: an hour ago beats no page on a production line).
DEFAULT_STALE_WINDOW_SECONDS = 3600

#: Part of an entry's TTL, at its end, in which a hit also refreshes the
#: entry in the background, so popular entries never expire in use.
DEFAULT_PREFETCH_FRACTION = 0.1

#: First and longest wait before a handle served stale is tried upstream
#: again; doubled on each failure in between.
STALE_RETRY_INITIAL_SECONDS = 1.0
STALE_RETRY_MAX_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """TTL caps and expiry behaviour of a resolver's cache."""

    min_ttl: int = DEFAULT_MIN_TTL_SECONDS
    max_ttl: int = DEFAULT_MAX_TTL_SECONDS
    negative_ttl: int = DEFAULT_NEGATIVE_TTL_SECONDS
    max_delegation_ttl: int = DEFAULT_MAX_DELEGATION_TTL_SECONDS
    stale_window: int = DEFAULT_STALE_WINDOW_SECONDS
    prefetch_fraction: float = DEFAULT_PREFETCH_FRACTION

    def __post_init__(self) -> None:
        for name in ("min_ttl", "max_ttl", "negative_ttl", "max_delegation_ttl", "stale_window"):
            value = getattr(self, name)
            if type(value) is not int or not 0 <= value <= limits.MAX_TTL_SECONDS:
                raise ValueError(f"cache {name} {value!r} must be whole seconds in 0..{limits.MAX_TTL_SECONDS}")
        if self.min_ttl > self.max_ttl:
            raise ValueError(f"cache min_ttl {self.min_ttl} is above max_ttl {self.max_ttl}")
        if not 0 <= self.prefetch_fraction < 1:
            raise ValueError(f"cache prefetch_fraction {self.prefetch_fraction!r} must be in [0, 1)")

    def answer_ttl(self, value_ttls: Iterable[int]) -> int:
        """Freshness of an answer: the smallest TTL among its values, clamped
        to ``[min_ttl, max_ttl]`` (an answer without values gets ``min_ttl``)."""
        smallest = min(value_ttls, default=self.min_ttl)
        return max(self.min_ttl, min(self.max_ttl, smallest))

    def not_found_ttl(self) -> int:
        """Freshness of a "handle not found" answer."""
        return min(self.negative_ttl, self.max_ttl)

    def delegation_ttl(self, value_ttls: Iterable[int]) -> int:
        """Freshness of a delegation: its site values' smallest TTL, clamped
        to ``[min_ttl, max_delegation_ttl]``."""
        smallest = min(value_ttls, default=self.min_ttl)
        return max(self.min_ttl, min(self.max_delegation_ttl, smallest))

    def keep_seconds(self, ttl: int) -> int:
        """How long a tier keeps an entry of ``ttl``: fresh, then stale-servable."""
        return ttl + self.stale_window

    def wants_prefetch(self, ttl: int, remaining: float) -> bool:
        """Whether a hit with ``remaining`` fresh seconds should refresh the
        entry in the background."""
        return remaining < ttl * self.prefetch_fraction


def stale_retry_delay(failures: int) -> float:
    """Seconds to wait before asking upstream again after ``failures``
    consecutive failures of a handle being served stale."""
    return min(STALE_RETRY_MAX_SECONDS, STALE_RETRY_INITIAL_SECONDS * 2 ** max(0, failures - 1))
