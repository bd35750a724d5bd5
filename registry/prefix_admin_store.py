"""Where a parent node keeps prefix applications and their history.

:class:`ApplicationStore` is the seam; :class:`MemoryApplications` serves
unit tests and in-memory nodes, :class:`SqliteApplications` keeps them in
``prefix_admin.sqlite3`` in the node's data folder (WAL, ``synchronous=FULL``:
a transition is on disk before it is answered). Every state change is a
compare-and-set that appends its history entry in the same transaction, so
two reviewers acting at once cannot both succeed.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from idcore.errors import StorageError

#: File name of the application database in a node's data folder.
PREFIX_ADMIN_DATABASE_NAME = "prefix_admin.sqlite3"


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One step of an application's life: who did what, when, and why."""

    action: str
    from_state: str | None
    to_state: str
    actor: str | None
    at: float
    reason: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "action": self.action,
            "from": self.from_state,
            "to": self.to_state,
            "by": self.actor,
            "at": self.at,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class ApplicationRow:
    """A stored application.

    Attributes:
        id: unguessable identifier given at submission.
        prefix: the child prefix applied for, as written.
        parent_prefix: the homed prefix it is delegated from.
        state: one of :data:`registry.prefix_admin.STATES`.
        body: the application's JSON (:class:`registry.applicant.Application`).
        secret_hash: the hashed secret of the child's identity, if one was given.
        created, updated: seconds since the epoch.
    """

    id: str
    prefix: str
    parent_prefix: str
    state: str
    body: bytes
    secret_hash: bytes | None
    created: float
    updated: float


class ApplicationStore(Protocol):
    async def add(self, row: ApplicationRow, entry: HistoryEntry) -> None: ...

    async def get(self, app_id: str) -> ApplicationRow | None: ...

    async def list(self, state: str | None = None) -> list[ApplicationRow]: ...

    async def count(self, state: str) -> int: ...

    async def open_for(self, prefix: str, closed: tuple[str, ...]) -> ApplicationRow | None:
        """An application for ``prefix`` (any case) whose state is not in ``closed``."""
        ...

    async def transition(self, app_id: str, expected: str, entry: HistoryEntry) -> bool:
        """Move ``app_id`` from ``expected`` to ``entry.to_state``, recording
        ``entry``; False (and nothing changed) when it is not in ``expected``."""
        ...

    async def history(self, app_id: str) -> list[HistoryEntry]: ...


class MemoryApplications:
    """Applications in a dictionary (tests, in-memory nodes)."""

    def __init__(self) -> None:
        self._rows: dict[str, ApplicationRow] = {}
        self._history: dict[str, list[HistoryEntry]] = {}

    async def add(self, row: ApplicationRow, entry: HistoryEntry) -> None:
        self._rows[row.id] = row
        self._history[row.id] = [entry]

    async def get(self, app_id: str) -> ApplicationRow | None:
        return self._rows.get(app_id)

    async def list(self, state: str | None = None) -> list[ApplicationRow]:
        return [r for r in self._rows.values() if state in (None, r.state)]

    async def count(self, state: str) -> int:
        return sum(1 for r in self._rows.values() if r.state == state)

    async def open_for(self, prefix: str, closed: tuple[str, ...]) -> ApplicationRow | None:
        return next(
            (r for r in self._rows.values() if r.prefix.upper() == prefix.upper() and r.state not in closed), None
        )

    async def transition(self, app_id: str, expected: str, entry: HistoryEntry) -> bool:
        row = self._rows.get(app_id)
        if row is None or row.state != expected:
            return False
        self._rows[app_id] = replace(row, state=entry.to_state, updated=entry.at)
        self._history[app_id].append(entry)
        return True

    async def history(self, app_id: str) -> list[HistoryEntry]:
        return list(self._history.get(app_id, ()))


_SCHEMA = """
CREATE TABLE IF NOT EXISTS applications (
    id TEXT PRIMARY KEY,
    prefix TEXT NOT NULL,
    prefix_key TEXT NOT NULL,
    parent_prefix TEXT NOT NULL,
    state TEXT NOT NULL,
    body BLOB NOT NULL,
    secret_hash BLOB,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS applications_state ON applications(state);
CREATE INDEX IF NOT EXISTS applications_prefix ON applications(prefix_key);
CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    application_id TEXT NOT NULL REFERENCES applications(id),
    action TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT NOT NULL,
    actor TEXT,
    at REAL NOT NULL,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS history_application ON history(application_id, seq);
"""

_COLUMNS = "id, prefix, parent_prefix, state, body, secret_hash, created, updated"


class SqliteApplications:
    """Applications in one SQLite file; an async context manager.

    One connection, used by one thread at a time (a lock), each call run off
    the event loop with :func:`asyncio.to_thread`.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    async def __aenter__(self) -> SqliteApplications:
        await asyncio.to_thread(self._open)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await asyncio.to_thread(db.close)

    def _open(self) -> None:
        try:
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open {self.path}: {exc}") from exc
        self._db = db

    async def _run(self, fn, *args):  # type: ignore[no-untyped-def]
        def call():  # type: ignore[no-untyped-def]
            if self._db is None:
                raise StorageError(f"{self.path} is closed")
            with self._lock:
                try:
                    return fn(self._db, *args)
                except sqlite3.Error as exc:
                    raise StorageError(f"prefix application store failed: {exc}") from exc

        return await asyncio.to_thread(call)

    async def add(self, row: ApplicationRow, entry: HistoryEntry) -> None:
        def add(db: sqlite3.Connection) -> None:
            with db:
                db.execute("BEGIN IMMEDIATE")
                db.execute(
                    "INSERT INTO applications (id, prefix, prefix_key, parent_prefix, state, body, secret_hash,"
                    " created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (row.id, row.prefix, row.prefix.upper(), row.parent_prefix, row.state, row.body,
                     row.secret_hash, row.created, row.updated),
                )
                _append(db, row.id, entry)

        await self._run(add)

    async def get(self, app_id: str) -> ApplicationRow | None:
        def get(db: sqlite3.Connection) -> ApplicationRow | None:
            found = db.execute(f"SELECT {_COLUMNS} FROM applications WHERE id = ?", (app_id,)).fetchone()
            return None if found is None else ApplicationRow(*found)

        return await self._run(get)

    async def list(self, state: str | None = None) -> list[ApplicationRow]:
        def rows(db: sqlite3.Connection) -> list[ApplicationRow]:
            if state is None:
                cursor = db.execute(f"SELECT {_COLUMNS} FROM applications ORDER BY created, id")
            else:
                cursor = db.execute(
                    f"SELECT {_COLUMNS} FROM applications WHERE state = ? ORDER BY created, id", (state,)
                )
            return [ApplicationRow(*r) for r in cursor]

        return await self._run(rows)

    async def count(self, state: str) -> int:
        def count(db: sqlite3.Connection) -> int:
            return db.execute("SELECT COUNT(*) FROM applications WHERE state = ?", (state,)).fetchone()[0]

        return await self._run(count)

    async def open_for(self, prefix: str, closed: tuple[str, ...]) -> ApplicationRow | None:
        def find(db: sqlite3.Connection) -> ApplicationRow | None:
            marks = ", ".join("?" * len(closed))
            found = db.execute(
                f"SELECT {_COLUMNS} FROM applications WHERE prefix_key = ? AND state NOT IN ({marks}) LIMIT 1",
                (prefix.upper(), *closed),
            ).fetchone()
            return None if found is None else ApplicationRow(*found)

        return await self._run(find)

    async def transition(self, app_id: str, expected: str, entry: HistoryEntry) -> bool:
        def move(db: sqlite3.Connection) -> bool:
            with db:
                db.execute("BEGIN IMMEDIATE")
                changed = db.execute(
                    "UPDATE applications SET state = ?, updated = ? WHERE id = ? AND state = ?",
                    (entry.to_state, entry.at, app_id, expected),
                ).rowcount
                if changed:
                    _append(db, app_id, entry)
                return bool(changed)

        return await self._run(move)

    async def history(self, app_id: str) -> list[HistoryEntry]:
        def entries(db: sqlite3.Connection) -> list[HistoryEntry]:
            cursor = db.execute(
                "SELECT action, from_state, to_state, actor, at, reason FROM history"
                " WHERE application_id = ? ORDER BY seq",
                (app_id,),
            )
            return [HistoryEntry(*r) for r in cursor]

        return await self._run(entries)


def _append(db: sqlite3.Connection, app_id: str, entry: HistoryEntry) -> None:
    db.execute(
        "INSERT INTO history (application_id, action, from_state, to_state, actor, at, reason)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (app_id, entry.action, entry.from_state, entry.to_state, entry.actor, entry.at, entry.reason),
    )
