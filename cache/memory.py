"""The in-process tier: a bounded LRU of cache entries.

Hot entries are answered from here without leaving the event loop, which is
what lets the resolver answer at close to the speed of a bare HTTP handler.
The tier is bounded twice, by entry count and by bytes (an entry's
:attr:`~cache.entry.CacheEntry.size`), and evicts the least recently used
entry first; each entry is also dropped once its keep time (TTL plus stale
window) has passed.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any, Callable

from cache.base import Cache, under_prefix
from cache.entry import CacheEntry

#: Default entry bound: about 100 MB at typical product-record sizes.
DEFAULT_MAX_ENTRIES = 200_000

#: Default byte bound of the entries' :attr:`CacheEntry.size` sum.
DEFAULT_MAX_BYTES = 256 * 1024 * 1024


class MemoryCache(Cache):
    """LRU of :class:`CacheEntry` bounded by count and bytes.

    Args:
        max_entries: most entries kept.
        max_bytes: most bytes kept (sum of entry sizes).
        clock: wall-clock seconds (injectable for tests).
    """

    name = "memory"

    def __init__(
        self,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("the in-process cache needs room for at least one entry")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        # key -> (entry, drop_at)
        self._items: OrderedDict[str, tuple[CacheEntry, float]] = OrderedDict()
        self.bytes = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._items)

    def peek(self, key: str) -> CacheEntry | None:
        """:meth:`get` without awaiting: the resolver's hot path."""
        item = self._items.get(key)
        if item is None:
            return None
        if item[1] <= self._clock():
            self._drop(key)
            return None
        self._items.move_to_end(key)
        return item[0]

    async def get(self, key: str) -> CacheEntry | None:
        return self.peek(key)

    def store(self, key: str, entry: CacheEntry, keep_seconds: float) -> None:
        """:meth:`put` without awaiting."""
        if keep_seconds <= 0:
            self._drop(key)
            return
        size = entry.size
        if size > self.max_bytes:
            # Larger than the whole tier: not worth evicting everything for.
            # An older entry under the key goes, or it would hide this one.
            self._drop(key)
            return
        old = self._items.pop(key, None)
        if old is not None:
            self.bytes -= old[0].size
        self._items[key] = (entry, self._clock() + keep_seconds)
        self.bytes += size
        while len(self._items) > self.max_entries or self.bytes > self.max_bytes:
            _, (evicted, _) = self._items.popitem(last=False)
            self.bytes -= evicted.size
            self.evictions += 1

    async def put(self, key: str, entry: CacheEntry, keep_seconds: float) -> None:
        self.store(key, entry, keep_seconds)

    def _drop(self, key: str) -> int:
        item = self._items.pop(key, None)
        if item is None:
            return 0
        self.bytes -= item[0].size
        return 1

    async def delete(self, key: str) -> int:
        return self._drop(key)

    async def delete_prefix(self, prefix: str) -> int:
        upper = prefix.upper()
        doomed = [key for key in self._items if under_prefix(key, upper)]
        for key in doomed:
            self._drop(key)
        return len(doomed)

    def clear(self) -> int:
        """Forget everything; returns how many entries were dropped."""
        count = len(self._items)
        self._items.clear()
        self.bytes = 0
        return count

    def health(self) -> dict[str, Any]:
        return {
            "state": "up",
            "entries": len(self._items),
            "bytes": self.bytes,
            "max_entries": self.max_entries,
            "max_bytes": self.max_bytes,
        }
