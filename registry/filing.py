"""Filing upward (备案): a child node reports its identifier master data and
daily statistics to its parent node, as a reader of its own change journal.

:class:`Filer` reads the journal from its own cursor (``filing.json`` in the
data folder), a batch at a time, and sends each batch to the parent
(:class:`Parent`, the seam: over HTTP in :class:`HttpParent`, in memory in
tests). A batch carries every create, update and delete of a handle under
the child's prefix with its sequence number, time and a summary of the
handle's current record (its value types in index order and its TEMPLATE
value, if any), plus ``through`` (the journal position the batch reaches:
entries that are not master data, such as homing a prefix, are covered
without being sent) and the child's last sequence number (the parent shows
the lag). Only after the parent acknowledged the batch is the cursor
written (synced, renamed): a crash in between sends the batch again, which
the parent, keeping one row per (child, sequence), ignores. Delivery is at
least once, storage exactly once.

Once a day (and on demand) the filer also files daily statistics: for each
UTC day, registrations that day and the handles under the prefix at the
day's end, and the node's resolution counters
(:mod:`registry.resolution_stats`, saved by the node process). Every day
not yet filed is filed, oldest first, up to :data:`MAX_STATISTICS_BACKFILL_DAYS`
back: a filer (or parent) that was down for days files each missed day.

While the parent is down the filer retries with backoff, logging the outage
once; the child node never waits for it (the filer is its own process,
``idnode filing run``), and catches up when the parent is back. A parent
that refuses the filer's credentials (:class:`ParentRefused`) is not down:
that is logged as an error until an operator grants filing at the parent,
and shown in :meth:`Filer.status`; the filer keeps retrying meanwhile.

Every filing is authenticated as the child: HTTP Basic with the child's
admin identity ``300:0.NA/<prefix>`` (which the parent's delegation record
must vouch for, :func:`grant_filing`) and an Ed25519 signature of the body
by the child's node key (:mod:`registry.node_key`).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import logging
import time
from pathlib import Path
from typing import Any, Callable, Protocol

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from idcore.errors import (
    BadUpstreamReply,
    IdnodeError,
    InvalidValue,
    UpstreamError,
)
from idcore.handle import Handle, prefix_handle
from idcore.rest_json import values_from_json
from idcore.values import ValueReference, ValueType, type_is
from registry.daily_registrations import day_of_ms, days_from, registrations
from registry.mirror import Backoff, read_state, write_state
from registry.node_key import raw_public
from registry.records import StoredRecord
from registry.resolution_stats import MAX_DAYS_KEPT, ResolutionStats, day_of
from registry.service import Registry
from registry.store import Op, Store

log = logging.getLogger(__name__)

#: The filer's cursor file in the child's data folder.
FILING_STATE_NAME = "filing.json"

#: Journal entries read per batch: well under the parent's cap per filing
#: (registry.filing_store.MAX_FILING_ENTRIES) and its 1 MiB body limit.
DEFAULT_BATCH = 1000

#: Seconds between journal reads once caught up: how late a filing may be.
DEFAULT_POLL_SECONDS = 1.0

#: Most days of statistics filed after the filer (or the parent) was down:
#: the node keeps resolution counters for MAX_DAYS_KEPT days counting today,
#: so an older past day would be filed without them. Older missed days are
#: skipped, with a warning.
MAX_STATISTICS_BACKFILL_DAYS = MAX_DAYS_KEPT - 1

#: HTTP statuses with which a parent refuses the filer's credentials.
REFUSAL_STATUSES = (401, 403)

#: Seconds between ERROR logs of an unchanged refusal: an operator watching
#: the log sees it within this time, and the log does not fill with it.
REFUSAL_LOG_SECONDS = 600.0

#: Value index of the child's node key in the parent's delegation record
#: (next to its admin secret at 300).
NODE_KEY_INDEX = 301

MASTER_DATA_OPS = (Op.CREATE, Op.UPDATE, Op.DELETE)


class ParentRefused(UpstreamError):
    """The parent refused the filer's credentials (HTTP 401 or 403): the
    child is not (or no longer) granted filing there, its secret or node key
    changed, or it files for a prefix the parent does not delegate to it.
    Not an outage: an operator must act at the parent
    (``idnode filing grant``).

    Attributes:
        parent_status: the HTTP status the parent answered.
    """

    def __init__(self, message: str, *, parent_status: int) -> None:
        super().__init__(message, parent_status=parent_status)
        self.parent_status = parent_status


class Parent(Protocol):
    """Where a filer delivers its filings."""

    async def file(self, body: bytes) -> dict[str, Any]:
        """Send one filing (JSON ``body``); the parent's reply.

        Raises:
            ParentRefused: the parent refused the filer's credentials.
            UpstreamError: the parent could not be reached or refused the filing.
        """
        ...


def record_summary(record: StoredRecord | None) -> tuple[list[str] | None, str | None]:
    """The value types of ``record`` in index order and its TEMPLATE value
    (None, None for a record deleted since)."""
    if record is None:
        return None, None
    values = sorted(record.values(), key=lambda v: v.index)
    template = None
    for value in values:
        if type_is(value.type, "TEMPLATE") and isinstance(value.data, bytes):
            template = value.data.decode("utf-8", "replace")
            break
    return [v.type for v in values], template


def sign(key: Ed25519PrivateKey | None, body: bytes) -> str | None:
    """The base64 Ed25519 signature of ``body`` (None without a key)."""
    return None if key is None else base64.b64encode(key.sign(body)).decode("ascii")


def public_jwk(key: Ed25519PublicKey) -> dict[str, str]:
    """``key`` as a JWK, the form an HS_PUBKEY value holds."""
    return {"kty": "OKP", "crv": "Ed25519", "x": base64.urlsafe_b64encode(raw_public(key)).decode().rstrip("=")}


def filing_grant_values(secret: str, public_key: Ed25519PublicKey | None) -> list[dict[str, Any]]:
    """REST JSON values that let a child file with its parent, to add to
    the parent's ``0.NA/<child>`` delegation record: the child's admin
    secret at 300 (the parent keeps only its hash) and its node key."""
    values: list[dict[str, Any]] = [
        {"index": 300, "type": ValueType.HS_SECKEY, "data": {"format": "string", "value": secret}, "permissions": "1100"},
    ]
    if public_key is not None:
        values.append({"index": NODE_KEY_INDEX, "type": ValueType.HS_PUBKEY,
                       "data": {"format": "key", "value": public_jwk(public_key)}})
    return values


async def grant_filing(
    parent: Registry, child: str, secret: str, public_key: Ed25519PublicKey | None, admin: ValueReference
) -> None:
    """Let ``child`` file with ``parent``: add its secret and node key to the
    parent's delegation record (which must exist), as ``admin``."""
    values = values_from_json(filing_grant_values(secret, public_key))
    await parent.add_values(prefix_handle(child), values, admin)


class Filer:
    """Files the journal of ``store`` (the child's) with its parent.

    Args:
        store: the child's open store (only read).
        parent: where filings go.
        state_path: the cursor file (:data:`FILING_STATE_NAME`).
        parent_url: the parent, for messages and the state file.
        prefix: the child prefix filed for.
        stats_path: the node's resolution counters file (None: none kept).
        batch: journal entries per filing.
        backoff: delays between attempts while the parent is down (its
            maximum while the parent refuses the filer's credentials).
        clock: seconds since the epoch (tests pass their own): which days'
            statistics are due, report and filing times, refusal logging.

    Raises:
        InvalidValue: the state file belongs to filing with another parent
            or for another prefix.
    """

    def __init__(
        self,
        store: Store,
        parent: Parent,
        state_path: Path,
        parent_url: str,
        prefix: str,
        *,
        stats_path: Path | None = None,
        batch: int = DEFAULT_BATCH,
        backoff: Backoff = Backoff(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.parent = parent
        self.state_path = state_path
        self.parent_url = parent_url
        self.prefix = prefix
        self.stats_path = stats_path
        self.batch = batch
        self.backoff = backoff
        self._clock = clock
        state = read_state(state_path) or {}
        for name, mine in (("parent", parent_url), ("prefix", prefix)):
            if state.get(name) not in (None, mine):
                raise InvalidValue(f"{state_path} is the state of filing with {state['parent']} for"
                                   f" {state.get('prefix')}, not {parent_url} for {prefix}; use a new folder")
        self.filed_seq: int = int(state.get("filed_seq", 0))
        self.statistics_day: str | None = state.get("statistics_day")
        self.last_seq: int | None = None
        self.last_filing: float | None = None
        self.failures = 0
        #: The parent's refusal of the filer's credentials, until a round succeeds.
        self.refused: str | None = None
        self._refusal_logged: tuple[str, float] | None = None  # message, when
        self._outage_logged = False
        self._skip_warned: str | None = None  # first day of the skipped statistics last warned about

    def _save(self) -> None:
        write_state(self.state_path, {"parent": self.parent_url, "prefix": self.prefix,
                                      "filed_seq": self.filed_seq, "statistics_day": self.statistics_day})

    async def _send(self, filing: dict[str, Any]) -> dict[str, Any]:
        return await self.parent.file(orjson.dumps(filing))

    async def file_once(self) -> int:
        """File the next batch of the journal; how many entries it covered.

        Raises:
            UpstreamError: the parent was unreachable or refused (the cursor stays).
        """
        entries = await self.store.journal(after=self.filed_seq, limit=self.batch)
        self.last_seq = await self.store.last_seq()
        if not entries:
            return 0
        under = self.prefix.upper() + "/"
        out = []
        current: dict[str, StoredRecord | None] = {}
        for entry in entries:
            if entry.op not in MASTER_DATA_OPS or not entry.handle.upper().startswith(under):
                continue
            item: dict[str, Any] = {"seq": entry.seq, "at_ms": entry.at_ms, "op": entry.op, "handle": entry.handle}
            if entry.op != Op.DELETE:
                key = Handle.from_text(entry.handle).key
                if key not in current:
                    current[key] = await self.store.get(key)
                item["types"], item["template"] = record_summary(current[key])
            out.append(item)
        through = entries[-1].seq
        reply = await self._send({"kind": "master-data", "child": self.prefix, "through": through,
                                  "last": max(self.last_seq, through), "entries": out})
        acknowledged = reply.get("acknowledged")
        if type(acknowledged) is not int or acknowledged < through:
            raise BadUpstreamReply(f"{self.parent_url} acknowledged {acknowledged!r}, not sequence {through}")
        self.filed_seq = through
        self.last_filing = self._clock()
        await asyncio.to_thread(self._save)  # after the acknowledgement: at least once
        return len(entries)

    async def catch_up(self) -> int:
        """File batches until the cursor reaches the journal's end; entries covered."""
        total = 0
        while count := await self.file_once():
            total += count
        return total

    def _report(self, day: str, registrations: dict[str, int], stats: ResolutionStats) -> dict[str, Any]:
        return {
            "kind": "statistics", "child": self.prefix, "day": day,
            "registrations": registrations,
            "resolution": stats.summary(day),
            "reportedAtMs": int(self._clock() * 1000),
        }

    def _resolution_stats(self) -> ResolutionStats:
        return ResolutionStats.load(self.stats_path) if self.stats_path is not None else ResolutionStats()

    async def statistics(self, day: str) -> dict[str, Any]:
        """The statistics report of UTC ``day`` (see
        :func:`registry.daily_registrations.registrations`).

        Raises:
            StorageError: the store failed.
            InvalidValue: the resolution counters' file is unreadable.
        """
        counts = await registrations(self.store, self.prefix, [day])
        return self._report(day, counts[day], self._resolution_stats())

    async def file_statistics(self, day: str | None = None) -> dict[str, Any]:
        """File the report of ``day`` (default: today so far); the report.
        Does not move :attr:`statistics_day`.

        Raises:
            UpstreamError: the parent could not be reached or refused.
            StorageError, InvalidValue: as :meth:`statistics`.
        """
        report = await self.statistics(day or day_of(self._clock()))
        await self._send(report)
        return report

    async def due_statistics_days(self) -> list[str]:
        """The UTC days whose reports are due, oldest first: from the day
        after :attr:`statistics_day` through yesterday. Before any was filed,
        from the day of the journal's first entry (yesterday for an empty
        journal). Never more than :data:`MAX_STATISTICS_BACKFILL_DAYS`: older
        days are left out, which is logged once as a warning."""
        yesterday = datetime.date.fromisoformat(day_of(self._clock())) - datetime.timedelta(days=1)
        oldest = yesterday - datetime.timedelta(days=MAX_STATISTICS_BACKFILL_DAYS - 1)
        if self.statistics_day is not None:
            first = datetime.date.fromisoformat(self.statistics_day) + datetime.timedelta(days=1)
        else:
            page = await self.store.journal(after=0, limit=1)
            first = datetime.date.fromisoformat(day_of_ms(page[0].at_ms)) if page else yesterday
        if first < oldest:
            skipped = (first.isoformat(), (oldest - datetime.timedelta(days=1)).isoformat())
            if self._skip_warned != skipped[0]:  # once, though the filing of the rest may fail and be retried
                self._skip_warned = skipped[0]
                log.warning("filing: statistics of %s through %s are not filed: the filer files at most the last %d"
                            " days (the node keeps resolution counters that long)", *skipped,
                            MAX_STATISTICS_BACKFILL_DAYS)
            first = oldest
        return days_from(first, yesterday)

    async def file_due_statistics(self) -> list[str]:
        """File the report of every due day (:meth:`due_statistics_days`),
        oldest first, saving :attr:`statistics_day` after each the parent
        acknowledged: a crash resumes at the next day, and no day is filed
        twice. The days filed.

        Raises:
            UpstreamError: the parent could not be reached or refused (the
                days filed before stay filed).
            StorageError, InvalidValue: as :meth:`statistics`.
        """
        days = await self.due_statistics_days()
        if not days:
            return []
        counts = await registrations(self.store, self.prefix, days)
        stats = self._resolution_stats()  # past days' counters no longer change
        for day in days:
            await self._send(self._report(day, counts[day], stats))
            self.statistics_day = day
            await asyncio.to_thread(self._save)
        return days

    def _log_refusal(self, exc: ParentRefused) -> None:
        """Log a refusal at ERROR when its message changed, or once per
        :data:`REFUSAL_LOG_SECONDS` while it lasts."""
        now = self._clock()
        if self._refusal_logged is not None:
            message, at = self._refusal_logged
            if message == exc.message and now - at < REFUSAL_LOG_SECONDS:
                return
        self._refusal_logged = (exc.message, now)
        log.error("filing: %s refused this filer's credentials: %s. An administrator of the parent must grant"
                  " %s filing (idnode filing grant --child-data <this node's data folder> --server %s); retrying"
                  " every %.0f s meanwhile", self.parent_url, exc.message, self.prefix, self.parent_url,
                  self.backoff.maximum)

    async def run(self, *, poll_seconds: float = DEFAULT_POLL_SECONDS) -> None:
        """Catch up and file due statistics, then keep going every
        ``poll_seconds``, until cancelled; while the parent is down, retry
        with :attr:`backoff`. While it refuses the filer's credentials
        (:class:`ParentRefused`), retry every ``backoff.maximum`` seconds:
        only an operator at the parent can end a refusal, and quick retries
        would not. No failure ends the loop."""
        while True:
            try:
                filed = await self.catch_up()
                await self.file_due_statistics()
            except ParentRefused as exc:
                self.failures += 1
                self.refused = exc.message
                self._outage_logged = False  # an outage after this is news again
                self._log_refusal(exc)
                await asyncio.sleep(self.backoff.maximum)
                continue
            except Exception as exc:  # the parent down or refusing a filing, the store failing, a bug
                self.failures += 1
                if not isinstance(exc, IdnodeError):
                    log.exception("filing: filing with %s failed; retrying with backoff", self.parent_url)
                elif not self._outage_logged:
                    self._outage_logged = True
                    log.warning("filing: cannot file with %s (%s); retrying with backoff", self.parent_url, exc.message)
                await asyncio.sleep(self.backoff.delay(self.failures))
                continue
            if filed:
                log.info("filing: filed %d entries with %s, up to sequence %d", filed, self.parent_url, self.filed_seq)
            if self.failures:
                log.warning("filing: filing with %s again after %d failed attempts", self.parent_url, self.failures)
                self.failures = 0
            self.refused, self._refusal_logged, self._outage_logged = None, None, False
            await asyncio.sleep(poll_seconds)

    def status(self) -> dict[str, Any]:
        """The cursor and the lag as this filer knows them; ``refused`` is
        the parent's refusal of the filer's credentials since the last
        successful round (None: none)."""
        return {
            "parent": self.parent_url, "prefix": self.prefix, "filedSeq": self.filed_seq, "lastSeq": self.last_seq,
            "lagEntries": None if self.last_seq is None else max(0, self.last_seq - self.filed_seq),
            "parentReachable": self.failures == 0 and self.last_filing is not None,
            "refused": self.refused,
            "statisticsDay": self.statistics_day,
        }
