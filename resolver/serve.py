"""Running a node's (or a recursive node's) HTTP server as a process: garbage-collector tuning and
the aiohttp runner.

A node allocates many short-lived containers per request or batch line
(JSON objects, values) while holding many long-lived ones (its record cache,
the loaded code). CPython's default collector then spends much of the time
scanning: parsing a batch line took three times as long here with the
default thresholds as without collection. The node therefore freezes what
start-up allocated (never scanned again) and collects the young generation
less often; reference counting still frees nearly everything at once, the
collector is only needed for cycles.
"""

from __future__ import annotations

import gc
import ipaddress
import logging
import ssl
from pathlib import Path

from aiohttp import web

from idcore.settings import DEFAULT_RESOLVER_URL
from resolver.node_app import node_app
from resolver.recursive_app import recursive_app
from resolver.resolver_settings import ResolverSettings

log = logging.getLogger(__name__)

#: Allocations between young-generation collections (CPython's default: 700).
GC_YOUNG_THRESHOLD = 50_000

#: Young collections per middle one, middle per old one (defaults: 10, 10).
GC_OLDER_THRESHOLDS = (20, 20)


def tune_garbage_collector() -> None:
    """Freeze everything allocated so far and raise the collection thresholds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *GC_OLDER_THRESHOLDS)


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server TLS context from a PEM certificate chain and key.

    Raises:
        OSError, ssl.SSLError: unreadable or mismatched files.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def run_node(
    database: Path,
    *,
    host: str,
    port: int,
    auto_admin: bool = True,
    tls: ssl.SSLContext | None = None,
    resolver_url: str = DEFAULT_RESOLVER_URL,
) -> None:
    """Serve the node whose store is ``database`` until interrupted (SIGINT,
    SIGTERM), then close the store after the last request. With ``tls``
    the node speaks HTTPS; its QR codes point phones to ``resolver_url``.

    Raises:
        OSError: the address cannot be bound.
    """
    if tls is None and not _loopback(host):
        log.warning(
            "serving plain HTTP on %s: secrets sent with HTTP Basic cross the network in the clear;"
            " set tls_cert and tls_key to serve HTTPS", host
        )
    app = node_app(database, auto_admin=auto_admin, resolver_url=resolver_url)
    tune_garbage_collector()
    web.run_app(app, host=host, port=port, ssl_context=tls, access_log=None, print=None)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def run_resolver(settings: ResolverSettings) -> None:
    """Serve a recursive node until interrupted, then close its cache and
    upstream connections after the last request.

    Raises:
        OSError: the address cannot be bound.
    """
    app = recursive_app(settings)
    tune_garbage_collector()
    web.run_app(app, host=settings.host, port=settings.port, access_log=None, print=None)
