"""A parent node's filing endpoints (备案): children file their identifier
master data and daily statistics here (:mod:`registry.filing` sends them).

- ``POST /api/filings``: a master-data batch or a daily statistics report
  (:func:`registry.filing_store.parse_filing`). Replies
  ``{"responseCode": 1, "acknowledged": N}``: every entry of the child up
  to N is stored (a replay changes nothing and gets the same answer).
- ``GET /api/filings?child=P[&handle=H][&after=N][&limit=M]``: what child P
  filed (about H), when the change happened (``at_ms``) and when it was
  filed (``filed_ms``), in sequence order; with ``&statistics`` its daily
  reports instead.
- ``GET /api/filings/lag[?child=P]``: per child the last filed sequence
  number, the child's own last, the lag in entries, the last filing time.

Who may file: the child node itself. It authenticates with HTTP Basic as an
identity the delegation record ``0.NA/<child>`` at this parent vouches for:
one of that record's own HS_SECKEY values (``300:0.NA/<child>``), or an
identity its HS_ADMIN names. When that record also holds an Ed25519
HS_PUBKEY (the child's node key, JWK ``{"kty": "OKP", "crv": "Ed25519"}``),
the body must carry a valid signature by that key in
``X-Idnode-Signature`` (base64). A filing for any other prefix than the
authenticated child's is refused with 403.

Reading filings and lag is an administrator's read of this node, as the
journal feed is (:func:`resolver.journal_api.check_feed_access`).
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import aiohttp
import orjson
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from idcore.errors import (
    AuthenticationFailed,
    BadUpstreamReply,
    IdnodeError,
    MalformedRequest,
    RequestError,
    ResponseCode,
    UpstreamError,
    UpstreamUnavailable,
)
from idcore import limits
from idcore.handle import check_prefix, prefix_handle, prefix_record_key
from idcore.pubkey import PublicKey
from idcore.rest_json import loads
from idcore.values import AdminPermission, ValueReference, ValueType, type_is
from registry import authz
from registry.authz import AdminSource
from registry.filing import REFUSAL_STATUSES, ParentRefused, sign
from registry.filing_store import FILINGS_NAME, MAX_QUERY_ROWS, FilingStore, StatisticsFiling, parse_filing
from registry.service import Registry
from resolver.credentials import request_identity
from resolver.http_common import (
    app_feature,
    JSON_CONTENT_TYPE,
    add_endpoint,
    api_endpoint,
    int_params,
    json_object_reply,
    read_body,
    require_content_type,
)
from resolver.journal_api import check_feed_access
from resolver.node_api import REGISTRY
from resolver.rest_client import client_session

FILINGS = web.AppKey("filings", FilingStore)

#: Header carrying the base64 Ed25519 signature of the request body.
SIGNATURE_HEADER = "X-Idnode-Signature"

#: What an identity named by the delegation's HS_ADMIN needs to file for
#: the child: the right to add handles under it.
FILING_PERMISSION = AdminPermission.ADD_HANDLE


class FilingRefused(RequestError):
    """An authenticated identity filing for a prefix it does not stand for."""

    response_code = ResponseCode.INVALID_ADMIN
    http_status = 403


def open_filing_store(data_dir: Path) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context keeping ``filings.sqlite3`` of ``data_dir`` open."""

    async def keep(app: web.Application) -> AsyncIterator[None]:
        async with FilingStore(data_dir / FILINGS_NAME) as store:
            app[FILINGS] = store
            yield

    return keep


def _store(request: web.Request) -> FilingStore:
    return app_feature(request, FILINGS, "this node keeps no filings")


def ed25519_keys(values: list) -> list[Ed25519PublicKey]:
    """The Ed25519 HS_PUBKEY values (JWK OKP/Ed25519) among ``values``."""
    keys = []
    for value in values:
        if type_is(value.type, ValueType.HS_PUBKEY) and isinstance(value.data, PublicKey):
            jwk = dict(value.data.jwk)
            if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519" and isinstance(jwk.get("x"), str):
                try:
                    keys.append(Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(jwk["x"] + "==")))
                except (ValueError, binascii.Error):
                    continue
    return keys


async def check_filer(request: web.Request, registry: Registry, child: str, body: bytes) -> ValueReference:
    """The authenticated child filing for ``child`` (see the module docstring).

    Raises:
        AuthenticationNeeded / AuthenticationFailed (401), FilingRefused (403).
    """
    identity = await request_identity(request, registry, required=True)
    assert identity is not None
    record = await registry.store.get(prefix_record_key(child))
    if record is None:
        raise FilingRefused(f"this node holds no delegation of {child}; only its children file here")
    if identity.handle.upper() != prefix_handle(child).to_text().upper():
        source = AdminSource(authz.record_admins(record), FILING_PERMISSION)
        record_name = prefix_handle(child).to_text()
        try:
            await authz.run_async(authz.check(identity, [source], what="file for it", handle=record_name), registry.store.get)
        except IdnodeError:
            raise FilingRefused(
                f"{identity.to_text()} may not file for {child}: it is neither {record_name} nor named by its HS_ADMIN"
            ) from None
    keys = ed25519_keys(record.values())
    if keys:
        try:
            signature = base64.b64decode(request.headers.get(SIGNATURE_HEADER, ""), validate=True)
        except (ValueError, binascii.Error):
            signature = b""
        for key in keys:
            try:
                key.verify(signature, body)
                break
            except InvalidSignature:
                continue
        else:
            raise AuthenticationFailed(f"the filing is not signed by the node key recorded in 0.NA/{child}")
    return identity


@api_endpoint
async def post_filing(request: web.Request) -> web.StreamResponse:
    registry, store = request.app[REGISTRY], _store(request)
    require_content_type(request, JSON_CONTENT_TYPE)
    body = await read_body(request, limits.MAX_RECORD_BODY_BYTES, limit_name="MAX_RECORD_BODY_BYTES")
    obj = loads(body, what="the filing")
    filing = parse_filing(obj)
    await check_filer(request, registry, filing.child, body)
    if isinstance(filing, StatisticsFiling):
        await store.file_statistics(filing)
        return json_object_reply({"responseCode": 1, "child": filing.child, "day": filing.day})
    acknowledged = await store.file_master_data(filing)
    return json_object_reply({"responseCode": 1, "child": filing.child, "acknowledged": acknowledged})


@api_endpoint
async def get_filings(request: web.Request) -> web.StreamResponse:
    registry, store = request.app[REGISTRY], _store(request)
    await check_feed_access(request, registry)
    query = request.query
    child = query.get("child")
    if child is None:
        raise MalformedRequest("name the child: GET /api/filings?child=PREFIX")
    check_prefix(child)
    if "statistics" in query:
        return json_object_reply({"responseCode": 1, "child": child, "statistics": await store.statistics(child)})
    after = (int_params(query, "after") or [0])[0]
    limit = (int_params(query, "limit") or [MAX_QUERY_ROWS])[0]
    if after < 0 or not 0 < limit <= MAX_QUERY_ROWS:
        raise MalformedRequest(f"after must be >= 0 and limit in 1..{MAX_QUERY_ROWS}")
    rows = await store.entries(child, handle=query.get("handle"), after=after, limit=limit)
    entries = [{**entry.to_json(), "filed_ms": filed_ms} for entry, filed_ms in rows]
    return json_object_reply({"responseCode": 1, "child": child, "entries": entries})


@api_endpoint
async def get_lag(request: web.Request) -> web.StreamResponse:
    registry, store = request.app[REGISTRY], _store(request)
    await check_feed_access(request, registry)
    child = request.query.get("child")
    if child is not None:
        check_prefix(child)
    return json_object_reply({"responseCode": 1, "children": await store.lag(child)})


def add_filing_routes(router: web.UrlDispatcher) -> None:
    """``/api/filings`` and ``/api/filings/lag`` (before the /api catch-all)."""
    add_endpoint(router, "/api/filings", GET=get_filings, POST=post_filing)
    add_endpoint(router, "/api/filings/lag", GET=get_lag)



#: Seconds to wait for the parent to store one filing (a batch is one
#: SQLite transaction there, well under a second).
FILING_TIMEOUT_SECONDS = 30.0


class HttpParent:
    """Delivers filings with ``POST /api/filings`` to the parent at
    ``base_url`` as ``identity``/``secret`` (HTTP Basic), each body signed
    by ``key``; use as an async context manager."""

    def __init__(self, base_url: str, identity: str, secret: str, key: Ed25519PrivateKey | None) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = key
        self._identity, self._secret = identity, secret
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HttpParent:
        self._session = client_session(
            aiohttp.ClientTimeout(total=FILING_TIMEOUT_SECONDS), identity=self._identity, secret=self._secret,
            headers={"Content-Type": "application/json"},
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def file(self, body: bytes) -> dict[str, Any]:
        assert self._session is not None, "use HttpParent as an async context manager"
        url = f"{self.base_url}/api/filings"
        headers = {}
        signature = sign(self._key, body)
        if signature is not None:
            headers[SIGNATURE_HEADER] = signature
        try:
            async with self._session.post(url, data=body, headers=headers) as reply:
                status, answer = reply.status, await reply.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise UpstreamUnavailable(f"cannot reach {self.base_url}: {exc or type(exc).__name__}") from None
        try:
            obj = orjson.loads(answer)
        except orjson.JSONDecodeError:
            obj = None
        message = obj.get("message") if isinstance(obj, dict) else None
        if status in REFUSAL_STATUSES:  # checked first: a proxy's refusal page is not JSON
            raise ParentRefused(f"{url} refused the filer's credentials (HTTP {status}): {message}",
                                parent_status=status)
        if obj is None:
            raise BadUpstreamReply(f"{url} answered HTTP {status} with a body that is not JSON")
        if status != 200 or not isinstance(obj, dict):
            raise UpstreamError(f"{url} refused the filing (HTTP {status}): {message}")
        return obj
