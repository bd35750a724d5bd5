"""The authoritative node's Handle.Net REST API (v9 shapes).

- ``GET /api/handles/{handle}``: the record (``type=``/``index=`` filters,
  ``pretty``), a prefix referral (303, HTTP 300) or an error.
- ``PUT /api/handles/{handle}``: create or replace (``overwrite``), add or
  replace some values (``index=``), or mint a suffix (``mintNewSuffix``).
- ``DELETE /api/handles/{handle}``: the handle, or some values (``index=``).
- ``GET /api/handles?prefix=P&page=&pageSize=``: list a prefix's handles.
- ``GET /api/prefixes``: the prefixes homed here.
- ``GET /{handle}``: the proxy form, a redirect to the record's URL.
- ``GET /qr/{handle}.png`` and ``.svg``: its QR code (:mod:`resolver.qr_api`).
"""

from __future__ import annotations

import html
import time
from typing import Any, NamedTuple

import orjson
from aiohttp import web

from idcore import limits
from idcore.errors import InvalidHandle, InvalidValue, MalformedRequest, ResponseCode, http_status_for
from idcore.handle import Handle, check_prefix
from idcore.rest_json import dumps, filter_values_json, values_from_put_body
from idcore.values import ValueType, type_is
from registry.resolution_stats import ResolutionStats
from registry.service import Registry, Resolution
from resolver.credentials import request_identity
from resolver.http_common import (
    api_endpoint,
    flag,
    int_params,
    json_object_reply,
    json_reply,
    read_json,
    start_stream,
    strict_flag,
)

REGISTRY = web.AppKey("registry", Registry)
#: Resolution counters (daily statistics filed with the parent); optional.
STATS = web.AppKey("resolution_stats", ResolutionStats)


def path_handle(text: str) -> Handle:
    """The handle named by a request path.

    Raises:
        InvalidHandle: empty or malformed.
    """
    if not text:
        raise InvalidHandle("Empty handle invalid")
    return Handle.from_text(text)


class ReadOptions(NamedTuple):
    """What a read asks for besides the handle: filters and layout."""

    types: tuple[str, ...]
    indexes: tuple[int, ...]
    pretty: bool

    @classmethod
    def of(cls, request: web.Request) -> ReadOptions:
        """Parse ``type=``, ``index=`` and ``pretty`` before any lookup, so a
        malformed parameter is reported as such.

        Raises:
            MalformedRequest: an ``index=`` that is not a whole number.
        """
        if not request.query_string:
            return _PLAIN_READ  # most reads: no parameters to parse
        query = request.query
        return cls(tuple(query.getall("type", ())), tuple(int_params(query, "index")), flag(query, "pretty"))


_PLAIN_READ = ReadOptions((), (), False)


def record_reply(asked: str, resolution: Resolution, options: ReadOptions) -> web.Response:
    """The REST reply for a resolution, filtered as ``options`` ask.

    ``asked`` is echoed as the response's handle, as the Handle server does.
    """
    if options is _PLAIN_READ and resolution.public_record is not None and resolution.values_json != b"[]":
        return json_reply(resolution.public_record.public_answer(asked))
    asked_json = dumps(asked)
    if resolution.response_code == 303:
        # referralHandle names the delegated prefix (as Handle's service
        # referral response does), so resolvers cache the sites per prefix.
        body = (
            b'{"responseCode":303,"values":' + resolution.values_json + b',"handle":' + asked_json
            + b',"referralHandle":' + dumps(resolution.referral) + b"}"
        )
        return _maybe_pretty(body, options.pretty, http_status_for(ResponseCode.PREFIX_REFERRAL))
    values_json = resolution.values_json
    if options.types or options.indexes:
        values_json = filter_values_json(values_json, options.types, options.indexes)
    if values_json == b"[]":
        body = b'{"responseCode":200,"values":[],"handle":' + asked_json + b"}"
        return _maybe_pretty(body, options.pretty, http_status_for(ResponseCode.VALUES_NOT_FOUND, resolution=True))
    body = b'{"responseCode":1,"handle":' + asked_json + b',"values":' + values_json + b"}"
    return _maybe_pretty(body, options.pretty, 200)


def _maybe_pretty(body: bytes, pretty: bool, status: int) -> web.Response:
    if pretty:
        body = dumps(orjson.loads(body), pretty=True)
    return json_reply(body, status)


@api_endpoint
async def get_handle(request: web.Request) -> web.StreamResponse:
    stats = request.app.get(STATS)
    if stats is None:
        return await _get_handle(request)
    started, reply = time.perf_counter(), None
    try:
        reply = await _get_handle(request)
        return reply
    finally:  # an error (not found, refused) counts as an unsuccessful request
        stats.record(reply is not None and reply.status == 200, time.perf_counter() - started)


async def _get_handle(request: web.Request) -> web.StreamResponse:
    registry = request.app[REGISTRY]
    text = request.match_info["handle"]
    if not text and "prefix" in request.query:
        return await list_handles(request)  # GET /api/handles/?prefix=P lists, as on Handle servers
    handle = path_handle(text)
    options = ReadOptions.of(request)
    identity = None
    if "Authorization" in request.headers:  # most reads are anonymous
        identity = await request_identity(request, registry, required=False)
    return record_reply(text, await registry.resolve(handle, identity=identity), options)


@api_endpoint
async def put_handle(request: web.Request) -> web.StreamResponse:
    registry = request.app[REGISTRY]
    query = request.query
    text = request.match_info["handle"]
    values, body_handle = values_from_put_body(await read_json(request, what="the record's values as JSON"))
    identity = await request_identity(request, registry, required=True)
    if strict_flag(query, "mintNewSuffix"):
        if not text:
            raise InvalidHandle("Empty handle invalid: name the prefix to mint under")
        result = await registry.mint(text, values, identity)
        return json_object_reply({"responseCode": 1, "handle": result.handle}, 201)
    handle = path_handle(text)
    if body_handle is not None and path_handle(body_handle).key != handle.key:
        raise MalformedRequest(f"Mismatched handle in PUT request: the path names {text}, the body {body_handle}")
    overwrite = strict_flag(query, "overwrite") if "overwrite" in query else True
    index_params = query.getall("index", ())
    if index_params:
        if not values:
            raise InvalidValue("Value list was empty", handle=text)
        if "various" not in index_params and set(int_params(query, "index")) != {v.index for v in values}:
            raise MalformedRequest("Mismatched indexes in PUT request: index= must list the body's indexes")
        result = await registry.add_values(handle, values, identity, overwrite=overwrite)
        status = 200 if result.status == "replaced" else 201
    else:
        result = await registry.put(handle, values, identity, overwrite=overwrite)
        status = 201 if result.created else 200
    return json_object_reply({"responseCode": 1, "handle": text}, status)


@api_endpoint
async def delete_handle(request: web.Request) -> web.StreamResponse:
    registry = request.app[REGISTRY]
    text = request.match_info["handle"]
    handle = path_handle(text)
    identity = await request_identity(request, registry, required=True)
    indexes = int_params(request.query, "index")
    if indexes:
        await registry.remove_values(handle, indexes, identity)
    else:
        await registry.delete(handle, identity)
    return json_object_reply({"responseCode": 1, "handle": text})


@api_endpoint
async def list_handles(request: web.Request) -> web.StreamResponse:
    """``GET /api/handles?prefix=P``: every handle, or one page of them."""
    registry = request.app[REGISTRY]
    query = request.query
    asked = query.get("prefix")
    if asked is None:
        raise InvalidHandle("Empty handle invalid: name a handle, or list with ?prefix=")
    prefix = asked.split("/", 1)[1] if "/" in asked else asked
    check_prefix(prefix)
    identity = await request_identity(request, registry, required=True)
    await registry.check_list_permission(prefix, identity)
    total = await registry.store.count_handles(prefix)
    head: dict[str, Any] = {"responseCode": 1, "prefix": asked, "totalCount": str(total)}
    if "page" in query and "pageSize" in query:  # as on Handle servers: paged only when both are given
        page = _non_negative(query, "page")
        page_size = _non_negative(query, "pageSize")
        if page_size > limits.MAX_PAGE_SIZE:
            raise MalformedRequest(f"pageSize {page_size} is above the limit of {limits.MAX_PAGE_SIZE}")
        offset = page * page_size
        rows = await registry.store.list_handles(prefix, offset=offset, limit=page_size) if offset < total else []
        head.update(page=page, pageSize=page_size, handles=[handle for _, handle in rows])
        return json_object_reply(head, pretty=flag(query, "pretty"))
    return await _stream_all_handles(request, registry, prefix, head)


async def _stream_all_handles(
    request: web.Request, registry: Registry, prefix: str, head: dict[str, Any]
) -> web.StreamResponse:
    # An unpaged listing returns everything, as Handle servers do; streaming
    # it keeps memory flat for prefixes of millions of handles.
    response = web.StreamResponse(headers={"Content-Type": "application/json; charset=utf-8"})
    await start_stream(request, response)
    await response.write(dumps(head)[:-1] + b',"handles":[')
    first = True
    async for batch in registry.store.iter_handles(prefix, batch=limits.DEFAULT_PAGE_SIZE):
        chunk = b",".join(dumps(h) for h in batch)
        await response.write(chunk if first else b"," + chunk)
        first = False
    await response.write(b"]}")
    await response.write_eof()
    return response


def _non_negative(query: Any, name: str) -> int:
    value = int_params(query, name)[0]
    if not 0 <= value <= _MAX_PAGING_NUMBER:
        raise MalformedRequest(f"parameter {name}={value} must be in 0..{_MAX_PAGING_NUMBER}")
    return value


# Page numbers and sizes are whole numbers of at most this; their product
# stays a valid SQLite integer.
_MAX_PAGING_NUMBER = 2**31 - 1


@api_endpoint
async def list_prefixes(request: web.Request) -> web.StreamResponse:
    registry = request.app[REGISTRY]
    prefixes = ["0.NA/" + p for p in registry.homed_prefixes]
    body = {"responseCode": 1, "totalCount": str(len(prefixes)), "prefixes": prefixes}
    return json_object_reply(body, pretty=flag(request.query, "pretty"))


@api_endpoint
async def node_index(request: web.Request) -> web.StreamResponse:
    """``GET /``: what this node is and where its API lives."""
    registry = request.app[REGISTRY]
    body = {
        "responseCode": 1,
        "node": "idnode",
        "prefixes": list(registry.homed_prefixes),
        "api": {"handles": "/api/handles/{handle}", "list": "/api/handles?prefix={prefix}",
                "prefixes": "/api/prefixes", "batch": "/api/batch", "journal": "/api/journal?after={seq}",
                "backups": "/api/backups", "backup": "/api/backups/{name}",
                "backupVerify": "/api/backups/{name}/verify", "backupRestore": "/api/backups/restore",
                "backupEscrow": "/api/backups/escrow",
                "prefixApplications": "/api/prefix-applications", "filings": "/api/filings?child={prefix}",
                "filingLag": "/api/filings/lag", "escrow": "/api/escrow",
                "escrowRecipient": "/api/escrow/recipient", "takeover": "/api/escrow/{child}/takeover",
                "proxy": "/{handle}",
                "qr": "/qr/{handle}.png | .svg"},
    }
    return json_object_reply(body, pretty=True)


@api_endpoint
async def proxy(request: web.Request) -> web.StreamResponse:
    """``GET /{handle}``: 302 to the record's first URL value.

    With ``?noredirect``, or when the record has no URL, the record itself.
    """
    registry = request.app[REGISTRY]
    text = request.match_info["handle"]
    handle = path_handle(text)
    options = ReadOptions.of(request)
    resolution = await registry.resolve(handle)
    if resolution.response_code == 1 and "noredirect" not in request.query:
        url = first_url(resolution.values_json)
        if url is not None:
            return redirect_reply(url)
    return record_reply(text, resolution, options)


def first_url(values_json: bytes) -> str | None:
    """The first URL value of a record: exact type ``URL`` first, then subtypes
    (``URL.mobile``), in record order, as the Handle proxy chooses. A value
    with control characters cannot go into a Location header, and one of a
    scheme other than REDIRECT_SCHEMES (``javascript:``, ``data:``) must not
    be sent to a browser as one: both are passed over."""
    values = orjson.loads(values_json)
    for exact in (True, False):
        for value in values:
            value_type, data = value["type"], value["data"]
            matches = value_type.upper() == ValueType.URL if exact else type_is(value_type, ValueType.URL)
            if matches and data.get("format") == "string" and _redirectable(data["value"]):
                return data["value"]
    return None


#: URL schemes the proxy form redirects to.
REDIRECT_SCHEMES = ("http://", "https://", "ftp://")


def _redirectable(url: str) -> bool:
    return url.isprintable() and url[:8].lower().startswith(REDIRECT_SCHEMES)


def redirect_reply(url: str) -> web.Response:
    """A 302 to ``url`` with the small HTML body the Handle proxy sends."""
    link = html.escape(url)
    body = f'\n<HTML><HEAD><TITLE>Handle Redirect</TITLE></HEAD>\n<BODY><A HREF="{link}">{link}</A></BODY></HTML>'
    return web.Response(status=302, text=body, content_type="text/html", headers={"Location": url})


async def unknown_api(request: web.Request) -> web.StreamResponse:
    body = {"responseCode": 4, "message": f"Unknown HTTP API endpoint {request.method} {request.path}"}
    return json_reply(dumps(body), 404)
