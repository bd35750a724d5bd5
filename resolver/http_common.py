"""What every idnode HTTP endpoint shares: JSON replies, the one place an
:class:`~idcore.errors.IdnodeError` becomes an HTTP reply, and query
parameter parsing with the Handle.Net REST API's rules.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Awaitable, Callable

from aiohttp import web
from multidict import MultiMapping

from idcore import limits
from idcore.errors import (
    IdnodeError,
    MalformedRequest,
    NodeError,
    RequestTooLarge,
    UnsupportedMediaType,
)
from idcore.rest_json import dumps

log = logging.getLogger(__name__)

JSON_CONTENT_TYPE = "application/json"
_JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}

#: Challenge sent with 401 replies, as the Handle server's REST API does.
WWW_AUTHENTICATE = 'Basic realm="handle"'

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


def require_content_type(request: web.Request, *accepted: str) -> None:
    """Refuse a body whose media type is not one of ``accepted``.

    Raises:
        UnsupportedMediaType: naming what was sent and what is accepted.
    """
    if request.content_type not in accepted:
        sent = request.headers.get("Content-Type", "none")
        raise UnsupportedMediaType(f"Content-Type {sent!r} is not supported here; send {' or '.join(accepted)}")

