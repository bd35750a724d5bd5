"""``GET /qr/{handle}.png`` and ``GET /qr/{handle}.svg``: a handle's QR code
as an image, on authoritative nodes and recursive nodes alike.

Query parameters (each at most once; any other is refused):

- ``level``: error-correction level, L/M/Q/H (default Q);
- ``dpi``: printer resolution, 72..2400 (default 300); the PNG has
  ``dpi`` in its pHYs chunk, and modules of both formats are snapped to
  whole dots at it;
- ``module``: module width in millimetres, 0.1..5 (default 0.5); or
- ``size``: the whole symbol's width in millimetres, quiet zone included;
  the module is then ``size`` / modules, snapped to dots. Not with
  ``module``;
- ``form``: ``url`` (default: the resolver URL of the handle, which a phone
  opens) or ``handle`` (the handle itself, for line scanners).

A node draws codes for the handles it holds (404 for one it would hold but
does not; 400 for one it is not responsible for, delegated or not); a
recursive node resolves the handle first and answers as resolution does
(404, 502, 504). A drawn image is ``Cache-Control: public, max-age=86400``
(it changes only with the node's payload settings); every error
``no-store``. Every bad parameter is a 400 naming it and its range.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable

from aiohttp import web
from multidict import MultiMapping

from cache.entry import EntryKind
from idcore.errors import HandleNotFound, IdnodeError, InvalidValue, ServerNotResponsible
from idcore.handle import Handle
from idcore.rest_json import dumps
from qr.payload import PayloadForm, payload_for, resolver_base
from qr.symbol import (
    DEFAULT_DPI,
    DEFAULT_EC_LEVEL,
    EC_LEVELS,
    MAX_DPI,
    MAX_MODULE_MM,
    MIN_DPI,
    MIN_MODULE_MM,
    QUIET_ZONE_MODULES,
)
from resolver.http_common import Handler, add_endpoint, api_endpoint, json_reply
from resolver.node_api import REGISTRY, path_handle
from resolver.qr_render import ImageJob, Renderer
from resolver.recursive_api import METRICS, lookup

RENDERER = web.AppKey("qr_renderer", Renderer)

#: Query parameters understood; any other is refused, so that a misspelt
#: ``levl=H`` cannot print a thousand labels at the wrong level.
PARAMETERS = ("level", "dpi", "module", "size", "form")

#: Symbol widths accepted for ``size``, millimetres: from the smallest
#: symbol (version 1, 21 modules plus the quiet zone) at the smallest module
#: to the largest (version 40, 177 modules) at the largest. Each symbol
#: narrows this to its own modules (see qr_render.module_for).
MIN_SIZE_MM = (21 + 2 * QUIET_ZONE_MODULES) * MIN_MODULE_MM
MAX_SIZE_MM = (177 + 2 * QUIET_ZONE_MODULES) * MAX_MODULE_MM

#: How long browsers and shared caches may keep a drawn code, seconds: an
#: image changes only when the node's resolver URL setting does.
IMAGE_MAX_AGE_SECONDS = 86400

_CONTENT_TYPES = {"png": "image/png", "svg": "image/svg+xml"}
_IMAGE_HEADERS = {"Cache-Control": f"public, max-age={IMAGE_MAX_AGE_SECONDS}"}
_WHOLE = re.compile(r"[0-9]{1,6}")
_DECIMAL = re.compile(r"[0-9]{1,6}(?:\.[0-9]{1,6})?")

#: Checks that a handle may have a code here, raising what the node would
#: answer a lookup with (HandleNotFound, ServerNotResponsible, UpstreamError).
RecordCheck = Callable[[web.Request, Handle], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ImageParams:
    """The query parameters of an image request, checked."""

    level: str = DEFAULT_EC_LEVEL
    dpi: int = DEFAULT_DPI
    module_mm: float | None = None
    size_mm: float | None = None
    form: PayloadForm = PayloadForm.URL

    @classmethod
    def from_query(cls, query: MultiMapping[str]) -> ImageParams:
        """Parse and check the parameters (see the module doc).

        Raises:
            InvalidValue: naming the parameter and what it accepts;
                ``details["parameter"]`` is its name.
        """
        for name in query:
            if name not in PARAMETERS:
                raise InvalidValue(
                    f"unknown parameter {name!r}; QR images take {', '.join(PARAMETERS)}", parameter=name
                )
            if len(query.getall(name)) > 1:
                raise InvalidValue(f"parameter {name} is given more than once", parameter=name)
        level = query.get("level", DEFAULT_EC_LEVEL)
        if level.upper() not in EC_LEVELS:
            raise InvalidValue(f"level={level!r} must be one of L, M, Q, H", parameter="level")
        module_mm = _millimetres(query, "module", MIN_MODULE_MM, MAX_MODULE_MM)
        size_mm = _millimetres(query, "size", MIN_SIZE_MM, MAX_SIZE_MM)
        if module_mm is not None and size_mm is not None:
            raise InvalidValue("give module (one module's width) or size (the whole code's), not both", parameter="size")
        form_text = query.get("form", PayloadForm.URL.value)
        try:
            form = PayloadForm(form_text)
        except ValueError:
            raise InvalidValue(f"form={form_text!r} must be url or handle", parameter="form") from None
        return cls(level.upper(), _dpi(query), module_mm, size_mm, form)


def _dpi(query: MultiMapping[str]) -> int:
    text = query.get("dpi")
    if text is None:
        return DEFAULT_DPI
    if _WHOLE.fullmatch(text) is None or not MIN_DPI <= int(text) <= MAX_DPI:
        raise InvalidValue(f"dpi={text!r} must be a whole number in {MIN_DPI}..{MAX_DPI}", parameter="dpi")
    return int(text)


def _millimetres(query: MultiMapping[str], name: str, low: float, high: float) -> float | None:
    text = query.get(name)
    if text is None:
        return None
    # decimal notation only: float() would also take "nan", "1e3" and "1_0"
    value = float(text) if _DECIMAL.fullmatch(text) else math.nan
    if not low <= value <= high:
        raise InvalidValue(f"{name}={text!r} must be a number of millimetres in {low:g}..{high:g}", parameter=name)
    return value


# --- which handles get a code -------------------------------------------------------


async def node_record_check(request: web.Request, handle: Handle) -> None:
    """An authoritative node draws codes for the handles it holds."""
    resolution = await request.app[REGISTRY].resolve(handle)
    if resolution.response_code != 1:  # a referral: the handle is another node's
        raise ServerNotResponsible(
            f"{handle} is under a prefix this node has delegated ({resolution.referral});"
            " ask that node, or a resolver, for its code",
            handle=handle.to_text(),
        )


async def resolver_record_check(request: web.Request, handle: Handle) -> None:
    """A recursive node draws codes for the handles that resolve."""
    metrics = request.app[METRICS]
    metrics.requests["qr"] += 1
    try:
        result = await lookup(request, handle)
        if result.entry.kind is EntryKind.NOT_FOUND:
            raise HandleNotFound("Handle Not Found", handle=handle.to_text())
    except IdnodeError as exc:
        metrics.error(exc.response_code)
        raise


# --- the endpoint -------------------------------------------------------------------


def add_qr_routes(app: web.Application, *, check: RecordCheck, resolver_url: str | None) -> None:
    """Serve ``/qr/{handle}.png|.svg`` from ``app`` (before its catch-all
    proxy route), with a :class:`Renderer` opened and closed with the app.

    Args:
        check: raises when ``app`` should not draw a handle's code.
        resolver_url: the base of URL-form payloads; None takes it from
            each request (scheme and Host header).

    Raises:
        InvalidValue: ``resolver_url`` is not an http(s) base URL.
    """
    base = None if resolver_url is None else resolver_base(resolver_url)

    async def renderer(app: web.Application) -> AsyncIterator[None]:
        async with Renderer() as opened:
            app[RENDERER] = opened
            yield

    app.cleanup_ctx.append(renderer)
    handler = _uncached_errors(api_endpoint(functools.partial(qr_image, check=check, base=base)))
    add_endpoint(app.router, "/qr/{name:.*}", GET=handler, HEAD=handler)


async def qr_image(request: web.Request, *, check: RecordCheck, base: str | None) -> web.StreamResponse:
    """``GET /qr/{handle}.{png|svg}`` (see the module doc)."""
    name = request.match_info["name"]
    text, dot, kind = name.rpartition(".")
    if not dot or kind not in _CONTENT_TYPES:
        body = {"responseCode": 4, "message": f"no such image {request.path}: ask for /qr/{{handle}}.png or .svg"}
        return json_reply(dumps(body), 404)
    handle = path_handle(text)
    params = ImageParams.from_query(request.query)  # before the lookup: a bad parameter is the first thing to fix
    await check(request, handle)
    payload = payload_for(handle, params.form, base or request_base(request))
    job = ImageJob(payload, kind, params.level, params.dpi, params.module_mm, params.size_mm)  # type: ignore[arg-type]
    image = await request.app[RENDERER].image(job)
    return web.Response(body=image, content_type=_CONTENT_TYPES[kind], headers=_IMAGE_HEADERS)


def request_base(request: web.Request) -> str:
    """This server's base URL as the request names it: scheme and Host,
    lower-cased.

    Raises:
        InvalidValue: a Host header that is not a host (and port).
    """
    host = request.host
    if not host or any(ch in host for ch in "/?#@\\") or not host.isprintable() or " " in host:
        raise InvalidValue(f"Host header {host!r} cannot name this resolver in a code; set resolver.public_url")
    return resolver_base(f"{request.scheme}://{host}")


def _uncached_errors(handler: Handler) -> Handler:
    """Mark every reply but a success ``Cache-Control: no-store``."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        response = await handler(request)
        if response.status >= 300:
            response.headers["Cache-Control"] = "no-store"
        return response

    return wrapped
