"""Sending a walk's queries: HTTP GETs to upstream nodes, and their health.

:class:`HttpTransport` keeps one pool of keep-alive connections for every
upstream node and translates every way a request can fail into one
:class:`UpstreamFailure` carrying a short reason, at this boundary only.
:class:`UpstreamHealth` remembers which servers failed lately, so a walk
tries them last and ``/healthz`` can show them.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import yarl

from idcore import limits

#: Connections kept open to each upstream server: enough for a burst of
#: concurrent cold lookups without a handshake each.
CONNECTIONS_PER_SERVER = 32

#: Seconds an idle upstream connection is kept for reuse.
KEEPALIVE_SECONDS = 30

#: Seconds a server that failed is tried only after the others.
SERVER_BACKOFF_SECONDS = 5.0


class UpstreamFailure(Exception):
    """A request got no usable reply; ``str()`` is the reason."""


class HttpTransport:
    """GETs over one aiohttp session. Use as an async context manager."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HttpTransport:
        connector = aiohttp.TCPConnector(
            limit=0, limit_per_host=CONNECTIONS_PER_SERVER, keepalive_timeout=KEEPALIVE_SECONDS
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"Accept": "application/json", "User-Agent": "idnode-resolver"},
            auto_decompress=True,
        )
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def fetch(self, url: str, timeout: float) -> tuple[int, bytes]:
        """``GET url`` within ``timeout`` seconds: the HTTP status and body.

        Raises:
            UpstreamFailure: refused, timed out, broke off, or a body larger
                than MAX_UPSTREAM_REPLY_BYTES.
        """
        assert self._session is not None, "use HttpTransport as an async context manager"
        try:
            # No redirects: a node answers itself, and following one would let
            # any upstream point the resolver at any address (and be believed).
            limit = aiohttp.ClientTimeout(total=timeout)
            # encoded: the walk's URLs are; re-parsing would drop escaped dot segments
            target = yarl.URL(url, encoded=True)
            async with self._session.get(target, timeout=limit, allow_redirects=False) as reply:
                if (reply.content_length or 0) > limits.MAX_UPSTREAM_REPLY_BYTES:
                    raise UpstreamFailure(f"reply of {reply.content_length} bytes exceeds MAX_UPSTREAM_REPLY_BYTES")
                body = bytearray()
                async for chunk in reply.content.iter_any():
                    body += chunk
                    if len(body) > limits.MAX_UPSTREAM_REPLY_BYTES:
                        raise UpstreamFailure("reply exceeds MAX_UPSTREAM_REPLY_BYTES")
                return reply.status, bytes(body)
        except asyncio.TimeoutError:
            raise UpstreamFailure(f"no reply within {timeout:.3g} s") from None
        except aiohttp.ClientConnectorError as exc:
            raise UpstreamFailure(f"cannot connect: {exc.os_error.strerror or exc}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamFailure(f"{type(exc).__name__}: {exc}") from None


@dataclass(slots=True)
class ServerState:
    """What a resolver saw of one upstream server lately."""

    consecutive_failures: int = 0
    last_error: str = ""
    last_failure_at: float = 0.0
    last_success_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        state = "up" if self.consecutive_failures == 0 else "down"
        out: dict[str, Any] = {"state": state, "consecutive_failures": self.consecutive_failures}
        if self.last_error:
            out["last_error"] = self.last_error
        return out


class UpstreamHealth:
    """Recent outcomes per upstream server (keyed by base URL)."""

    def __init__(self) -> None:
        self.servers: dict[str, ServerState] = {}

    def succeeded(self, server: str) -> None:
        state = self.servers.setdefault(server, ServerState())
        state.consecutive_failures = 0
        state.last_success_at = time.time()

    def failed(self, server: str, reason: str) -> None:
        state = self.servers.setdefault(server, ServerState())
        state.consecutive_failures += 1
        state.last_error = reason
        state.last_failure_at = time.monotonic()

    def backing_off(self) -> frozenset[str]:
        """Servers that failed within SERVER_BACKOFF_SECONDS: tried last."""
        now = time.monotonic()
        return frozenset(
            server
            for server, state in self.servers.items()
            if state.consecutive_failures and now - state.last_failure_at < SERVER_BACKOFF_SECONDS
        )

    def to_json(self) -> dict[str, Any]:
        return {server: state.to_json() for server, state in sorted(self.servers.items())}
