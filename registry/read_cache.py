"""A bounded cache of committed records in front of a store's reads.

Hot identifiers are resolved far more often than they change; keeping
their stored form in memory saves a B-tree descent per lookup. The cache
must never serve a record older than one already acknowledged, so it is
kept coherent with the single writer by a generation counter used like a
seqlock:

- the writer makes the generation odd before it commits and even again
  after it has replaced (or dropped) every cached key it changed;
- a reader that missed notes the generation, reads the database, and
  caches what it read only if the generation was even and is unchanged:
  otherwise a commit may have overtaken its read.

Records are replaced in place on commit only when already cached, so a
large batch does not flush the hot set out.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Iterable

from registry.records import StoredRecord

#: Default bound on cached records (found or known absent).
DEFAULT_MAX_ENTRIES = 200_000

#: Default bound on the bytes of cached record bodies.
DEFAULT_MAX_BYTES = 256 * 1024 * 1024

#: Bytes charged per entry on top of its bodies (key, objects, dict slot).
ENTRY_OVERHEAD_BYTES = 200

#: A cached record soon also holds its REST JSON (public and full), about
#: three times its stored form each; charge for that up front.
ENCODED_BYTES_PER_STORED_BYTE = 7

#: Returned by :meth:`RecordCache.lookup` when the key is not cached.
MISS = object()


def _cost(key: str, record: StoredRecord | None) -> int:
    if record is None:
        return ENTRY_OVERHEAD_BYTES + len(key)
    return ENTRY_OVERHEAD_BYTES + len(key) + len(record.handle) + ENCODED_BYTES_PER_STORED_BYTE * len(record.blob)


class RecordCache:
    """LRU of ``key -> StoredRecord | None`` bounded by entries and bytes."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.generation = 0
        self._entries: OrderedDict[str, StoredRecord | None] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def lookup(self, key: str) -> StoredRecord | None | object:
        """The cached record (None: known absent), or :data:`MISS`."""
        # No lock: each OrderedDict call is atomic under the GIL, and the
        # only race, an eviction between the two calls, is harmless.
        record = self._entries.get(key, MISS)
        if record is not MISS:
            try:
                self._entries.move_to_end(key)
            except KeyError:
                pass
        return record

    def offer(self, key: str, record: StoredRecord | None, generation: int) -> None:
        """Cache what a reader read at ``generation``, unless a commit began
        or ended since (then the read may be stale)."""
        if generation & 1 or generation != self.generation or self.max_entries == 0:
            return
        with self._lock:
            if generation != self.generation:
                return
            self._store(key, record)

    def begin_commit(self) -> None:
        """Writer: a commit is about to change the database."""
        self.generation += 1

    def end_commit(self, changes: Iterable[tuple[str, StoredRecord | None]]) -> None:
        """Writer: the commit is done (or rolled back, with no changes);
        refresh cached keys it changed."""
        with self._lock:
            for key, record in changes:
                if key in self._entries:
                    self._store(key, record)
            self.generation += 1

    def _store(self, key: str, record: StoredRecord | None) -> None:
        old = self._entries.pop(key, MISS)
        if old is not MISS:
            self._bytes -= _cost(key, old)  # type: ignore[arg-type]
        self._entries[key] = record
        self._bytes += _cost(key, record)
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            evicted_key, evicted = self._entries.popitem(last=False)
            self._bytes -= _cost(evicted_key, evicted)
