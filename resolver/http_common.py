"""What every idnode HTTP endpoint shares: JSON replies, the one place an
:class:`~idcore.errors.IdnodeError` becomes an HTTP reply, and query
parameter parsing with the Handle.Net REST API's rules.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Awaitable, Callable, TypeVar

from aiohttp import web
from multidict import MultiMapping

from idcore import limits
from idcore.errors import (
    IdnodeError,
    MalformedRequest,
    NodeError,
    OperationNotSupported,
    RequestTooLarge,
    UnsupportedMediaType,
)
from idcore.rest_json import dumps, loads

log = logging.getLogger(__name__)

JSON_CONTENT_TYPE = "application/json"
_JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}

#: Challenge sent with 401 replies, as the Handle server's REST API does.
WWW_AUTHENTICATE = 'Basic realm="handle"'

T = TypeVar("T")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_reply(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A reply with an already encoded JSON body."""
    all_headers = _JSON_HEADERS if headers is None else {**_JSON_HEADERS, **headers}
    return web.Response(body=body, status=status, headers=all_headers)


def json_object_reply(obj: Any, status: int = 200, *, pretty: bool = False) -> web.Response:
    return json_reply(dumps(obj, pretty=pretty), status)


def error_reply(error: IdnodeError, *, pretty: bool = False) -> web.Response:
    """The reply for ``error``: its Handle body and its HTTP status."""
    headers = None
    if error.status == 401:
        headers = {"WWW-Authenticate": WWW_AUTHENTICATE}
    return json_reply(dumps(error.to_json(), pretty=pretty), error.status, headers)


#: Request key set once a handler has started a streamed reply (a typed
#: RequestKey where this aiohttp has them).
_STREAMING: Any = web.RequestKey("idnode.streaming", bool) if hasattr(web, "RequestKey") else "idnode.streaming"


async def start_stream(request: web.Request, response: web.StreamResponse) -> None:
    """Send ``response``'s status and headers; from here on a failure cannot
    become an error reply (see :func:`api_endpoint`)."""
    await response.prepare(request)
    request[_STREAMING] = True


def api_endpoint(handler: Handler) -> Handler:
    """Wrap a handler so that every failure becomes a Handle-shaped reply.

    Request errors keep their status; an unexpected exception is logged with
    its traceback and answered 500 without internals. A handler that has
    started streaming (:func:`start_stream`) has already sent its status, so
    its failures propagate instead and the connection is cut, which the
    client sees as a broken stream rather than a body with a reply pasted in.
    """

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except IdnodeError as exc:
            if request.get(_STREAMING):
                raise
            if isinstance(exc, NodeError):
                log.error("%s %s failed: %s", request.method, request.path, exc.message, exc_info=exc.__cause__)
            return error_reply(exc, pretty=flag(request.query, "pretty"))
        except web.HTTPRequestEntityTooLarge:
            return error_reply(RequestTooLarge(f"request body is larger than {limits.MAX_RECORD_BODY_BYTES} bytes"))
        except web.HTTPException:
            raise
        except Exception:
            if request.get(_STREAMING):
                raise
            log.exception("%s %s failed", request.method, request.path)
            return error_reply(NodeError("internal error; the node's log has the details"))

    return wrapped


def flag(query: MultiMapping[str], name: str) -> bool:
    """A boolean parameter as the Handle REST API reads most of them:
    present and empty (``?pretty``), ``yes`` or ``true`` mean true."""
    value = query.get(name)
    return value is not None and value.lower() in ("", "yes", "true")


def strict_flag(query: MultiMapping[str], name: str) -> bool:
    """A boolean parameter read like Java's ``Boolean.parseBoolean``
    (``overwrite``, ``mintNewSuffix``): only ``true`` is true."""
    value = query.get(name)
    return value is not None and value.lower() == "true"


def int_params(query: MultiMapping[str], name: str) -> list[int]:
    """Every ``name=`` parameter as an integer.

    Raises:
        MalformedRequest: a value that is not a whole number, named.
    """
    out = []
    for text in query.getall(name, ()):
        try:
            out.append(int(text))
        except ValueError:
            raise MalformedRequest(f"parameter {name}={text!r} is not an integer") from None
    return out


def app_feature(request: web.Request, key: web.AppKey[T], missing: str) -> T:
    """The part of the node's application under ``key`` (escrow, filings,
    prefix administration), which a node may not run.

    Raises:
        OperationNotSupported: the node does not; ``missing`` says so.
    """
    feature = request.app.get(key)
    if feature is None:
        raise OperationNotSupported(missing)
    return feature


def method_not_allowed(allowed: str) -> Handler:
    """A handler answering 405 in Handle shape, listing what is allowed."""

    async def handler(request: web.Request) -> web.StreamResponse:
        body = {"responseCode": 4, "message": f"{request.method} is not allowed on {request.path}; use {allowed}"}
        return json_reply(dumps(body), 405, {"Allow": allowed})

    return handler


def add_endpoint(router: web.UrlDispatcher, path: str, **handlers: Handler) -> web.Resource:
    """Route ``path`` to one handler per HTTP method (``GET=..., POST=...``);
    any other method is answered 405 naming the ones allowed."""
    resource = router.add_resource(path)
    for method, handler in handlers.items():
        resource.add_route(method, handler)
    resource.add_route("*", method_not_allowed(", ".join(handlers)))
    return resource


async def read_body(request: web.Request, limit: int, *, limit_name: str | None = None) -> bytes:
    """The whole request body, refused once it is over ``limit`` bytes
    (``limit_name``: the constant to name in the refusal).

    Reads the stream itself rather than ``request.read()``, which stops at
    the application's ``client_max_size`` with a message naming that
    instead; a declared length over the limit is refused before reading.

    Raises:
        RequestTooLarge: the body (or its declared length) is over ``limit``.
    """
    declared = request.content_length
    if declared is not None and declared > limit:
        raise body_too_large(declared, limit, limit_name)
    chunks, size = [], 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise body_too_large(size, limit, limit_name)
        chunks.append(chunk)
    return b"".join(chunks)


def body_too_large(size: int, limit: int, limit_name: str | None = None) -> RequestTooLarge:
    """The refusal of a body of ``size`` bytes or more, over ``limit``."""
    named = f" ({limit_name})" if limit_name else ""
    return RequestTooLarge(f"request body of {size} bytes or more is larger than the limit of {limit} bytes{named}")


async def read_json(
    request: web.Request,
    *,
    limit: int = limits.MAX_RECORD_BODY_BYTES,
    limit_name: str | None = "MAX_RECORD_BODY_BYTES",
    required: bool = True,
    what: str = "JSON",
) -> Any:
    """The request's JSON body, at most ``limit`` bytes; None when the body
    is absent and not ``required``. ``what`` names what the body should
    hold, for the message when it is empty.

    Raises:
        UnsupportedMediaType: a body that is not ``application/json``.
        RequestTooLarge: over ``limit``.
        MalformedRequest: empty when required, or not valid JSON.
    """
    if not required and not request.can_read_body:
        return None
    require_content_type(request, JSON_CONTENT_TYPE)
    body = await read_body(request, limit, limit_name=limit_name)
    if not body:
        if required:
            raise MalformedRequest(f"request body is empty; send {what}")
        return None
    return loads(body)


def require_content_type(request: web.Request, *accepted: str) -> None:
    """Refuse a body whose media type is not one of ``accepted``.

    Raises:
        UnsupportedMediaType: naming what was sent and what is accepted.
    """
    if request.content_type not in accepted:
        sent = request.headers.get("Content-Type", "none")
        raise UnsupportedMediaType(f"Content-Type {sent!r} is not supported here; send {' or '.join(accepted)}")

