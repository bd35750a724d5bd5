"""Registrations per UTC day under a prefix, read from a node's journal:
how many handles were created that day, and how many there were at its end
(for the daily statistics a child files with its parent, :mod:`registry.filing`).

Only the journal entries from the earliest asked day's start on are read:
where that day begins is found by a binary search over single-entry reads,
which is exact because journal times only grow with the sequence number.
"""

from __future__ import annotations

import datetime
from collections import Counter
from typing import Iterable

from registry.resolution_stats import day_of
from registry.store import Op, Store

#: Journal entries read per page when counting.
COUNT_PAGE = 5000


def utc_day_bounds(day: str) -> tuple[int, int]:
    """First and first-excluded millisecond of UTC ``day``."""
    start = datetime.datetime.fromisoformat(day).replace(tzinfo=datetime.UTC)
    return int(start.timestamp() * 1000), int((start + datetime.timedelta(days=1)).timestamp() * 1000)


def day_of_ms(at_ms: int) -> str:
    """The UTC day of ``at_ms`` (milliseconds since the epoch); exact at day
    boundaries, which fall on whole seconds."""
    return day_of(at_ms // 1000)


def days_from(first: datetime.date, last: datetime.date) -> list[str]:
    """Every UTC day from ``first`` through ``last`` (none if ``first`` is later)."""
    return [(first + datetime.timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


async def cursor_at(store: Store, at_ms: int, last: int) -> int:
    """The journal position where time ``at_ms`` begins, within ``last``:
    the highest sequence number up to ``last`` of an entry before ``at_ms``
    (0 if none), so that ``journal(after=...)`` starts at the first entry at
    or after ``at_ms``. About log2(``last``) single-entry reads; sequence
    numbers may have gaps."""
    low, high = 0, last
    while low < high:
        mid = (low + high) // 2
        page = await store.journal(after=mid, limit=1)
        if not page or page[0].seq > last or page[0].at_ms >= at_ms:
            high = mid
        else:
            low = mid + 1
    return low


async def registrations(store: Store, prefix: str, days: Iterable[str]) -> dict[str, dict[str, int]]:
    """For each UTC day of ``days``: ``{"day": handles created under
    ``prefix`` that day, "total": handles under it at the day's end}``.

    The total is the count now less the net change since the day's end:
    creates minus deletes in the journal entries after it, read up to the
    position the count was taken at (:meth:`~registry.store.Store.count_handles_at`). That is exact because the writers
    journal ``create`` only for a handle that did not exist, ``delete`` only
    for one that did, and ``update`` for neither (:mod:`registry.writes`,
    :mod:`registry.mirror`); a restore from a differential backup journals
    its new handles as updates, so the totals of days before such a restore
    are too high by those.

    Raises:
        StorageError: the store failed.
    """
    wanted = sorted(set(days))
    if not wanted:
        return {}
    count, last = await store.count_handles_at(prefix)
    after = await cursor_at(store, utc_day_bounds(wanted[0])[0], last)
    under = prefix.upper() + "/"
    created: Counter[str] = Counter()
    net: Counter[str] = Counter()
    while after < last and (page := await store.journal(after=after, limit=COUNT_PAGE)):
        for entry in page:
            if entry.seq > last:
                break
            if entry.op in (Op.CREATE, Op.DELETE) and entry.handle.upper().startswith(under):
                day = day_of_ms(entry.at_ms)
                created[day] += entry.op == Op.CREATE
                net[day] += 1 if entry.op == Op.CREATE else -1
        after = page[-1].seq
    return {day: {"day": created[day], "total": count - sum(n for d, n in net.items() if d > day)} for day in wanted}
