"""The :class:`Cache` interface every tier implements.

A tier stores :class:`~cache.entry.CacheEntry` objects under string keys
(see :mod:`cache.entry` for the key forms) for a number of seconds given at
``put`` time: the entry's TTL plus the stale window. ``get`` returns an
entry for as long as it is kept, fresh or not; whether a stale entry may be
served is the resolver's decision.

A tier never raises for an outage of what it is built on: a shared tier
that cannot reach its server answers ``get`` with None and drops ``put``
(and says so in :meth:`Cache.health`), because a cache is an optimisation
and resolution must go on without it.
"""

from __future__ import annotations

import abc
from typing import Any, Sequence

from cache.entry import CacheEntry
from idcore.errors import UpstreamError


class CacheUnavailable(UpstreamError):
    """The shared cache cannot be reached, so an operation that must not
    silently do nothing (a flush) did not happen. ``details`` carries
    ``url`` (redacted) and ``error``."""

    # A shared tier being down is temporary and says nothing about other
    # nodes, so "try again later" rather than UpstreamError's 502.
    http_status = 503


class Cache(abc.ABC):
    """A key -> :class:`CacheEntry` store with expiry."""

    #: Name used in metrics and health ("memory", "redis", ...).
    name: str = "cache"

    @abc.abstractmethod
    async def get(self, key: str) -> CacheEntry | None:
        """The entry kept under ``key``, fresh or stale, or None."""

    async def get_many(self, keys: Sequence[str]) -> list[CacheEntry | None]:
        """Entries for several keys at once (one round trip where the tier can)."""
        return [await self.get(key) for key in keys]

    @abc.abstractmethod
    async def put(self, key: str, entry: CacheEntry, keep_seconds: float) -> None:
        """Keep ``entry`` under ``key`` for ``keep_seconds`` from now."""

    @abc.abstractmethod
    async def delete(self, key: str) -> int:
        """Forget ``key``; returns how many entries were dropped (0 or 1)."""

    @abc.abstractmethod
    async def delete_prefix(self, prefix: str) -> int:
        """Forget every answer of a handle under ``prefix`` or one of its
        sub-prefixes, and the delegations of them; returns how many."""

    def health(self) -> dict[str, Any]:
        """State for ``/healthz``: at least ``{"state": "up" | "down"}``."""
        return {"state": "up"}

    async def close(self) -> None:
        """Release connections; the tier is unusable afterwards."""


def under_prefix(key: str, prefix_upper: str) -> bool:
    """Whether cache ``key`` belongs to ``prefix_upper`` or a sub-prefix of it.

    ``h:88.118.2/X`` is under ``88.118.2`` and ``88.118``; ``d:88.118.2`` is
    under both too, and so is ``h:0.NA/88.118.2``; ``h:88.1180/X`` is under
    neither.
    """
    body = key[2:]
    if key.startswith("h:"):
        head, _, rest = body.partition("/")
        body = rest if head == "0.NA" else head  # a prefix record belongs to its prefix
    return body == prefix_upper or body.startswith(prefix_upper + ".")
