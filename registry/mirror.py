"""A mirror: a node that keeps a copy of a primary node's data by reading
the primary's change journal, and serves reads from it.

The mirror reads the journal from the sequence number after the last one it
applied, a page at a time (:class:`Feed`, the seam: over HTTP in
:mod:`resolver.mirror_app`, in memory in tests). Each page is applied to the
mirror's own store in ONE transaction (each create or update stores the
handle's current record whole, each delete removes it, each home or unhome
changes the homed prefixes); only after that commit is the cursor written
to a small JSON state file (written, synced, renamed). A crash between the
two replays the page on restart, which changes nothing: records are written
whole, deletes and homes are idempotent.

When the primary cannot be reached the mirror keeps serving what it has and
retries with backoff (:class:`Backoff`), logging the outage once and the
recovery once. Its lag (entries behind, seconds since the last successful
pull) is in :meth:`Mirror.status`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple, Protocol

import orjson

from idcore.errors import (
    BadUpstreamReply,
    IdnodeError,
    InvalidValue,
    RequestError,
    ResponseCode,
)
from idcore.handle import Handle
from registry.records import StoredRecord
from registry.service import Registry
from registry.store import Op, Txn

log = logging.getLogger(__name__)

#: The mirror's cursor file in its data folder.
STATE_NAME = "mirror.json"

#: Entries asked for per pull: the feed's own cap (resolver.journal_api).
DEFAULT_BATCH = 5000

#: Seconds between pulls once caught up: how stale a quiet mirror may be.
DEFAULT_POLL_SECONDS = 1.0


class MirrorReadOnly(RequestError):
    """A write sent to a mirror: only its primary takes writes."""

    response_code = ResponseCode.OPERATION_NOT_SUPPORTED
    http_status = 403


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential retry delays: ``initial`` seconds after the first failure,
    times ``factor`` after each further one, never above ``maximum``."""

    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` consecutive failures (>= 1)."""
        return min(self.maximum, self.initial * self.factor ** max(0, failures - 1))


class FeedEntry(NamedTuple):
    """One journal entry as the feed gives it. ``record`` is the handle's
    current record for create/update (None: deleted since), None otherwise."""

    seq: int
    at_ms: int
    op: str
    handle: str
    actor: str | None
    record: StoredRecord | None


class JournalPage(NamedTuple):
    """A page of the primary's journal and its highest sequence number."""

    last: int
    entries: list[FeedEntry]

    @classmethod
    def from_json(cls, obj: Any) -> JournalPage:
        """Parse a ``GET /api/journal`` reply.

        Raises:
            BadUpstreamReply: not the feed's shape.
        """
        try:
            entries = []
            for item in obj["entries"]:
                blob = item.get("record")
                record = None
                if blob is not None:
                    record = StoredRecord(item["handle"], base64.b64decode(blob, validate=True))
                seq, at_ms = item["seq"], item["at_ms"]
                if type(seq) is not int or type(at_ms) is not int or not isinstance(item["op"], str):
                    raise TypeError("seq and at_ms must be integers")
                entries.append(FeedEntry(seq, at_ms, item["op"], item["handle"], item.get("actor"), record))
            last = obj["last"]
            if type(last) is not int:
                raise TypeError("last must be an integer")
        except (KeyError, TypeError, AttributeError, binascii.Error, ValueError) as exc:
            raise BadUpstreamReply(f"the primary's journal reply is malformed: {exc}") from None
        if any(b.seq <= a.seq for a, b in itertools.pairwise(entries)):
            raise BadUpstreamReply("the primary's journal entries are not in sequence order")
        return cls(last, entries)


class Feed(Protocol):
    """Where a mirror reads the primary's journal."""

    async def fetch(self, after: int, limit: int) -> JournalPage:
        """Entries after ``after``, at most ``limit``.

        Raises:
            UpstreamError: the primary could not be reached or refused.
        """
        ...


def apply_entries(txn: Txn, entries: list[FeedEntry], homed: set[str]) -> bool:
    """Apply feed entries in a mirror's transaction; ``homed`` is the set of
    upper-cased prefixes the mirror homes (updated). Only what differs is
    written, so a replay journals nothing. Returns True when a prefix was
    homed or unhomed (the registry must reload its homed prefixes)."""
    homing = False
    keys = [Handle.from_text(e.handle).key if e.op not in (Op.HOME, Op.UNHOME) else "" for e in entries]
    txn.prefetch(k for k in keys if k)  # one read for the page, not one per entry
    for entry, key in zip(entries, keys, strict=True):
        if entry.op in (Op.HOME, Op.UNHOME):
            home = entry.op == Op.HOME
            if (entry.handle.upper() in homed) != home:
                txn.set_homed(entry.handle, home, entry.actor)
                (homed.add if home else homed.discard)(entry.handle.upper())
                homing = True
            continue
        if entry.record is None:
            if txn.get(key) is not None:
                txn.delete(key, entry.handle, entry.actor)
        elif txn.get(key) != entry.record:
            op = Op.UPDATE if txn.get(key) is not None else Op.CREATE
            txn.put(key, entry.record, op, entry.actor)
    return homing


def read_state(path: Path) -> dict[str, Any] | None:
    """The mirror's saved state, or None before its first pull."""
    try:
        return orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, orjson.JSONDecodeError) as exc:
        raise InvalidValue(f"cannot read the mirror state {path}: {exc}") from None


def write_state(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` durably: whole or not at all (sync, rename, sync dir)."""
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as f:
        f.write(orjson.dumps(state) + b"\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Mirror:
    """Keeps ``registry`` (the mirror's own) a copy of the primary's data.

    Args:
        registry: the mirror's open registry (its store takes the copies).
        feed: where the primary's journal is read.
        state_path: the cursor file (:data:`STATE_NAME` in the data folder).
        primary: the primary's URL, for messages and the state file.
        batch: entries per pull.
        backoff: delays between attempts while the primary is down.

    Raises:
        InvalidValue: the state file belongs to a mirror of another primary.
    """

    def __init__(
        self,
        registry: Registry,
        feed: Feed,
        state_path: Path,
        primary: str,
        *,
        batch: int = DEFAULT_BATCH,
        backoff: Backoff = Backoff(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.feed = feed
        self.state_path = state_path
        self.primary = primary
        self.batch = batch
        self.backoff = backoff
        self._clock = clock
        state = read_state(state_path) or {}
        if state and state.get("primary") not in (None, primary):
            raise InvalidValue(
                f"{state_path} is the state of a mirror of {state['primary']}, not of {primary}; use a new folder"
            )
        self.applied_seq: int = int(state.get("applied_seq", 0))
        self.primary_seq: int | None = None
        self.last_pull: float | None = None
        self.failures = 0

    async def pull_once(self) -> int:
        """Read one page after the applied sequence number and apply it.

        Returns how many entries were applied.

        Raises:
            UpstreamError: the primary could not be reached or refused.
            StorageError: the mirror's store failed (nothing was applied).
        """
        return await self._apply(await self.feed.fetch(self.applied_seq, self.batch))

    async def _apply(self, page: JournalPage) -> int:
        entries = [e for e in page.entries if e.seq > self.applied_seq]
        if entries:
            homed = {p.upper() for p in self.registry.homed_prefixes}
            homing = await self.registry.store.transact(lambda txn: apply_entries(txn, entries, homed))
            if homing:
                await self.registry.open()
            self.applied_seq = entries[-1].seq
            state = {"primary": self.primary, "applied_seq": self.applied_seq}
            await asyncio.to_thread(write_state, self.state_path, state)  # two fsyncs: off the event loop
        self.primary_seq = max(page.last, self.applied_seq)
        self.last_pull = self._clock()
        return len(entries)

    async def catch_up(self) -> int:
        """Pull until the applied sequence number reaches the primary's last
        (as the primary reported it). Returns the entries applied.

        While one page commits, the next is already being read: the
        primary's work and the mirror's overlap. Pages still apply in order.
        """
        total = 0
        page = await self.feed.fetch(self.applied_seq, self.batch)
        while True:
            ahead = None
            if page.entries and page.entries[-1].seq < page.last:
                ahead = asyncio.ensure_future(self.feed.fetch(page.entries[-1].seq, self.batch))
            try:
                total += await self._apply(page)
            except BaseException:
                if ahead is not None:
                    ahead.cancel()
                    await asyncio.gather(ahead, return_exceptions=True)
                raise
            if ahead is not None:
                page = await ahead
            elif self.primary_seq is None or self.applied_seq >= self.primary_seq:
                return total
            else:
                page = await self.feed.fetch(self.applied_seq, self.batch)

    async def run(self, *, poll_seconds: float = DEFAULT_POLL_SECONDS) -> None:
        """Catch up, then keep pulling every ``poll_seconds``, until cancelled;
        while the primary is down, retry with :attr:`backoff`."""
        while True:
            try:
                applied = await self.catch_up()
            except Exception as exc:  # the primary down or refusing, the mirror's store failing, a bug
                self.failures += 1
                if not isinstance(exc, IdnodeError):
                    log.exception("mirror: copying the journal of %s failed; retrying with backoff", self.primary)
                elif self.failures == 1:
                    log.warning("mirror: cannot copy the journal of %s (%s); retrying with backoff", self.primary, exc.message)
                await asyncio.sleep(self.backoff.delay(self.failures))
                continue
            if applied:
                log.info("mirror: applied %d entries of %s, up to sequence %d", applied, self.primary, self.applied_seq)
            if self.failures:
                log.warning("mirror: reading %s again after %d failed attempts", self.primary, self.failures)
                self.failures = 0
            await asyncio.sleep(poll_seconds)

    def status(self) -> dict[str, Any]:
        """The mirror's state and lag, as ``GET /api/mirror`` shows it."""
        lag_entries = None if self.primary_seq is None else max(0, self.primary_seq - self.applied_seq)
        lag_seconds = None if self.last_pull is None else round(max(0.0, self._clock() - self.last_pull), 3)
        return {
            "primary": self.primary,
            "appliedSeq": self.applied_seq,
            "primarySeq": self.primary_seq,
            "lagEntries": lag_entries,
            "lagSeconds": lag_seconds,
            "primaryReachable": self.failures == 0 and self.last_pull is not None,
            "homedPrefixes": list(self.registry.homed_prefixes),
        }
