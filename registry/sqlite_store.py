"""The embedded default store: one SQLite file in WAL mode.

Writes run on one writer thread that owns the write connection. Jobs that
arrive while a commit is in progress are committed together in the next
transaction (group commit), so single writes share one fsync instead of
queueing behind each other. A job that raises drops only its own writes; a
commit the database refuses fails every job of its group, and a writer
whose connection breaks fails every waiting job and refuses new ones, so a
failing disk gives errors, never a hang.
``synchronous=FULL`` makes every commit durable before its result is
returned, which is the moment a client may be told "done".

Point reads run inline on the event loop over a separate read connection,
behind a bounded cache of hot records (:mod:`registry.read_cache`) that the
writer keeps coherent: an indexed lookup costs microseconds, less than a
hop to a thread, and a cached one less still. Scans (listing, counting,
journal reads) run on a reader thread so a large prefix never stalls the
loop.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, TypeVar

from idcore.errors import StorageError
from registry.read_cache import MISS, RecordCache
from registry.records import StoredRecord
from registry.store import JournalEntry, Store, Txn, prefix_key_range

T = TypeVar("T")
log = logging.getLogger(__name__)

#: Schema version kept in ``PRAGMA user_version``.
SCHEMA_VERSION = 1

#: Most write jobs committed in one transaction; bounds the time one group
#: holds the writer and the work lost to one failed commit.
MAX_GROUP_COMMIT_JOBS = 256

#: Keys per ``IN (...)`` lookup when prefetching (below SQLite's variable cap).
PREFETCH_CHUNK = 500

#: How long a connection waits for a lock before failing. Only one writer
#: exists, so this only covers checkpoints and other processes reading.
BUSY_TIMEOUT_MS = 10_000

#: Bytes of the database file the point-read connection maps into memory:
#: reads of mapped pages cost no system call. (The pages are the kernel's
#: page cache, shared and reclaimable, though they count in RSS.)
READER_MMAP_BYTES = 1024**3

#: SQLite page cache of each connection, in KiB. The writer mostly appends
#: and the reader is fronted by the record cache, so a modest cache does.
PAGE_CACHE_KIB = 16 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS handles (
    key TEXT PRIMARY KEY,          -- prefix upper-cased, '/', suffix
    handle TEXT NOT NULL,          -- as first written
    vals BLOB NOT NULL             -- the values, compact (registry.records)
);
CREATE TABLE IF NOT EXISTS prefixes (
    key TEXT PRIMARY KEY,
    prefix TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, even after pruning
    at_ms INTEGER NOT NULL,
    op TEXT NOT NULL,
    handle TEXT NOT NULL,
    actor TEXT
);
"""

_UPSERT = (
    "INSERT INTO handles (key, handle, vals) VALUES (?, ?, ?) "
    "ON CONFLICT (key) DO UPDATE SET handle = excluded.handle, vals = excluded.vals"
)

_STOP = object()


class SqliteStore(Store):
    """A store in one SQLite database file.

    Args:
        path: the database file; its folder must exist.
        synchronous: SQLite's ``synchronous`` setting. ``FULL`` (default)
            survives power loss; ``NORMAL`` survives a killed process only
            and is for benchmarks that say so.
        cache: the read cache (default: one with the default bounds;
            ``RecordCache(0)`` disables caching).
    """

    def __init__(self, path: str | Path, *, synchronous: str = "FULL", cache: RecordCache | None = None) -> None:
        if synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError(f"synchronous must be FULL, NORMAL or EXTRA, not {synchronous!r}")
        self.path = Path(path)
        self._synchronous = synchronous
        self.cache = RecordCache() if cache is None else cache
        self._reader: sqlite3.Connection | None = None
        self._scanner: sqlite3.Connection | None = None
        self._scan_pool: ThreadPoolExecutor | None = None
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._submit = threading.Lock()
        self._refusal: StorageError | None = StorageError("store is not open")
        self._writer: threading.Thread | None = None
        self._writer_ready = threading.Event()
        self._writer_error: BaseException | None = None

    # --- lifecycle -----------------------------------------------------------

    async def open(self) -> None:
        if self._writer is not None:
            return
        if not self.path.parent.is_dir():
            raise StorageError(f"cannot open database {self.path}: folder {self.path.parent} does not exist")
        self._writer = threading.Thread(target=self._write_loop, name=f"sqlite-writer:{self.path.name}", daemon=True)
        self._writer.start()
        await asyncio.to_thread(self._writer_ready.wait)
        if self._writer_error is not None:
            self._writer = None
            raise StorageError(f"cannot open database {self.path}: {self._writer_error}") from self._writer_error
        self._reader = self._connect()
        self._reader.execute(f"PRAGMA mmap_size = {READER_MMAP_BYTES}")
        self._scanner = self._connect()
        self._scan_pool = ThreadPoolExecutor(1, thread_name_prefix="sqlite-scan")

    async def close(self) -> None:
        if self._writer is None:
            return
        self._jobs.put(_STOP)
        await asyncio.to_thread(self._writer.join)
        self._writer = None
        if self._scan_pool is not None:
            self._scan_pool.shutdown(wait=True)
        for conn in (self._reader, self._scanner):
            if conn is not None:
                conn.close()
        self._reader = self._scanner = None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, cached_statements=256)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        conn.execute(f"PRAGMA cache_size = {-PAGE_CACHE_KIB}")
        return conn

    # --- reads ---------------------------------------------------------------

    async def get(self, key: str) -> StoredRecord | None:
        cached = self.cache.lookup(key)
        if cached is not MISS:
            return cached  # type: ignore[return-value]
        assert self._reader is not None, "store is not open"
        generation = self.cache.generation
        try:
            row = self._reader.execute("SELECT handle, vals FROM handles WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as exc:
            raise StorageError(f"reading {key!r} failed: {exc}") from exc
        record = None if row is None else StoredRecord(*row)
        self.cache.offer(key, record, generation)
        return record

    async def _scan(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        def run() -> list[Any]:
            assert self._scanner is not None, "store is not open"
            return self._scanner.execute(sql, params).fetchall()

        try:
            return await asyncio.get_running_loop().run_in_executor(self._scan_pool, run)
        except sqlite3.Error as exc:
            raise StorageError(f"database scan failed: {exc}") from exc

    async def count_handles(self, prefix: str) -> int:
        rows = await self._scan("SELECT count(*) FROM handles WHERE key >= ? AND key < ?", prefix_key_range(prefix))
        return rows[0][0]

    async def count_handles_at(self, prefix: str) -> tuple[int, int]:
        # one statement reads one snapshot of the database (WAL)
        sql = ("SELECT (SELECT count(*) FROM handles WHERE key >= ? AND key < ?),"
               " (SELECT coalesce(max(seq), 0) FROM journal)")
        rows = await self._scan(sql, prefix_key_range(prefix))
        return rows[0][0], rows[0][1]

    async def list_handles(
        self, prefix: str, *, after: str = "", offset: int = 0, limit: int
    ) -> list[tuple[str, str]]:
        low, high = prefix_key_range(prefix)
        if after >= low:
            sql = "SELECT key, handle FROM handles WHERE key > ? AND key < ? ORDER BY key LIMIT ? OFFSET ?"
            return await self._scan(sql, (after, high, limit, offset))
        sql = "SELECT key, handle FROM handles WHERE key >= ? AND key < ? ORDER BY key LIMIT ? OFFSET ?"
        return await self._scan(sql, (low, high, limit, offset))

    async def homed_prefixes(self) -> list[str]:
        return [row[0] for row in await self._scan("SELECT prefix FROM prefixes ORDER BY key", ())]

    async def journal(self, *, after: int = 0, limit: int = 1000) -> list[JournalEntry]:
        rows = await self._scan(
            "SELECT seq, at_ms, op, handle, actor FROM journal WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
        )
        return [JournalEntry(*row) for row in rows]

    async def last_seq(self) -> int:
        rows = await self._scan("SELECT coalesce(max(seq), 0) FROM journal", ())
        return rows[0][0]

    async def scan_records(self, *, after: str = "", limit: int) -> list[tuple[str, str, bytes]]:
        return await self._scan("SELECT key, handle, vals FROM handles WHERE key > ? ORDER BY key LIMIT ?", (after, limit))

    # --- writes --------------------------------------------------------------

    async def transact(self, fn: Callable[[Txn], T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._submit:
            # Checked under the lock the writer takes when it stops, so no job
            # can slip into the queue after its last drain and wait forever.
            if self._refusal is not None:
                raise self._refusal
            self._jobs.put((fn, future, loop))
        return await future

    def _write_loop(self) -> None:
        try:
            conn = self._connect()
            conn.executescript(_SCHEMA)
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif version != SCHEMA_VERSION:
                raise StorageError(f"database schema version {version}; this idnode reads version {SCHEMA_VERSION}")
        except BaseException as exc:  # reported to open(), which raises it
            self._writer_error = exc
            self._writer_ready.set()
            return
        with self._submit:
            self._refusal = None
        self._writer_ready.set()
        refusal = StorageError(f"the store {self.path} is closed")
        try:
            while (group := self._next_group()) is not None:
                try:
                    self._commit_group(conn, group)
                except BaseException as exc:  # the connection is in an unknown state: stop writing
                    log.critical("writer of %s failed; the store takes no more writes: %s", self.path, exc)
                    refusal = StorageError(f"the store {self.path} failed and takes no more writes: {exc}")
                    _settle_all(group, refusal)
                    break
        finally:
            with self._submit:
                self._refusal = refusal
            leftovers = []
            while True:
                try:
                    leftovers.append(self._jobs.get_nowait())
                except queue.Empty:
                    break
            _settle_all([job for job in leftovers if job is not _STOP], refusal)
            conn.close()

    def _next_group(self) -> list[Any] | None:
        """The next jobs to commit together, or None when told to stop."""
        first = self._jobs.get()
        if first is _STOP:
            return None
        group = [first]
        while len(group) < MAX_GROUP_COMMIT_JOBS:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is _STOP:
                self._jobs.put(_STOP)  # stop after this group
                break
            group.append(job)
        return group

    def _commit_group(self, conn: sqlite3.Connection, group: list[Any]) -> None:
        outcomes: list[tuple[bool, Any]] = []
        committed: list[Txn] = []
        load = _loader(conn)
        try:
            conn.execute("BEGIN IMMEDIATE")
            for fn, _, _ in group:
                txn = Txn(load)
                try:
                    result = fn(txn)
                except Exception as exc:  # the job's own failure: its writes are dropped
                    outcomes.append((False, exc))
                    continue
                _flush(conn, txn)
                committed.append(txn)
                outcomes.append((True, result))
            # Readers may cache what they read only while no commit is under
            # way; the window is from here until the cache has the new records.
            self.cache.begin_commit()
            try:
                conn.execute("COMMIT")
            except BaseException:
                committed = []
                raise
            finally:
                self.cache.end_commit(change for txn in committed for change in txn.writes.items())
        except Exception as exc:  # a failed flush or commit loses the whole group, never part of it
            log.error("commit of %d write job(s) to %s failed: %s", len(group), self.path, exc)
            if conn.in_transaction:
                conn.execute("ROLLBACK")  # if this fails too, the writer stops (see _write_loop)
            failure = StorageError(f"the database refused the write: {exc}")
            failure.__cause__ = exc
            outcomes = [(False, failure)] * len(group)
        for job, (ok, value) in zip(group, outcomes, strict=True):
            _settle_job(job, ok, value)


def _settle_job(job: Any, ok: bool, value: Any) -> None:
    """Hand a job's outcome to the event loop that waits for it."""
    _, future, loop = job
    try:
        loop.call_soon_threadsafe(_settle, future, ok, value)
    except RuntimeError:  # the caller's loop is closed; nobody waits
        pass


def _settle_all(jobs: list[Any], error: Exception) -> None:
    for job in jobs:
        _settle_job(job, False, error)


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def _loader(conn: sqlite3.Connection) -> Callable[[list[str]], dict[str, StoredRecord]]:
    def load(keys: list[str]) -> dict[str, StoredRecord]:
        found: dict[str, StoredRecord] = {}
        for start in range(0, len(keys), PREFETCH_CHUNK):
            chunk = keys[start : start + PREFETCH_CHUNK]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT key, handle, vals FROM handles WHERE key IN ({marks})"
            for key, handle, vals in conn.execute(sql, chunk):
                found[key] = StoredRecord(handle, vals)
        return found

    return load


def _flush(conn: sqlite3.Connection, txn: Txn) -> None:
    """Write a finished transaction's buffer into the open SQLite transaction."""
    upserts = []
    deletes = []
    for key, record in txn.writes.items():
        if record is None:
            deletes.append((key,))
        else:
            upserts.append((key, record.handle, record.blob))
    if upserts:
        conn.executemany(_UPSERT, upserts)
    if deletes:
        conn.executemany("DELETE FROM handles WHERE key = ?", deletes)
    for prefix, homed in txn.homing:
        if homed:
            conn.execute("INSERT OR REPLACE INTO prefixes (key, prefix) VALUES (?, ?)", (prefix.upper(), prefix))
        else:
            conn.execute("DELETE FROM prefixes WHERE key = ?", (prefix.upper(),))
    if txn.changes:
        conn.executemany(
            "INSERT INTO journal (at_ms, op, handle, actor) VALUES (?, ?, ?, ?)",
            [(txn.now_ms, c.op, c.handle, c.actor) for c in txn.changes],
        )
