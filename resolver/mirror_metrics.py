"""A mirror's lag as Prometheus metrics (``GET /metrics`` on a mirror node).

The figures are read from :meth:`registry.mirror.Mirror.status` when
scraped, so they cost nothing between scrapes and are never out of date.
Each mirror app has its own registry (tests run several in one process).
"""

from __future__ import annotations

from typing import Any, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric

from registry.mirror import Mirror

#: (metric name, help, key of Mirror.status()) of every gauge exported.
_GAUGES = (
    ("idnode_mirror_applied_sequence", "Last journal sequence number of the primary applied here", "appliedSeq"),
    ("idnode_mirror_primary_sequence", "Primary's last journal sequence number when last read", "primarySeq"),
    ("idnode_mirror_lag_entries", "Journal entries of the primary not yet applied here", "lagEntries"),
    ("idnode_mirror_lag_seconds", "Seconds since the primary's journal was last read successfully", "lagSeconds"),
)


class _MirrorCollector:
    def __init__(self, mirror: Mirror) -> None:
        self._mirror = mirror

    def collect(self) -> Iterator[Metric]:
        status: dict[str, Any] = self._mirror.status()
        for name, help_text, key in _GAUGES:
            gauge = GaugeMetricFamily(name, help_text)
            if status[key] is not None:  # not known before the first successful read
                gauge.add_metric([], float(status[key]))
            yield gauge
        yield GaugeMetricFamily("idnode_mirror_primary_up", "1 while the primary's journal can be read, else 0",
                                value=1.0 if status["primaryReachable"] else 0.0)


def mirror_metrics(mirror: Mirror) -> CollectorRegistry:
    """A registry exporting ``mirror``'s lag gauges."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_MirrorCollector(mirror))
    return registry
