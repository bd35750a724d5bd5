"""The authoritative node's aiohttp application.

:func:`build_node_app` serves an already open :class:`Registry` (tests
use one over the memory store); :func:`node_app` opens the node's SQLite
store itself and closes it on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import AsyncIterator, Callable

from aiohttp import web

from idcore import limits
from idcore.settings import DEFAULT_RESOLVER_URL
from registry.resolution_stats import FLUSH_SECONDS, STATS_NAME, ResolutionStats
from registry.service import Registry
from registry.sqlite_store import SqliteStore
from registry.escrow import Escrow
from resolver import batch_api, filing_api, journal_api, node_api
from resolver import backup_api, escrow_api
from resolver.background import background
from resolver.http_common import add_endpoint
from resolver.node_api import REGISTRY, STATS
from resolver.qr_api import add_qr_routes, node_record_check
from resolver import prefix_admin_api

log = logging.getLogger(__name__)


def build_node_app(
    registry: Registry, *, resolver_url: str = DEFAULT_RESOLVER_URL, escrow: Escrow | None = None
) -> web.Application:
    """An application serving ``registry`` (opened and closed by the caller).

    ``resolver_url`` is the public resolver the URL form of the node's QR
    codes points to; ``escrow`` keeps children's backups (none: refused).
    """
    app = web.Application(client_max_size=limits.MAX_RECORD_BODY_BYTES)
    app[REGISTRY] = registry
    prefix_admin_api.use_memory_store(app)
    if escrow is not None:
        escrow_api.enable_escrow(app, escrow)
    app[STATS] = ResolutionStats()
    add_node_routes(app, resolver_url)
    return app


def add_node_routes(
    app: web.Application,
    resolver_url: str = DEFAULT_RESOLVER_URL,
    *,
    extra_api: Callable[[web.UrlDispatcher], None] | None = None,
) -> None:
    """The node's routes; ``extra_api`` adds routes of its own (a mirror's
    status and metrics) before the catch-alls answering unknown endpoints
    and proxy-form handles."""
    router = app.router
    add_endpoint(router, "/api/handles", GET=node_api.list_handles)
    add_endpoint(router, "/api/handles/{handle:.*}", GET=node_api.get_handle, PUT=node_api.put_handle,
                 DELETE=node_api.delete_handle)
    add_endpoint(router, "/api/prefixes", GET=node_api.list_prefixes)
    add_endpoint(router, "/api/batch", POST=batch_api.post_batch)
    add_endpoint(router, "/api/journal", GET=journal_api.get_journal)
    prefix_admin_api.add_prefix_admin_routes(router)
    filing_api.add_filing_routes(router)
    escrow_api.add_escrow_routes(router)
    backup_api.add_backup_routes(router)
    if extra_api is not None:
        extra_api(router)
    router.add_route("*", "/api/{tail:.*}", node_api.unknown_api)
    router.add_get("/", node_api.node_index)
    add_qr_routes(app, check=node_record_check, resolver_url=resolver_url)
    add_endpoint(router, "/{handle:.+}", GET=node_api.proxy)


def node_app(
    database: Path, *, auto_admin: bool = True, resolver_url: str = DEFAULT_RESOLVER_URL
) -> web.Application:
    """An application that opens the SQLite store at ``database`` on start-up
    and closes it, after the last request, on shutdown; ``resolver_url`` as
    for :func:`build_node_app`.

    Raises:
        InvalidValue: ``resolver_url`` is not an http(s) base URL.
    """
    app = web.Application(client_max_size=limits.MAX_RECORD_BODY_BYTES)

    async def open_registry(app: web.Application) -> AsyncIterator[None]:
        async with SqliteStore(database) as store:
            registry = Registry(store, auto_admin=auto_admin)
            await registry.open()
            app[REGISTRY] = registry
            yield

    app.cleanup_ctx.append(open_registry)
    app.cleanup_ctx.append(prefix_admin_api.open_prefix_admin(database.parent))
    escrow_api.enable_escrow(app, Escrow(Path(database).parent))
    backup_api.enable_backups(app, Path(database))
    app.cleanup_ctx.append(filing_api.open_filing_store(database.parent))
    app.cleanup_ctx.append(_keep_stats(database.parent / STATS_NAME))
    add_node_routes(app, resolver_url)
    return app


def _keep_stats(path: Path) -> Callable[[web.Application], AsyncIterator[None]]:
    """Load the resolution counters, save them every FLUSH_SECONDS and on
    shutdown (the filer, another process, reads the file)."""

    async def keep(app: web.Application) -> AsyncIterator[None]:
        stats = app[STATS] = ResolutionStats.load(path)

        async def flush() -> None:
            while True:
                await asyncio.sleep(FLUSH_SECONDS)
                if stats.dirty:
                    try:
                        await asyncio.to_thread(stats.save, path)
                    except OSError as exc:
                        log.warning("cannot save resolution statistics to %s: %s", path, exc)

        try:
            async with background(flush(), "resolution statistics"):
                yield
        finally:
            if stats.dirty:
                stats.save(path)

    return keep
