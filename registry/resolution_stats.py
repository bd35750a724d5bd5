"""Counters of a node's resolution traffic, per UTC day, for the daily
statistics it files with its parent (:mod:`registry.filing`).

For each day: requests, successful answers, latency min/sum/max (ms), and
the busiest second (requests in it, and when). :class:`ResolutionStats` is
pure and cheap (a few integer updates per request); the node's GET handler
feeds it, and the node process saves it to :data:`STATS_NAME` in its data
folder every :data:`FLUSH_SECONDS` and on shutdown, where the filer (a
separate process) reads it. A SIGKILL loses at most the last interval's
counts: these are statistics, not acknowledged data.
"""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import Any, Callable

from registry.mirror import read_state, write_state

#: The counters' file in the node's data folder.
STATS_NAME = "resolution_stats.json"

#: Seconds between saves of the counters: the most a killed node forgets.
FLUSH_SECONDS = 5.0

#: Days of counters kept: a filer down for longer files only these.
MAX_DAYS_KEPT = 31


def day_of(seconds: float) -> str:
    """The UTC day (``YYYY-MM-DD``) of ``seconds`` since the epoch."""
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).date().isoformat()


def _empty_day() -> dict[str, Any]:
    return {"requests": 0, "successes": 0, "latency_min_ms": None, "latency_sum_ms": 0.0,
            "latency_max_ms": None, "peak_rps": 0, "peak_at": None}


class ResolutionStats:
    """Per-day resolution counters.

    Args:
        days: counters loaded from a saved file (``to_json``'s shape).
        clock: seconds since the epoch (tests pass their own).
    """

    def __init__(self, days: dict[str, dict[str, Any]] | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.days: dict[str, dict[str, Any]] = dict(days or {})
        self._clock = clock
        self._second = -1
        self._in_second = 0
        self.dirty = False

    def record(self, success: bool, seconds: float) -> None:
        """Count one resolution request that took ``seconds``."""
        now = self._clock()
        day = self.days.get(day_of(now))
        if day is None:
            day = self.days[day_of(now)] = _empty_day()
            for old in sorted(self.days)[:-MAX_DAYS_KEPT]:
                del self.days[old]
        day["requests"] += 1
        if success:
            day["successes"] += 1
        ms = seconds * 1000.0
        day["latency_sum_ms"] += ms
        day["latency_min_ms"] = ms if day["latency_min_ms"] is None else min(day["latency_min_ms"], ms)
        day["latency_max_ms"] = ms if day["latency_max_ms"] is None else max(day["latency_max_ms"], ms)
        second = int(now)
        if second != self._second:
            self._second, self._in_second = second, 0
        self._in_second += 1
        if self._in_second > day["peak_rps"]:
            day["peak_rps"], day["peak_at"] = self._in_second, second
        self.dirty = True

    def summary(self, day: str) -> dict[str, Any]:
        """The filed form of ``day``'s counters (zeros for a quiet day)."""
        counts = self.days.get(day) or _empty_day()
        requests = counts["requests"]
        peak_at = counts["peak_at"]
        return {
            "requests": requests,
            "successes": counts["successes"],
            "latencyMs": {
                "min": _round(counts["latency_min_ms"]),
                "avg": _round(counts["latency_sum_ms"] / requests) if requests else None,
                "max": _round(counts["latency_max_ms"]),
            },
            "peakPerSecond": {
                "requests": counts["peak_rps"],
                "at": None if peak_at is None else datetime.datetime.fromtimestamp(peak_at, datetime.UTC).isoformat(),
            },
        }

    def to_json(self) -> dict[str, Any]:
        return {"days": self.days}

    @classmethod
    def load(cls, path: Path, *, clock: Callable[[], float] = time.time) -> ResolutionStats:
        """The counters saved at ``path`` (none if there is no file).

        Raises:
            InvalidValue: the file is unreadable or not JSON.
        """
        state = read_state(path) or {}
        return cls(state.get("days") or {}, clock=clock)

    def save(self, path: Path) -> None:
        """Write the counters durably (whole or not at all)."""
        self.dirty = False
        write_state(path, self.to_json())


def _round(ms: float | None) -> float | None:
    return None if ms is None else round(ms, 3)
