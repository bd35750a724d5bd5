"""What a parent node keeps of its children's filings (备案): identifier
master data and daily statistics, in ``filings.sqlite3`` in its data folder.

Master data is kept one row per (child prefix, journal sequence number),
inserted with ``INSERT OR IGNORE``: a child delivers at least once, so a
replayed batch changes nothing. Per child the store also keeps how far the
child's filings reach (``filed_through``: every journal entry up to it was
delivered; entries that are not identifier master data, such as homing a
prefix, are covered but not stored), the child's own last sequence number
as it reported it, and when it last filed; the difference is the lag.

A daily statistics report is kept per (child, day); a later report of the
same day (a report filed on demand before the day ended) replaces it.

Every write is one transaction committed with ``synchronous=FULL`` before
the parent acknowledges it. SQLite runs on a worker thread
(``asyncio.to_thread``), one call at a time.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple, TypeVar

import orjson

from idcore.errors import MalformedRequest, StorageError
from idcore.handle import check_prefix

T = TypeVar("T")

#: The parent's filing database in its data folder.
FILINGS_NAME = "filings.sqlite3"

#: Most master-data entries one filing carries: a batch is parsed and kept
#: in memory whole, and must fit the node's request body limit (1 MiB) at
#: a few hundred bytes an entry.
MAX_FILING_ENTRIES = 2000

#: Most rows one query answers (and the default).
MAX_QUERY_ROWS = 5000

#: Operations that are identifier master data.
MASTER_DATA_OPS = frozenset({"create", "update", "delete"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS filed_entries (
    child TEXT NOT NULL,        -- the child prefix, upper-cased
    seq INTEGER NOT NULL,       -- the child's journal sequence number
    at_ms INTEGER NOT NULL,     -- when the child committed the change
    op TEXT NOT NULL,           -- create | update | delete
    handle TEXT NOT NULL,
    types TEXT,                 -- JSON list of the record's value types; NULL for a delete
    template TEXT,              -- the TEMPLATE value, if the record has one
    filed_ms INTEGER NOT NULL,  -- when the parent stored it
    PRIMARY KEY (child, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS filed_by_handle ON filed_entries (child, handle);
CREATE TABLE IF NOT EXISTS children (
    child TEXT PRIMARY KEY,
    prefix TEXT NOT NULL,       -- as the child wrote it
    filed_through INTEGER NOT NULL DEFAULT 0,
    child_last INTEGER NOT NULL DEFAULT 0,
    last_filing_ms INTEGER
);
CREATE TABLE IF NOT EXISTS daily_statistics (
    child TEXT NOT NULL,
    day TEXT NOT NULL,
    report TEXT NOT NULL,
    filed_ms INTEGER NOT NULL,
    PRIMARY KEY (child, day)
);
"""


class FiledEntry(NamedTuple):
    """One identifier change a child filed."""

    seq: int
    at_ms: int
    op: str
    handle: str
    types: list[str] | None
    template: str | None

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "at_ms": self.at_ms, "op": self.op, "handle": self.handle,
                "types": self.types, "template": self.template}

    @classmethod
    def from_json(cls, obj: Any, child: str) -> FiledEntry:
        """Parse one entry of a filing from ``child``.

        Raises:
            MalformedRequest: not an entry's shape, or a handle of another prefix.
        """
        try:
            seq, at_ms, op, handle = obj["seq"], obj["at_ms"], obj["op"], obj["handle"]
            types, template = obj.get("types"), obj.get("template")
        except (KeyError, TypeError, AttributeError):
            raise MalformedRequest("a filed entry needs seq, at_ms, op and handle") from None
        if type(seq) is not int or seq < 1 or type(at_ms) is not int or op not in MASTER_DATA_OPS:
            raise MalformedRequest(f"filed entry {obj!r} is malformed: seq >= 1, at_ms integers, op create|update|delete")
        if not isinstance(handle, str) or not handle.upper().startswith(child.upper() + "/"):
            raise MalformedRequest(f"filed handle {handle!r} is not under the child's prefix {child}", handle=str(handle))
        if types is not None and not (isinstance(types, list) and all(isinstance(t, str) for t in types)):
            raise MalformedRequest("a filed entry's types must be a list of type names")
        if template is not None and not isinstance(template, str):
            raise MalformedRequest("a filed entry's template must be text")
        return cls(seq, at_ms, op, handle, types, template)


class MasterDataFiling(NamedTuple):
    """A batch of master data: entries, the child's journal position the
    batch reaches (``through``) and the child's last sequence number."""

    child: str
    through: int
    last: int
    entries: list[FiledEntry]


class StatisticsFiling(NamedTuple):
    """A child's daily statistics report (``report`` as filed)."""

    child: str
    day: str
    report: dict[str, Any]


def parse_filing(obj: Any) -> MasterDataFiling | StatisticsFiling:
    """Parse a ``POST /api/filings`` body.

    Raises:
        MalformedRequest: not a filing's shape.
        InvalidHandle: a malformed child prefix.
    """
    if not isinstance(obj, dict) or not isinstance(obj.get("child"), str):
        raise MalformedRequest("a filing is a JSON object naming its child prefix")
    child = check_prefix(obj["child"])
    kind = obj.get("kind")
    if kind == "statistics":
        day = obj.get("day")
        if not isinstance(day, str) or len(day) != 10:
            raise MalformedRequest("a statistics filing needs its day, YYYY-MM-DD")
        return StatisticsFiling(child, day, obj)
    if kind != "master-data":
        raise MalformedRequest("a filing's kind is 'master-data' or 'statistics'")
    through, last, items = obj.get("through"), obj.get("last"), obj.get("entries")
    if type(through) is not int or type(last) is not int or not isinstance(items, list):
        raise MalformedRequest("a master-data filing needs integer through and last, and a list of entries")
    if len(items) > MAX_FILING_ENTRIES:
        raise MalformedRequest(f"a filing carries at most {MAX_FILING_ENTRIES} entries, not {len(items)}")
    entries = [FiledEntry.from_json(item, child) for item in items]
    if any(b.seq <= a.seq for a, b in zip(entries, entries[1:])) or (entries and entries[-1].seq > through):
        raise MalformedRequest("filed entries must be in sequence order, none above through")
    return MasterDataFiling(child, through, max(last, through), entries)


class FilingStore:
    """The parent's record of its children's filings; an async context manager.

    Args:
        path: the SQLite file (:data:`FILINGS_NAME` in the data folder).
        clock: seconds since the epoch (tests pass their own).
    """

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> FilingStore:
        await self._run(lambda conn: None)
        return self

    async def __aexit__(self, *exc: object) -> None:
        async with self._lock:
            if self._conn is not None:
                await asyncio.to_thread(self._conn.close)
                self._conn = None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")  # acknowledged filings survive power loss
        conn.executescript(_SCHEMA)
        return conn

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def work() -> T:
            if self._conn is None:
                self._conn = self._connect()
            return fn(self._conn)

        async with self._lock:
            try:
                return await asyncio.to_thread(work)
            except sqlite3.Error as exc:
                raise StorageError(f"filing database {self.path}: {exc}") from exc

    async def file_master_data(self, filing: MasterDataFiling) -> int:
        """Store a batch (entries already stored are left as they are).

        Returns the acknowledged sequence number: every entry of the child
        up to it is stored.
        """
        now_ms = int(self._clock() * 1000)
        key = filing.child.upper()
        rows = [(key, e.seq, e.at_ms, e.op, e.handle, None if e.types is None else orjson.dumps(e.types).decode(),
                 e.template, now_ms) for e in filing.entries]

        def store(conn: sqlite3.Connection) -> int:
            with _transaction(conn):
                conn.executemany("INSERT OR IGNORE INTO filed_entries VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
                _touch_child(conn, key, filing.child, now_ms)
                conn.execute(
                    "UPDATE children SET filed_through = max(filed_through, ?), child_last = max(child_last, ?)"
                    " WHERE child = ?", (filing.through, filing.last, key),
                )
                return conn.execute("SELECT filed_through FROM children WHERE child = ?", (key,)).fetchone()[0]

        return await self._run(store)

    async def file_statistics(self, filing: StatisticsFiling) -> None:
        """Store a day's statistics report (replacing an earlier one of that day)."""
        now_ms = int(self._clock() * 1000)
        key = filing.child.upper()
        report = orjson.dumps(filing.report).decode()

        def store(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.execute("INSERT OR REPLACE INTO daily_statistics VALUES (?, ?, ?, ?)", (key, filing.day, report, now_ms))
                _touch_child(conn, key, filing.child, now_ms)

        await self._run(store)

    async def entries(
        self, child: str, *, handle: str | None = None, after: int = 0, limit: int = MAX_QUERY_ROWS
    ) -> list[tuple[FiledEntry, int]]:
        """What ``child`` filed (about ``handle`` only, if given), in sequence
        order after ``after``, with when the parent stored each (ms)."""
        sql = "SELECT seq, at_ms, op, handle, types, template, filed_ms FROM filed_entries WHERE child = ? AND seq > ?"
        params: list[Any] = [child.upper(), after]
        if handle is not None:
            sql += " AND upper(handle) = ?"
            params.append(handle.upper())
        sql += " ORDER BY seq LIMIT ?"
        params.append(limit)
        rows = await self._run(lambda conn: conn.execute(sql, params).fetchall())
        return [
            (FiledEntry(seq, at_ms, op, h, None if types is None else orjson.loads(types), template), filed_ms)
            for seq, at_ms, op, h, types, template, filed_ms in rows
        ]

    async def statistics(self, child: str) -> list[dict[str, Any]]:
        """Every daily report of ``child``, oldest day first."""
        rows = await self._run(lambda conn: conn.execute(
            "SELECT report FROM daily_statistics WHERE child = ? ORDER BY day", (child.upper(),)
        ).fetchall())
        return [orjson.loads(report) for (report,) in rows]

    async def lag(self, child: str | None = None) -> list[dict[str, Any]]:
        """Per child: last filed sequence number, the child's last as it
        reported it, the lag in entries, when it last filed, entries stored."""
        sql = (
            "SELECT c.prefix, c.filed_through, c.child_last, c.last_filing_ms,"
            " (SELECT count(*) FROM filed_entries f WHERE f.child = c.child),"
            " (SELECT max(day) FROM daily_statistics s WHERE s.child = c.child)"
            " FROM children c"
        )
        params: tuple[Any, ...] = ()
        if child is not None:
            sql += " WHERE c.child = ?"
            params = (child.upper(),)
        rows = await self._run(lambda conn: conn.execute(sql + " ORDER BY c.child", params).fetchall())
        return [
            {"child": prefix, "filedSeq": through, "childLastSeq": last, "lagEntries": max(0, last - through),
             "lastFilingMs": at_ms, "entriesFiled": count, "lastStatisticsDay": day}
            for prefix, through, last, at_ms, count, day in rows
        ]


def _touch_child(conn: sqlite3.Connection, key: str, prefix: str, now_ms: int) -> None:
    conn.execute(
        "INSERT INTO children (child, prefix, last_filing_ms) VALUES (?, ?, ?)"
        " ON CONFLICT (child) DO UPDATE SET last_filing_ms = excluded.last_filing_ms",
        (key, prefix, now_ms),
    )


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on an exception."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type is not None else "COMMIT")
