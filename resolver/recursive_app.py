"""The recursive node's aiohttp application.

:func:`recursive_app` opens the cache tiers (Redis only when a URL is
configured), the upstream connection pool and the resolver on start-up,
and closes them after the last request on shutdown.
"""

from __future__ import annotations

from typing import AsyncIterator

from aiohttp import web

from cache.layered import LayeredCache
from cache.memory import MemoryCache
from resolver import recursive_api
from resolver.http_common import add_endpoint
from resolver.metrics import ResolverMetrics
from resolver.node_api import unknown_api
from resolver.qr_api import add_qr_routes, resolver_record_check
from resolver.recursive import RecursiveResolver
from resolver.recursive_api import METRICS, RESOLVER, SETTINGS
from resolver.resolver_settings import ResolverSettings
from resolver.scan_api import add_scan_routes
from resolver.upstream import HttpTransport


def _shared_tier(settings: ResolverSettings):  # type: ignore[no-untyped-def]
    if settings.redis_url is None:
        return None
    from cache.redis_tier import RedisCache  # only a node configured with Redis needs the client

    return RedisCache(settings.redis_url)


def recursive_app(settings: ResolverSettings) -> web.Application:
    """An application resolving any handle from ``settings.bootstrap``."""
    app = web.Application()
    app[SETTINGS] = settings
    metrics = ResolverMetrics()
    app[METRICS] = metrics

    async def resources(app: web.Application) -> AsyncIterator[None]:
        local = MemoryCache(max_entries=settings.memory_max_entries, max_bytes=settings.memory_max_bytes)
        shared = _shared_tier(settings)
        cache = LayeredCache(local, shared, stale_window=settings.policy.stale_window)
        metrics.gauge("idnode_resolver_cache_entries", "Entries in the in-process cache tier", lambda: len(local))
        metrics.gauge("idnode_resolver_cache_bytes", "Bytes held by the in-process cache tier", lambda: local.bytes)
        if shared is not None:
            metrics.gauge(
                "idnode_resolver_redis_up", "1 while the Redis tier answers", lambda: float(not cache.degraded)
            )
        try:
            async with HttpTransport() as transport:
                resolver = RecursiveResolver(
                    settings.bootstrap,
                    cache,
                    transport,
                    policy=settings.policy,
                    metrics=metrics,
                    request_timeout=settings.request_timeout,
                    time_budget=settings.time_budget,
                )
                app[RESOLVER] = resolver
                try:
                    yield
                finally:
                    await resolver.close()
        finally:
            await cache.close()

    app.cleanup_ctx.append(resources)
    router = app.router
    add_endpoint(router, "/api/handles/{handle:.*}", GET=recursive_api.get_handle)
    add_endpoint(router, "/api/cache/flush", POST=recursive_api.flush)
    add_scan_routes(app)
    router.add_route("*", "/api/{tail:.*}", unknown_api)
    router.add_get("/metrics", recursive_api.metrics)
    router.add_get("/healthz", recursive_api.healthz)
    router.add_get("/resolve", recursive_api.resolve_form)
    router.add_get("/", recursive_api.index)
    add_qr_routes(app, check=resolver_record_check, resolver_url=settings.public_url)
    add_endpoint(router, "/{handle:.+}", GET=recursive_api.proxy)
    return app
