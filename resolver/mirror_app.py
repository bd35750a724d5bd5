"""A mirror node's aiohttp application: the node's read API over the
mirror's registry, writes refused, ``GET /api/mirror`` for its lag, and the
pull loop (:class:`registry.mirror.Mirror`) reading the primary's journal
over HTTP (:class:`HttpFeed`).
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import AsyncIterator

import aiohttp
import orjson
from prometheus_client import generate_latest
from aiohttp import web

from idcore import limits
from idcore.errors import BadUpstreamReply, UpstreamError, UpstreamUnavailable
from idcore.settings import DATABASE_NAME, DEFAULT_RESOLVER_URL
from registry.mirror import (
    DEFAULT_BATCH,
    DEFAULT_POLL_SECONDS,
    STATE_NAME,
    JournalPage,
    Mirror,
    MirrorReadOnly,
)
from registry.service import Registry
from registry.sqlite_store import SqliteStore
from resolver.background import background
from resolver.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from resolver.mirror_metrics import mirror_metrics
from resolver.http_common import Handler, add_endpoint, api_endpoint, error_reply, json_object_reply
from resolver.node_api import REGISTRY
from resolver.node_app import add_node_routes
from resolver.rest_client import client_session

log = logging.getLogger(__name__)

MIRROR = web.AppKey("mirror", Mirror)

#: Seconds to wait for one journal page: a full page is a few megabytes of
#: reads at the primary, which loopback serves in well under a second.
FEED_TIMEOUT_SECONDS = 30.0

#: Methods a mirror answers; everything else would change data.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class HttpFeed:
    """Reads ``GET /api/journal`` of the primary at ``base_url``; use as an
    async context manager. ``identity``/``secret`` are sent as HTTP Basic
    (not needed when the primary is on the same host); ``tls`` is the
    context an ``https://`` primary's certificate is checked with (None:
    the system's trust store)."""

    def __init__(
        self,
        base_url: str,
        *,
        identity: str | None = None,
        secret: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._identity, self._secret, self._tls = identity, secret, tls
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HttpFeed:
        timeout = aiohttp.ClientTimeout(total=FEED_TIMEOUT_SECONDS)
        self._session = client_session(timeout, identity=self._identity, secret=self._secret, tls=self._tls)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def fetch(self, after: int, limit: int) -> JournalPage:
        assert self._session is not None, "use HttpFeed as an async context manager"
        url = f"{self.base_url}/api/journal"
        try:
            async with self._session.get(url, params={"after": str(after), "limit": str(limit)}) as reply:
                body = await reply.read()
                status = reply.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise UpstreamUnavailable(f"cannot reach {self.base_url}: {exc or type(exc).__name__}") from None
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise BadUpstreamReply(f"{url} answered HTTP {status} with a body that is not JSON") from None
        if status != 200:
            message = obj.get("message") if isinstance(obj, dict) else None
            raise UpstreamError(f"{url} refused (HTTP {status}): {message}")
        return JournalPage.from_json(obj)


@web.middleware
async def refuse_writes(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every request that would change data with 403, naming the primary."""
    if request.method not in READ_METHODS:
        primary = request.app[MIRROR].primary
        return error_reply(MirrorReadOnly(f"this node is a mirror of {primary}; send writes to the primary"))
    return await handler(request)


@api_endpoint
async def mirror_status(request: web.Request) -> web.StreamResponse:
    """``GET /api/mirror``: primary, applied and primary sequence numbers, lag."""
    return json_object_reply({"responseCode": 1, **request.app[MIRROR].status()}, pretty=True)


async def mirror_metrics_page(request: web.Request) -> web.StreamResponse:
    """``GET /metrics``: the mirror's lag as Prometheus gauges."""
    body = generate_latest(mirror_metrics(request.app[MIRROR]))
    return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})


def _add_mirror_api(router: web.UrlDispatcher) -> None:
    add_endpoint(router, "/api/mirror", GET=mirror_status)
    add_endpoint(router, "/metrics", GET=mirror_metrics_page)


def _mirror_application() -> web.Application:
    return web.Application(client_max_size=limits.MAX_RECORD_BODY_BYTES, middlewares=[refuse_writes])


def build_mirror_app(mirror: Mirror, *, resolver_url: str = DEFAULT_RESOLVER_URL) -> web.Application:
    """An application serving ``mirror``'s registry read-only; the caller
    runs the pull loop (tests drive :meth:`Mirror.pull_once` themselves)."""
    app = _mirror_application()
    app[REGISTRY] = mirror.registry
    app[MIRROR] = mirror
    add_node_routes(app, resolver_url, extra_api=_add_mirror_api)
    return app


def mirror_app(
    data_dir: Path,
    primary: str,
    *,
    identity: str | None = None,
    secret: str | None = None,
    tls: ssl.SSLContext | None = None,
    batch: int = DEFAULT_BATCH,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
    resolver_url: str = DEFAULT_RESOLVER_URL,
) -> web.Application:
    """A mirror of ``primary`` over the data folder ``data_dir`` (created,
    with an empty database, if needed): opens its store on start-up, runs
    the pull loop while serving, and stops both on shutdown. ``identity``,
    ``secret`` and ``tls`` are as for :class:`HttpFeed`.

    Raises (on start-up):
        InvalidValue: ``data_dir`` is a mirror of another primary.
    """
    app = _mirror_application()

    async def run_mirror(app: web.Application) -> AsyncIterator[None]:
        data_dir.mkdir(parents=True, exist_ok=True)
        async with SqliteStore(data_dir / DATABASE_NAME) as store, HttpFeed(
            primary, identity=identity, secret=secret, tls=tls
        ) as feed:
            registry = Registry(store)
            await registry.open()
            mirror = Mirror(registry, feed, data_dir / STATE_NAME, primary, batch=batch)
            app[REGISTRY] = registry
            app[MIRROR] = mirror
            async with background(mirror.run(poll_seconds=poll_seconds), "mirror pull loop"):
                yield

    app.cleanup_ctx.append(run_mirror)
    add_node_routes(app, resolver_url, extra_api=_add_mirror_api)
    return app
