"""The storage seam: the :class:`Store` interface and its write transaction.

A store keeps three things: handle records, the prefixes this node homes,
and the ordered change journal. Reads are small async calls. Every write
goes through :meth:`Store.transact`, which runs a plain function against a
:class:`Txn` and returns only once the changes and their journal entries
are committed and durable: nothing acknowledged is only in memory.

The write function is synchronous and sees a consistent view: the store
runs it where no other write interleaves (the SQLite store on its writer
thread, the memory store inline). If it raises, none of its writes happen.
"""

from __future__ import annotations

import abc
import time
from typing import Any, AsyncIterator, Callable, Iterable, NamedTuple, TypeVar

from registry.records import StoredRecord

T = TypeVar("T")


class Op:
    """Operations recorded in the change journal."""

    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    HOME = "home"
    UNHOME = "unhome"


class JournalEntry(NamedTuple):
    """One committed change: sequence number, time (ms since the epoch),
    operation, the handle (or prefix) concerned, and who made it."""

    seq: int
    at_ms: int
    op: str
    handle: str
    actor: str | None


class PendingChange(NamedTuple):
    """A journal entry not yet numbered (the store numbers it on commit)."""

    op: str
    handle: str
    actor: str | None


def prefix_key_range(prefix: str) -> tuple[str, str]:
    """Lowest and first-excluded storage key of handles under ``prefix``.

    Keys are ``PREFIX/suffix`` with the prefix upper-cased; ``0`` is the
    character after ``/``, so the range holds exactly that prefix's handles
    and none of a longer prefix (``88.118.2`` excludes ``88.118.20/...``).
    """
    upper = prefix.upper()
    return upper + "/", upper + "0"


class Txn:
    """A write transaction: a buffer of changes over committed state.

    Reads see this transaction's own writes first, then committed data.
    Nothing reaches storage until the store flushes the buffer on commit.

    Attributes:
        now: the transaction's clock, whole seconds since the epoch, used
            for value timestamps so one commit carries one time.
        now_ms: the same instant in milliseconds, for journal entries.
    """

    def __init__(self, load: Callable[[list[str]], dict[str, StoredRecord]], now_ms: int | None = None) -> None:
        self._load = load
        self._known: dict[str, StoredRecord | None] = {}
        self.writes: dict[str, StoredRecord | None] = {}
        self.changes: list[PendingChange] = []
        self.homing: list[tuple[str, bool]] = []
        self.now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        self.now = self.now_ms // 1000
        #: Scratch space for callers' per-transaction memos (what a batch
        #: worked out once for its first line and can reuse for the rest).
        self.memo: dict[Any, Any] = {}

    def get(self, key: str) -> StoredRecord | None:
        """The record under ``key`` as this transaction sees it, or None."""
        if key in self.writes:
            return self.writes[key]
        if key not in self._known:
            self._known[key] = self._load([key]).get(key)
        return self._known[key]

    def prefetch(self, keys: Iterable[str]) -> None:
        """Load many keys at once so later :meth:`get` calls cost no I/O."""
        missing = [k for k in keys if k not in self.writes and k not in self._known]
        if missing:
            found = self._load(missing)
            for key in missing:
                self._known[key] = found.get(key)

    def put(self, key: str, record: StoredRecord, op: str, actor: str | None) -> None:
        """Create or replace the record under ``key``; journal it as ``op``."""
        self.writes[key] = record
        self.changes.append(PendingChange(op, record.handle, actor))

    def delete(self, key: str, handle: str, actor: str | None) -> None:
        """Delete the record under ``key``; journal the deletion."""
        self.writes[key] = None
        self.changes.append(PendingChange(Op.DELETE, handle, actor))

    def set_homed(self, prefix: str, homed: bool, actor: str | None) -> None:
        """Home (or unhome) ``prefix`` on this node; journal it."""
        self.homing.append((prefix, homed))
        self.changes.append(PendingChange(Op.HOME if homed else Op.UNHOME, prefix, actor))


class Store(abc.ABC):
    """Where a node keeps its records, homed prefixes and change journal.

    Use as an async context manager; :meth:`open` is idempotent.
    """

    async def __aenter__(self) -> Store:
        await self.open()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def open(self) -> None:
        """Prepare the store for use (create schema, start workers)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish pending writes and release resources."""

    @abc.abstractmethod
    async def get(self, key: str) -> StoredRecord | None:
        """The committed record under ``key``, or None."""

    @abc.abstractmethod
    async def count_handles(self, prefix: str) -> int:
        """How many handles lie directly under ``prefix``."""

    @abc.abstractmethod
    async def count_handles_at(self, prefix: str) -> tuple[int, int]:
        """:meth:`count_handles` and :meth:`last_seq` read at one moment:
        the count is of the state the journal reached at that sequence
        number (no commit falls between the two)."""

    @abc.abstractmethod
    async def list_handles(
        self, prefix: str, *, after: str = "", offset: int = 0, limit: int
    ) -> list[tuple[str, str]]:
        """Up to ``limit`` ``(key, handle)`` pairs under ``prefix`` in key
        order: those after key ``after`` (keyset paging, for scans), less
        the first ``offset`` of them (page numbers, for the REST API)."""

    async def iter_handles(self, prefix: str, *, batch: int = 1000) -> AsyncIterator[list[str]]:
        """Every handle under ``prefix`` in key order, ``batch`` at a time."""
        after = ""
        while True:
            rows = await self.list_handles(prefix, after=after, limit=batch)
            if not rows:
                return
            yield [handle for _, handle in rows]
            after = rows[-1][0]

    @abc.abstractmethod
    async def homed_prefixes(self) -> list[str]:
        """The prefixes this node homes, as first written."""

    @abc.abstractmethod
    async def journal(self, *, after: int = 0, limit: int = 1000) -> list[JournalEntry]:
        """Journal entries with sequence numbers above ``after``, in order."""

    @abc.abstractmethod
    async def last_seq(self) -> int:
        """The highest journal sequence number, 0 if nothing was journaled."""

    @abc.abstractmethod
    async def scan_records(self, *, after: str = "", limit: int) -> list[tuple[str, str, bytes]]:
        """Up to ``limit`` ``(key, handle, blob)`` of every prefix, in key
        order, after key ``after``: one pass over all records (backups)."""

    @abc.abstractmethod
    async def transact(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn`` in a write transaction and commit it durably.

        Returns ``fn``'s result once its changes are committed and durable.
        If ``fn`` raises, nothing it wrote is kept and the exception
        propagates.

        Raises:
            StorageError: the commit failed; nothing was kept.
        """
