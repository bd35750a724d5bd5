"""An in-memory :class:`~registry.store.Store` for unit tests and tools.

It keeps everything in dictionaries and loses it on exit, so it is never
the store of a running node; it behaves like the SQLite store otherwise
(same transaction rules, same journal).
"""

from __future__ import annotations

import bisect
from typing import Callable, TypeVar

from registry.records import StoredRecord
from registry.store import JournalEntry, Store, Txn, prefix_key_range

T = TypeVar("T")


class MemoryStore(Store):
    """Records, homed prefixes and journal held in process memory."""

    def __init__(self) -> None:
        self._records: dict[str, StoredRecord] = {}
        self._sorted_keys: list[str] = []
        self._homed: dict[str, str] = {}
        self._journal: list[JournalEntry] = []

    async def close(self) -> None:
        pass

    async def get(self, key: str) -> StoredRecord | None:
        return self._records.get(key)

    async def count_handles(self, prefix: str) -> int:
        low, high = prefix_key_range(prefix)
        return bisect.bisect_left(self._sorted_keys, high) - bisect.bisect_left(self._sorted_keys, low)

    async def count_handles_at(self, prefix: str) -> tuple[int, int]:
        # no await between the two: no transaction can come in between
        low, high = prefix_key_range(prefix)
        count = bisect.bisect_left(self._sorted_keys, high) - bisect.bisect_left(self._sorted_keys, low)
        return count, len(self._journal)

    async def list_handles(
        self, prefix: str, *, after: str = "", offset: int = 0, limit: int
    ) -> list[tuple[str, str]]:
        low, high = prefix_key_range(prefix)
        if after >= low:
            start = bisect.bisect_right(self._sorted_keys, after)
        else:
            start = bisect.bisect_left(self._sorted_keys, low)
        start += offset
        out = []
        for key in self._sorted_keys[start : start + limit]:
            if key >= high:
                break
            out.append((key, self._records[key].handle))
        return out

    async def homed_prefixes(self) -> list[str]:
        return list(self._homed.values())

    async def journal(self, *, after: int = 0, limit: int = 1000) -> list[JournalEntry]:
        # Sequence numbers start at 1 and have no gaps here, so seq n is at n-1.
        return self._journal[after : after + limit]

    async def last_seq(self) -> int:
        return len(self._journal)

    async def scan_records(self, *, after: str = "", limit: int) -> list[tuple[str, str, bytes]]:
        start = bisect.bisect_right(self._sorted_keys, after)
        return [(k, self._records[k].handle, self._records[k].blob) for k in self._sorted_keys[start : start + limit]]

    async def transact(self, fn: Callable[[Txn], T]) -> T:
        txn = Txn(self._load)
        result = fn(txn)
        self._apply(txn)
        return result

    def _load(self, keys: list[str]) -> dict[str, StoredRecord]:
        return {k: self._records[k] for k in keys if k in self._records}

    def _apply(self, txn: Txn) -> None:
        for key, record in txn.writes.items():
            if record is None:
                if self._records.pop(key, None) is not None:
                    del self._sorted_keys[bisect.bisect_left(self._sorted_keys, key)]
            else:
                if key not in self._records:
                    bisect.insort(self._sorted_keys, key)
                self._records[key] = record
        for prefix, homed in txn.homing:
            if homed:
                self._homed[prefix.upper()] = prefix
            else:
                self._homed.pop(prefix.upper(), None)
        for change in txn.changes:
            self._journal.append(JournalEntry(len(self._journal) + 1, txn.now_ms, *change))
