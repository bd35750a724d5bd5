"""Fixtures for the recursive resolver's tests: a real hierarchy of nodes on
loopback, resolvers in front of it, and honest counts of upstream traffic.

Upstream traffic is counted in two places: at the nodes (:class:`NodeRequests`
wraps each node's ``Registry.resolve``, so only requests that really arrived
count) and at the resolver's side (:class:`CountingTransport` records every
request it tried to send, including those to a node that is down).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from contextlib import AsyncExitStack
from typing import Any, Awaitable, Callable

import pytest
from aiohttp import web

from cache.layered import LayeredCache
from cache.memory import MemoryCache
from cache.policy import CachePolicy
from idcore import limits
from idcore.handle import Handle, prefix_handle
from idcore.rest_json import values_from_json
from idcore.values import ALL_ADMIN_PERMISSIONS, AdminRef, HandleValue, ReservedIndex, ValueType
from registry.node_setup import SITE_INDEX, site_for
from resolver.hierarchy import LocalHierarchy, LocalNode, sample_handle
from resolver.metrics import ResolverMetrics
from resolver.recursive import RecursiveResolver
from resolver.recursive_api import METRICS
from resolver.recursive_app import recursive_app
from resolver.resolver_settings import ResolverSettings, site_from_urls
from resolver.upstream import HttpTransport
from tests.cache.conftest import redis_server, redis_url  # noqa: F401  (the real redis-server fixtures)

TOP, SECONDARY, ENTERPRISE = "88", "88.118", "88.118.2"

#: Sample products registered at the enterprise node of every hierarchy.
SAMPLE_COUNT = 20

#: Per upstream request and per resolution, for resolvers built here: loopback
#: nodes answer in milliseconds, and a node that is down refuses at once.
REQUEST_TIMEOUT_SECONDS = 1.0
TIME_BUDGET_SECONDS = 5.0


def sample(number: int) -> str:
    """The ``number``-th sample product at the enterprise node."""
    return sample_handle(ENTERPRISE, number)


class FakeClock:
    """Wall-clock seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class NodeRequests:
    """The resolutions each watched node served, in order, as
    ``(node label, handle asked)``; a node can also be slowed down."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._monkeypatch = monkeypatch
        self.asked: list[tuple[str, str]] = []
        #: seconds each node (by label) waits before answering
        self.delay: dict[str, float] = {}

    def watch(self, node: LocalNode, label: str | None = None) -> None:
        label = label or node.prefix
        registry = node.registry
        resolve = registry.resolve

        async def counted(handle: Handle, **kwargs: Any) -> Any:
            self.asked.append((label, handle.to_text()))
            if self.delay.get(label):
                await asyncio.sleep(self.delay[label])
            return await resolve(handle, **kwargs)

        self._monkeypatch.setattr(registry, "resolve", counted)

    def per_node(self) -> dict[str, int]:
        return dict(Counter(label for label, _ in self.asked))

    def count(self, label: str, handle: str | None = None) -> int:
        return sum(1 for node, asked in self.asked if node == label and handle in (None, asked))

    def clear(self) -> None:
        self.asked.clear()


class CountingTransport(HttpTransport):
    """An :class:`HttpTransport` that records every URL it was asked to
    fetch, whether or not the server answered."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    async def fetch(self, url: str, timeout: float) -> tuple[int, bytes]:
        self.urls.append(url)
        return await super().fetch(url, timeout)

    def to(self, node: LocalNode) -> int:
        """How many requests went (or were tried) to ``node``."""
        return sum(1 for url in self.urls if url.startswith(node.url + "/"))

    def servers(self) -> list[str]:
        """The base URL of each request, in order."""
        return [url.split("/api/", 1)[0] for url in self.urls]


async def take_down(node: LocalNode) -> None:
    """Stop ``node`` for every client (its port and its open connections)."""
    await node.stop()
    await asyncio.sleep(0.01)  # let clients see the connections close


async def put_record(node: LocalNode, handle: str, values: list[dict[str, Any]]) -> None:
    """Create or replace ``handle`` at ``node`` as its admin (REST JSON values)."""
    await node.registry.put(Handle.from_text(handle), values_from_json(values), node.admin)


def text_value(index: int, kind: str, text: str, ttl: int = limits.DEFAULT_TTL_SECONDS) -> dict[str, Any]:
    return {"index": index, "type": kind, "data": {"format": "string", "value": text}, "ttl": ttl}


async def delegate_to(
    parent: LocalNode, prefix: str, child: LocalNode, *, ttl: int = limits.DEFAULT_TTL_SECONDS
) -> None:
    """(Re-)file ``prefix`` with ``parent`` as served by ``child``, with a
    site value of ``ttl`` seconds (as :meth:`LocalHierarchy.delegate` does)."""
    values = [
        HandleValue(SITE_INDEX, ValueType.HS_SITE, site_for(child.host, child.port), ttl=ttl),
        HandleValue(
            ReservedIndex.ADMIN,
            ValueType.HS_ADMIN,
            AdminRef(parent.admin.handle, parent.admin.index, ALL_ADMIN_PERMISSIONS),
        ),
    ]
    await parent.registry.put(prefix_handle(prefix), values, parent.admin)


def metric(app: web.Application, name: str, **labels: str) -> float:
    """One sample of a resolver app's Prometheus metrics (0 when absent)."""
    return app[METRICS].registry.get_sample_value(name, labels) or 0.0


def upstream_requests(app: web.Application) -> float:
    """Requests a resolver app sent (or tried to send) upstream so far."""
    return metric(app, "idnode_resolver_upstream_request_seconds_count")


@pytest.fixture
async def hierarchy():
    """Top-level, secondary and enterprise nodes in memory on loopback, with
    SAMPLE_COUNT sample products at the enterprise node."""
    async with LocalHierarchy() as nodes:
        await nodes.register_samples(SAMPLE_COUNT)
        yield nodes


@pytest.fixture
def node_requests(hierarchy, monkeypatch) -> NodeRequests:
    """Counts the resolutions every node of ``hierarchy`` serves."""
    requests = NodeRequests(monkeypatch)
    for node in hierarchy.nodes.values():
        requests.watch(node)
    return requests


@pytest.fixture
def resolver_settings(hierarchy) -> Callable[..., ResolverSettings]:
    """Builds :class:`ResolverSettings` bootstrapped at ``hierarchy.top``."""

    def build(**overrides: Any) -> ResolverSettings:
        options: dict[str, Any] = {
            "bootstrap": (site_from_urls([hierarchy.top.url]),),
            "port": 0,
            "request_timeout": REQUEST_TIMEOUT_SECONDS,
            "time_budget": TIME_BUDGET_SECONDS,
        }
        options.update(overrides)
        return ResolverSettings(**options)

    return build


@pytest.fixture
def make_resolver_client(aiohttp_client, resolver_settings) -> Callable[..., Awaitable[Any]]:
    """Starts a recursive_app on loopback with settings overrides and returns
    its test client (``client.app`` is the application)."""

    async def make(**overrides: Any) -> Any:
        return await aiohttp_client(recursive_app(resolver_settings(**overrides)))

    return make


@pytest.fixture
async def resolver_client(make_resolver_client):
    """A recursive node with default settings, bootstrapped at the top node."""
    return await make_resolver_client()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def make_direct_resolver(hierarchy, clock):
    """Builds a :class:`RecursiveResolver` over a :class:`CountingTransport`
    (``resolver.transport``) and an in-process tier, both on ``clock``."""
    async with AsyncExitStack() as stack:

        async def make(policy: CachePolicy | None = None) -> RecursiveResolver:
            policy = policy or CachePolicy()
            transport = await stack.enter_async_context(CountingTransport())
            cache = LayeredCache(MemoryCache(clock=clock), None, stale_window=policy.stale_window, clock=clock)
            resolver = RecursiveResolver(
                (site_from_urls([hierarchy.top.url]),),
                cache,
                transport,
                policy=policy,
                metrics=ResolverMetrics(),
                request_timeout=REQUEST_TIMEOUT_SECONDS,
                time_budget=TIME_BUDGET_SECONDS,
                clock=clock,
            )
            stack.push_async_callback(resolver.close)
            return resolver

        yield make


@pytest.fixture
async def serve_resolver(resolver_settings):
    """Serves a recursive_app on a real loopback port (for subprocess
    clients); returns its base URL and application."""
    async with AsyncExitStack() as stack:

        async def serve(**overrides: Any) -> tuple[str, web.Application]:
            app = recursive_app(resolver_settings(**overrides))
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            return f"http://127.0.0.1:{port}", app

        yield serve
