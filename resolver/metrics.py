"""The recursive node's Prometheus metrics.

Each resolver app owns its own :class:`prometheus_client.CollectorRegistry`
(the demo runs several apps in one process, and tests many). The two counts
every request touches (requests by endpoint, answers by source) are plain
integers exported by a collector at scrape time: a prometheus_client counter
takes a lock per increment, which cost a measurable share of a cache hit,
and the event loop is one thread anyway. The rest are ordinary metrics.
"""

from __future__ import annotations

from typing import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

#: Where an answer came from.
SOURCES = ("memory", "redis", "upstream", "stale")

#: Front-end endpoints counted in requests.
ENDPOINTS = ("api", "proxy", "qr", "scan")

#: Upstream request latency buckets, seconds: loopback hops take a
#: millisecond, WAN hops tens of milliseconds, the timeout one second.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ResolverMetrics:
    """Counters, histograms and gauges of one recursive node.

    Attributes:
        requests: requests by endpoint (``requests["api"] += 1``).
        answers: answers by source (``answers["memory"] += 1``).
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = dict.fromkeys(ENDPOINTS, 0)
        self.answers = dict.fromkeys(SOURCES, 0)
        self.registry.register(_TallyCollector(self))
        self._errors = Counter(
            "idnode_resolver_errors", "Error replies, by Handle response code", ["code"], registry=self.registry
        )
        self.upstream_latency = Histogram(
            "idnode_resolver_upstream_request_seconds",
            "Latency of requests to upstream nodes (replies and failures)",
            registry=self.registry,
            buckets=LATENCY_BUCKETS,
        )
        self.upstream_failures = Counter(
            "idnode_resolver_upstream_failures", "Upstream requests that got no usable reply", registry=self.registry
        )
        self.coalesced = Counter(
            "idnode_resolver_coalesced_lookups",
            "Lookups that waited for another lookup's upstream request",
            registry=self.registry,
        )
        self.prefetches = Counter(
            "idnode_resolver_prefetches", "Background refreshes of entries near expiry", registry=self.registry
        )
        self._error_children: dict[int, Counter] = {}

    def error(self, response_code: int) -> None:
        child = self._error_children.get(response_code)
        if child is None:
            child = self._error_children[response_code] = self._errors.labels(str(response_code))
        child.inc()

    def gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A gauge read at scrape time."""
        Gauge(name, documentation, registry=self.registry).set_function(read)

    def exposition(self) -> bytes:
        """All metrics in the Prometheus text format."""
        return generate_latest(self.registry)


class _TallyCollector:
    """Exports :attr:`ResolverMetrics.requests` and ``answers`` as counters."""

    def __init__(self, metrics: ResolverMetrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterator[Metric]:
        return self.collect()

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("idnode_resolver_requests", "Requests received, by endpoint", labels=["endpoint"])
        for endpoint, count in self._metrics.requests.items():
            requests.add_metric([endpoint], count)
        yield requests
        answers = CounterMetricFamily(
            "idnode_resolver_answers", "Answers given, by where they came from", labels=["source"]
        )
        for source, count in self._metrics.answers.items():
            answers.add_metric([source], count)
        yield answers
