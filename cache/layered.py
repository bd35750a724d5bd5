"""The in-process tier in front of an optional shared tier (Redis).

Reads try the in-process tier, then the shared one; a shared hit is copied
into the in-process tier for the rest of its keep time, so a hot entry
costs one Redis round trip per process, not one per request. Writes go to
both. A shared tier that is down simply misses (see :mod:`cache.base`).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

from cache.base import Cache
from cache.entry import CacheEntry
from cache.memory import MemoryCache


class LayeredCache(Cache):
    """``local`` (in-process) first, then ``shared``.

    Args:
        local: the in-process tier.
        shared: a tier many processes share, or None to run on ``local`` alone.
        stale_window: seconds an entry is kept past its TTL (for promoted
            entries' keep time).
    """

    name = "layered"

    def __init__(
        self, local: MemoryCache, shared: Cache | None, *, stale_window: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.local = local
        self.shared = shared
        self.stale_window = stale_window
        self._clock = clock

    async def get(self, key: str) -> CacheEntry | None:
        return (await self.lookup(key))[0]

    async def lookup(self, key: str) -> tuple[CacheEntry | None, str]:
        """The entry under ``key`` and the name of the tier that had it
        (``""`` on a miss)."""
        entry = self.local.peek(key)
        if entry is not None:
            return entry, self.local.name
        if self.shared is None:
            return None, ""
        entry = await self.shared.get(key)
        if entry is None:
            return None, ""
        self._promote(key, entry)
        return entry, self.shared.name

    def _promote(self, key: str, entry: CacheEntry) -> None:
        keep = entry.expires_at + self.stale_window - self._clock()
        if keep > 0:
            self.local.store(key, entry, keep)

    async def get_many(self, keys: Sequence[str]) -> list[CacheEntry | None]:
        found: list[CacheEntry | None] = [self.local.peek(key) for key in keys]
        missing = [i for i, entry in enumerate(found) if entry is None]
        if missing and self.shared is not None:
            shared = await self.shared.get_many([keys[i] for i in missing])
            for i, entry in zip(missing, shared):
                if entry is not None:
                    self._promote(keys[i], entry)
                    found[i] = entry
        return found

    async def put(self, key: str, entry: CacheEntry, keep_seconds: float) -> None:
        self.local.store(key, entry, keep_seconds)
        if self.shared is not None:
            await self.shared.put(key, entry, keep_seconds)

    async def delete(self, key: str) -> int:
        local = await self.local.delete(key)
        shared = 0 if self.shared is None else await self.shared.delete(key)
        return max(local, shared)

    async def delete_prefix(self, prefix: str) -> int:
        """Flush both tiers; the count is the larger of the two (an entry is
        usually in both)."""
        local = await self.local.delete_prefix(prefix)
        shared = 0 if self.shared is None else await self.shared.delete_prefix(prefix)
        return max(local, shared)

    @property
    def degraded(self) -> bool:
        """Whether the shared tier is configured but down."""
        return self.shared is not None and self.shared.health().get("state") != "up"

    def health(self) -> dict[str, Any]:
        tiers = {self.local.name: self.local.health()}
        if self.shared is not None:
            tiers[self.shared.name] = self.shared.health()
        return tiers

    async def close(self) -> None:
        if self.shared is not None:
            await self.shared.close()
