"""HTTP front end of the recursive node.

- ``GET /api/handles/{handle}``: any handle, Handle.Net REST JSON as a node
  serves it (``type=``/``index=`` filters, ``pretty``); ``auth=true`` skips
  the cache and asks the authoritative node; ``trace=true`` does that too
  and adds every hop of the walk to the reply. An answer served from an
  expired entry because no upstream answered carries ``"stale": true`` and a
  ``Warning: 110`` header. An answer a parent node gave from its escrow copy
  of a node that is down carries ``"escrow": true``, as the parent's reply
  did. ``X-Idnode-Cache`` says where the answer came from.
- ``GET /{handle}``: the proxy form: 302 to the first URL value, with
  ``Cache-Control``/``Expires`` from the TTL; ``?noredirect``, or a browser
  (``Accept: text/html``) asking for a record without a URL, gets the
  record's HTML page (JSON for other clients).
- ``GET /resolve?handle=TEXT``: any input form (``hdl:``, resolver URL,
  scanner text), normalised, redirected to the proxy form.
- ``POST /api/cache/flush?handle=H`` or ``?prefix=P``: forget cached entries.
- ``POST /api/scan`` (:mod:`resolver.scan_api`): whatever a scanner read,
  as text or a picture, normalised and resolved.
- ``GET /qr/{handle}.png`` and ``.svg`` (:mod:`resolver.qr_api`).
- ``GET /metrics`` (Prometheus text), ``GET /healthz`` (JSON).
"""

from __future__ import annotations

import functools
import ipaddress
import secrets
import time
from email.utils import formatdate
from typing import Any

import orjson
import yarl
from aiohttp import web

from cache.entry import CacheEntry, EntryKind
from idcore.errors import (
    AuthenticationFailed,
    AuthenticationNeeded,
    HandleNotFound,
    IdnodeError,
    MalformedRequest,
    ResponseCode,
    http_status_for,
)
from idcore.handle import Handle, check_prefix, parse, url_path
from idcore.rest_json import dumps, filter_values_json
from resolver.http_common import (
    Handler,
    api_endpoint,
    error_reply,
    flag,
    json_object_reply,
    json_reply,
)
from resolver.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from resolver.metrics import ResolverMetrics
from resolver.node_api import ReadOptions, first_url, path_handle, redirect_reply
from resolver.record_page import json_link, render_index_page, render_record_page
from resolver.recursive import RecursiveResolver, Result
from resolver.resolver_settings import ResolverSettings
from resolver.walk import Hop

RESOLVER = web.AppKey("resolver", RecursiveResolver)
METRICS = web.AppKey("metrics", ResolverMetrics)
SETTINGS = web.AppKey("settings", ResolverSettings)

#: Ready-made reply bodies kept per cache entry: the first spelling asked
#: (nearly always the only one); other spellings are built per request. The
#: in-process tier's byte bound counts one (CacheEntry.size).
MAX_MEMO_BODIES = 1

#: Request path texts whose handle key is remembered (see :func:`_key_of`):
#: a scanner fleet asks for far fewer distinct spellings than this at once.
HOT_PATH_TEXTS = 65536

_JSON = "application/json; charset=utf-8"
_MEMORY_HIT_HEADERS = {"Content-Type": _JSON, "X-Idnode-Cache": "memory"}
_STALE_WARNING = '110 - "Response is Stale"'


def counted(handler: Handler) -> Handler:
    """Count error replies by response code (inside :func:`api_endpoint`)."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except IdnodeError as exc:
            request.app[METRICS].error(exc.response_code)
            raise

    return wrapped


async def lookup(request: web.Request, handle: Handle, *, authoritative: bool = False, trace: bool = False) -> Result:
    """Resolve ``handle`` (a fresh in-process entry first), counting the
    answer's source. The entry is ANSWER or NOT_FOUND.

    Raises:
        UpstreamError: no answer could be had (see RecursiveResolver.resolve).
    """
    resolver = request.app[RESOLVER]
    if not (authoritative or trace):
        entry = resolver.fresh_hit(handle.key)
        if entry is not None:
            request.app[METRICS].answers["memory"] += 1
            return Result(entry, "memory")
    result = await resolver.resolve(handle, authoritative=authoritative, trace=trace)
    request.app[METRICS].answers[result.source] += 1
    return result


def _answer_body(asked: str, entry: CacheEntry) -> bytes:
    """The plain REST body of an ANSWER entry for the spelling ``asked``,
    built once and kept in the entry's memo (the escrow marker with it, so a
    hit costs no more for an escrow answer)."""
    body = entry.memo.get(asked)
    if body is None:
        body = b'{"responseCode":1,"handle":' + dumps(asked) + b',"values":' + entry.values_json
        body += b',"escrow":true}' if entry.escrow else b"}"
        if len(entry.memo) < MAX_MEMO_BODIES:
            entry.memo[asked] = body
    return body


def _not_found(asked: str) -> HandleNotFound:
    return HandleNotFound("Handle Not Found", handle=asked)


def _trace_json(hops: tuple[Hop, ...]) -> list[dict[str, Any]]:
    return [
        {"server": h.server, "level": h.level or "(bootstrap)", "outcome": h.outcome, "ms": round(h.milliseconds, 3)}
        for h in hops
    ]


# --- the REST API ----------------------------------------------------------------


@functools.lru_cache(maxsize=HOT_PATH_TEXTS)
def _key_of(text: str) -> str:
    """The handle key of a request path's text (a text valid once is valid
    for good, so parsing is remembered: it costs more than the rest of a hit).

    Raises:
        InvalidHandle: not a handle (not remembered).
    """
    return path_handle(text).key


async def get_handle(request: web.Request) -> web.StreamResponse:
    """``GET /api/handles/{handle}``. A fresh in-process answer to a plain
    read is sent from here, a path that cannot fail; everything else goes
    through :func:`_get_handle` and its error handling."""
    if not request.query_string:
        text = request.match_info["handle"]
        try:
            key = _key_of(text)
        except IdnodeError:
            key = None  # _get_handle answers with the error
        if key is not None:
            resolver = request.app[RESOLVER]
            entry = resolver.fresh_hit(key)
            if entry is not None and entry.kind is EntryKind.ANSWER:
                counts = resolver.metrics
                counts.requests["api"] += 1
                counts.answers["memory"] += 1
                return web.Response(body=_answer_body(text, entry), headers=_MEMORY_HIT_HEADERS)
    return await _get_handle(request)


@api_endpoint
@counted
async def _get_handle(request: web.Request) -> web.StreamResponse:
    request.app[METRICS].requests["api"] += 1
    text = request.match_info["handle"]
    handle = path_handle(text)
    if not request.query_string:
        result = await lookup(request, handle)
        entry = result.entry
        if entry.kind is EntryKind.ANSWER and result.source != "stale":
            return web.Response(
                body=_answer_body(text, entry), headers={"Content-Type": _JSON, "X-Idnode-Cache": result.source}
            )
        return _reply(request, text, result, ReadOptions.of(request), trace=False)
    query = request.query
    trace = flag(query, "trace")
    options = ReadOptions.of(request)
    try:
        result = await lookup(request, handle, authoritative=flag(query, "auth"), trace=trace)
    except IdnodeError as exc:
        if not trace:
            raise
        request.app[METRICS].error(exc.response_code)
        body = {**exc.to_json(), "trace": _trace_json(exc.details.get("hops", ()))}
        return json_object_reply(body, exc.status, pretty=options.pretty)
    return _reply(request, text, result, options, trace=trace)


def _reply(request: web.Request, asked: str, result: Result, options: ReadOptions, *, trace: bool) -> web.Response:
    entry = result.entry
    headers = {"X-Idnode-Cache": result.source}
    if result.source == "stale":
        headers["Warning"] = _STALE_WARNING
    if entry.kind is EntryKind.NOT_FOUND:
        if not trace and result.source != "stale" and not entry.escrow:
            raise _not_found(asked)
        request.app[METRICS].error(ResponseCode.HANDLE_NOT_FOUND)  # answered here, not raised to @counted
        body: dict[str, Any] = _not_found(asked).to_json()
        status = 404
    else:
        values_json = entry.values_json
        if options.types or options.indexes:
            values_json = filter_values_json(values_json, options.types, options.indexes)
        code = ResponseCode.SUCCESS if values_json != b"[]" or entry.values_json == b"[]" else ResponseCode.VALUES_NOT_FOUND
        body = {"responseCode": code, "handle": asked, "values": orjson.Fragment(values_json)}
        status = http_status_for(code, resolution=True)
    if result.source == "stale":
        body["stale"] = True
    if entry.escrow:
        body["escrow"] = True
    if trace:
        body["trace"] = _trace_json(result.hops)
    if options.pretty:
        return json_reply(dumps(orjson.loads(orjson.dumps(body)), pretty=True), status, headers)
    return json_reply(orjson.dumps(body), status, headers)


# --- the proxy form ----------------------------------------------------------------


def _wants_html(request: web.Request) -> bool:
    return "text/html" in request.headers.get("Accept", "")


def _cache_headers(entry: CacheEntry, now: float) -> dict[str, str]:
    max_age = max(0, int(entry.remaining(now)))
    return {"Cache-Control": f"public, max-age={max_age}", "Expires": formatdate(now + max_age, usegmt=True)}


@api_endpoint
@counted
async def proxy(request: web.Request) -> web.StreamResponse:
    """``GET /{handle}``: redirect, HTML page or JSON (see the module doc)."""
    request.app[METRICS].requests["proxy"] += 1
    text = request.match_info["handle"]
    handle = path_handle(text)
    result = await lookup(request, handle)
    entry = result.entry
    html_wanted = _wants_html(request)
    stale = result.source == "stale"
    if entry.kind is EntryKind.NOT_FOUND:
        if not html_wanted:
            if entry.escrow:  # the reply says so, as the REST reply does
                return _reply(request, text, result, ReadOptions.of(request), trace=False)
            raise _not_found(text)
        request.app[METRICS].error(ResponseCode.HANDLE_NOT_FOUND)
        page = render_record_page(text, None, json_url=json_link(text), escrow=entry.escrow)
        return web.Response(text=page, status=404, content_type="text/html", headers={"Cache-Control": "no-cache"})
    headers = {"Cache-Control": "no-cache"} if stale else _cache_headers(entry, time.time())
    headers["X-Idnode-Cache"] = result.source
    if "noredirect" not in request.query:
        url = first_url(entry.values_json)
        if url is not None:
            reply = redirect_reply(url)
            reply.headers.update(headers)
            return reply
    if html_wanted:
        values = orjson.loads(entry.values_json)
        page = render_record_page(text, values, json_url=json_link(text), stale=stale, escrow=entry.escrow)
        return web.Response(text=page, content_type="text/html", charset="utf-8", headers=headers)
    reply = _reply(request, text, result, ReadOptions.of(request), trace=False)
    reply.headers.update(headers)
    return reply


async def resolve_form(request: web.Request) -> web.StreamResponse:
    """``GET /resolve?handle=TEXT``: normalise any input form, then redirect
    to the proxy form (the front page's form lands here)."""
    text = request.query.get("handle", "")
    try:
        handle = parse(text)
    except IdnodeError as exc:
        if _wants_html(request):
            raise web.HTTPBadRequest(text=f"Not an identifier: {exc.message}") from None
        return error_reply(exc)
    raise web.HTTPFound(yarl.URL("/" + url_path(handle.to_text()), encoded=True))


async def index(request: web.Request) -> web.StreamResponse:
    """``GET /``: a look-up form for people, a description for programs."""
    if _wants_html(request):
        return web.Response(text=render_index_page(), content_type="text/html", charset="utf-8")
    body = {
        "responseCode": 1,
        "node": "idnode recursive resolver",
        "api": {
            "handles": "/api/handles/{handle}[?auth=true|trace=true]",
            "proxy": "/{handle}[?noredirect]",
            "flush": "POST /api/cache/flush?handle={handle} | ?prefix={prefix}",
            "scan": "POST /api/scan (scanned text, or a picture of a code)",
            "qr": "/qr/{handle}.png | .svg [?level=&dpi=&module=|size=&form=url|handle]",
            "metrics": "/metrics",
            "health": "/healthz",
        },
    }
    return json_object_reply(body, pretty=True)


# --- operations --------------------------------------------------------------------


def _check_admin(request: web.Request) -> None:
    """Allow cache administration: with the bearer token when one is set,
    else from loopback only.

    Raises:
        AuthenticationNeeded / AuthenticationFailed.
    """
    token = request.app[SETTINGS].admin_token
    if token is None:
        remote = request.remote or ""
        try:
            loopback = ipaddress.ip_address(remote.split("%")[0]).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise AuthenticationNeeded("cache flushes from other hosts need the resolver's admin_token")
        return
    sent = request.headers.get("Authorization", "")
    if not sent.startswith("Bearer "):
        raise AuthenticationNeeded("send 'Authorization: Bearer <admin token>' to flush the cache")
    if not secrets.compare_digest(sent[7:].encode(), token.encode()):
        raise AuthenticationFailed("the admin token is not right")


@api_endpoint
async def flush(request: web.Request) -> web.StreamResponse:
    """``POST /api/cache/flush?handle=H`` or ``?prefix=P``."""
    _check_admin(request)
    query = request.query
    resolver = request.app[RESOLVER]
    if ("handle" in query) == ("prefix" in query):
        raise MalformedRequest("name exactly one of handle= or prefix= to flush")
    if "handle" in query:
        handle = Handle.from_text(query["handle"])
        count = await resolver.flush(handle=handle)
        body = {"responseCode": 1, "handle": handle.to_text(), "flushed": count}
    else:
        prefix = check_prefix(query["prefix"])
        count = await resolver.flush(prefix=prefix)
        body = {"responseCode": 1, "prefix": prefix, "flushed": count}
    return json_object_reply(body)


async def metrics(request: web.Request) -> web.StreamResponse:
    body = request.app[METRICS].exposition()
    return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})


async def healthz(request: web.Request) -> web.StreamResponse:
    """``GET /healthz``: 200 while answering (``status`` is ``ok`` or
    ``degraded``: Redis down, or upstream servers failing lately)."""
    return json_object_reply(request.app[RESOLVER].health_report(), pretty=True)
