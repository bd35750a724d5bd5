"""A client of the Handle.Net REST API as idnode nodes serve it.

Used by the ``idnode`` command line; any Handle REST server will do. Replies
with a Handle error code become :class:`NodeReplyError` carrying that code;
a node that cannot be reached becomes :class:`NodeUnreachable`.
"""

from __future__ import annotations

import base64
import ssl
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable
from urllib.parse import quote

import aiohttp
import orjson
import yarl

from idcore.errors import IdnodeError, UpstreamError
from idcore.handle import url_path

#: Seconds a single request may take before the client gives up.
REQUEST_TIMEOUT_SECONDS = 30



class NodeReplyError(IdnodeError):
    """The node answered with a Handle error code."""

    def __init__(self, response_code: int, http_status: int, message: str, handle: str | None = None) -> None:
        super().__init__(message, handle=handle)
        self.response_code = response_code
        self.http_status = http_status


class NodeUnreachable(UpstreamError):
    """The node did not answer (refused, timed out, connection lost)."""


def handle_path(handle: str) -> str:
    """``handle`` percent-encoded for a URL path (dot segments escaped)."""
    return url_path(handle)


def basic_auth_header(identity: str, secret: str) -> str:
    """An ``Authorization: Basic`` value, the identity percent-encoded as
    Handle clients send it (its ``:`` must not end the user name)."""
    user = quote(identity, safe="/")
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode("ascii")


def client_session(
    timeout: aiohttp.ClientTimeout,
    *,
    identity: str | None = None,
    secret: str | None = None,
    tls: ssl.SSLContext | None = None,
    headers: dict[str, str] | None = None,
) -> aiohttp.ClientSession:
    """A session to talk to idnode nodes: HTTP Basic as ``identity`` when a
    ``secret`` is given, ``tls`` checking an ``https://`` node's certificate
    (None: the system's trust store), and ``headers`` on every request."""
    all_headers = dict(headers or {})
    if identity is not None and secret is not None:
        all_headers["Authorization"] = basic_auth_header(identity, secret)
    connector = aiohttp.TCPConnector(ssl=tls) if tls is not None else None
    return aiohttp.ClientSession(timeout=timeout, headers=all_headers, connector=connector)


class NodeClient:
    """Talks to one node's REST API. Use as an async context manager."""

    def __init__(
        self, base_url: str, *, identity: str | None = None, secret: str | None = None, tls: ssl.SSLContext | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._identity, self._secret, self._tls = identity, secret, tls
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> NodeClient:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=REQUEST_TIMEOUT_SECONDS, sock_read=REQUEST_TIMEOUT_SECONDS)
        self._session = client_session(timeout, identity=self._identity, secret=self._secret, tls=self._tls)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._session is not None:
            await self._session.close()

    async def _request(self, method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        assert self._session is not None, "use NodeClient as an async context manager"
        try:
            # encoded: the path is; parsed again, escaped dot segments would be resolved
            url = yarl.URL(self.base_url + path, encoded=True)
            async with self._session.request(method, url, **kwargs) as reply:
                body = await reply.read()
                status = reply.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise NodeUnreachable(f"cannot reach {self.base_url}: {exc or type(exc).__name__}") from exc
        return status, _reply_json(status, body)

    async def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """Any other endpoint of the node's API (``path`` from ``/api/``;
        ``kwargs`` as for aiohttp: ``json=``, ``params=``): its reply.

        Raises:
            NodeReplyError: a reply whose responseCode is not 1.
            NodeUnreachable, UpstreamError: as every request.
        """
        return _checked(*await self._request(method, path, **kwargs))

    async def get(self, handle: str, *, types: Iterable[str] = (), indexes: Iterable[int] = ()) -> dict[str, Any]:
        """The record of ``handle`` (or its referral) as the node returns it."""
        params = [("type", t) for t in types] + [("index", str(i)) for i in indexes]
        status, body = await self._request("GET", "/api/handles/" + handle_path(handle), params=params)
        return _checked(status, body, ok=(1, 200, 303))

    async def put(
        self, handle: str, values: list[dict[str, Any]], *, overwrite: bool = True, mint: bool = False
    ) -> tuple[int, dict[str, Any]]:
        """Create or replace ``handle`` (or mint under it). Returns HTTP status and body."""
        params = {"overwrite": "true" if overwrite else "false"}
        if mint:
            params["mintNewSuffix"] = "true"
        status, body = await self._put_values(handle, values, params)
        return status, _checked(status, body)

    async def add_values(self, handle: str, values: list[dict[str, Any]], *, overwrite: bool = False) -> dict[str, Any]:
        """Add ``values`` to ``handle`` (``PUT ...?index=``); with ``overwrite``
        replace those already at their indexes."""
        params = [("index", str(v["index"])) for v in values] + [("overwrite", "true" if overwrite else "false")]
        status, body = await self._put_values(handle, values, params)
        return _checked(status, body)

    async def _put_values(self, handle: str, values: list[dict[str, Any]], params: Any) -> tuple[int, dict[str, Any]]:
        return await self._request(
            "PUT",
            "/api/handles/" + handle_path(handle),
            params=params,
            data=orjson.dumps({"values": values}),
            headers={"Content-Type": "application/json"},
        )

    async def delete(self, handle: str, *, indexes: Iterable[int] = ()) -> dict[str, Any]:
        params = [("index", str(i)) for i in indexes]
        status, body = await self._request("DELETE", "/api/handles/" + handle_path(handle), params=params)
        return _checked(status, body)

    async def list_handles(self, prefix: str, *, page: int | None = None, page_size: int | None = None) -> dict[str, Any]:
        params: dict[str, str] = {"prefix": prefix}
        if page is not None:
            params["page"] = str(page)
        if page_size is not None:
            params["pageSize"] = str(page_size)
        status, body = await self._request("GET", "/api/handles", params=params)
        return _checked(status, body)

    async def batch(
        self, lines: AsyncIterator[bytes], on_result: Callable[[dict[str, Any]], Awaitable[None] | None]
    ) -> None:
        """Stream NDJSON ``lines`` to ``POST /api/batch``; call ``on_result``
        with each result line as it arrives (while lines are still sent)."""
        assert self._session is not None, "use NodeClient as an async context manager"
        try:
            async with self._session.post(
                self.base_url + "/api/batch", data=lines, headers={"Content-Type": "application/x-ndjson"}
            ) as reply:
                if reply.status != 200:
                    _checked(reply.status, _reply_json(reply.status, await reply.read()))
                async for raw in reply.content:
                    if raw.strip():
                        outcome = on_result(orjson.loads(raw))
                        if outcome is not None:
                            await outcome
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise NodeUnreachable(f"batch to {self.base_url} broke off: {exc or type(exc).__name__}") from exc


def _reply_json(status: int, body: bytes) -> dict[str, Any]:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise UpstreamError(f"node answered HTTP {status} with a body that is not JSON: {body[:200]!r}") from None
    if not isinstance(parsed, dict) or "responseCode" not in parsed:
        raise UpstreamError(f"node answered HTTP {status} without a Handle responseCode")
    return parsed


def _checked(status: int, body: dict[str, Any], ok: tuple[int, ...] = (1,)) -> dict[str, Any]:
    code = body["responseCode"]
    if code in ok:
        return body
    raise NodeReplyError(code, status, body.get("message") or f"response code {code}", body.get("handle"))
