"""The parent node's escrow API (:mod:`registry.escrow`).

- ``GET /api/escrow/recipient``: the X25519 public key (PEM) children
  encrypt escrow backups for.
- ``PUT /api/escrow/{child}/{archive}``: upload one archive folder as a tar
  stream (``application/x-tar``), as the child (``index:0.NA/<child>``);
  checked on receipt and recorded ``ok`` (201; 200 when the same archive was
  escrowed before) or ``bad`` (422, kept for inspection).
- ``GET /api/escrow?child=P``: the archives escrowed for P (every child
  without ``child=``), for the parent's admin or the child itself.
- ``POST /api/escrow/{child}/takeover`` with ``{"takeover": true|false}``:
  the parent's admin turns takeover on (the child's escrowed records are
  restored and ``GET /api/handles/...`` under the child's prefix is answered
  from them, marked ``"escrow": true``) or off (referrals again).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from idcore.errors import (
    HandleNotFound,
    IdnodeError,
    InsufficientPermissions,
    MalformedRequest,
    RequestTooLarge,
    ServerNotResponsible,
)
from idcore.handle import prefix_ancestors, prefix_handle, prefix_record_key
from idcore.rest_json import dumps
from idcore.values import AdminPermission, ValueReference
from registry import authz
from registry.escrow import OK, Escrow, check_archive_name, check_child
from registry.node_key import public_pem
from resolver.credentials import request_identity
from resolver.http_common import (
    add_endpoint,
    api_endpoint,
    app_feature,
    error_reply,
    flag,
    json_object_reply,
    json_reply,
    read_json,
)
from resolver.node_api import (
    REGISTRY,
    ReadOptions,
    path_handle,
    record_reply,
)

ESCROW = web.AppKey("escrow", Escrow)

#: Bytes read from an upload's body at once.
UPLOAD_CHUNK_BYTES = 256 * 1024

#: Largest takeover request body (a JSON flag).
MAX_TAKEOVER_BODY = 1024


def enable_escrow(app: web.Application, escrow: Escrow) -> None:
    """Serve ``escrow`` on ``app``: its state, the takeover hook in front of
    the handle routes, and closing its takeover stores on shutdown."""
    app[ESCROW] = escrow
    app.middlewares.append(takeover_middleware)

    async def close(app: web.Application) -> None:
        await app[ESCROW].close()

    app.on_cleanup.append(close)


def add_escrow_routes(router: web.UrlDispatcher) -> None:
    add_endpoint(router, "/api/escrow/recipient", GET=get_recipient)
    add_endpoint(router, "/api/escrow", GET=list_escrow)
    add_endpoint(router, "/api/escrow/{child}/takeover", POST=post_takeover)
    add_endpoint(router, "/api/escrow/{child}/{archive}", PUT=put_archive)


def _escrow(request: web.Request) -> Escrow:
    return app_feature(request, ESCROW, "this node keeps no escrow")


@api_endpoint
async def get_recipient(request: web.Request) -> web.StreamResponse:
    escrow = _escrow(request)
    key = await asyncio.to_thread(escrow.recipient_key)
    return web.Response(body=public_pem(key.public_key()), content_type="application/x-pem-file")


@api_endpoint
async def put_archive(request: web.Request) -> web.StreamResponse:
    escrow = _escrow(request)
    child = check_child(request.match_info["child"])
    archive = check_archive_name(request.match_info["archive"])
    identity = await request_identity(request, request.app[REGISTRY], required=True)
    assert identity is not None
    if identity.handle.upper() != prefix_handle(child).to_text().upper():
        raise InsufficientPermissions(
            f"{identity.to_text()} may not escrow backups for {child}: only the child node ({prefix_handle(child)}) may",
            handle=child,
        )
    limit = escrow.max_upload_bytes
    if request.content_length is not None and request.content_length > limit:
        raise RequestTooLarge(f"the upload is {request.content_length} bytes; the limit is {limit}")
    path = escrow.begin(child, archive)
    try:
        size = 0
        out = await asyncio.to_thread(path.open, "wb")
        try:
            async for chunk in request.content.iter_chunked(UPLOAD_CHUNK_BYTES):
                size += len(chunk)
                if size > limit:
                    raise RequestTooLarge(f"the upload is larger than the limit of {limit} bytes")
                await asyncio.to_thread(out.write, chunk)
        finally:
            out.close()
    except BaseException:
        escrow.abandon(child, archive)
        raise
    entry, new = await asyncio.to_thread(escrow.receive, child, archive, size)
    if entry.status != OK:
        body = {"responseCode": 2, "message": f"{archive} is escrowed as bad: {entry.reason}",
                "archive": entry.to_json()}
        return json_object_reply(body, 422)
    return json_object_reply({"responseCode": 1, "archive": entry.to_json()}, 201 if new else 200)


@api_endpoint
async def list_escrow(request: web.Request) -> web.StreamResponse:
    escrow = _escrow(request)
    identity = await request_identity(request, request.app[REGISTRY], required=True)
    assert identity is not None
    asked = request.query.get("child")
    children = [check_child(asked)] if asked else escrow.children()
    out = []
    for child in children:
        if identity.handle.upper() != prefix_handle(child).to_text().upper():
            await check_parent_admin(request, child, identity)
        entries = await asyncio.to_thread(escrow.entries, child)
        taken = child.upper() in {c.upper() for c in escrow.takeover}
        out.append({"child": child, "takeover": taken, "archives": [e.to_json() for e in entries]})
    return json_object_reply({"responseCode": 1, "children": out}, pretty=flag(request.query, "pretty"))


async def check_parent_admin(request: web.Request, child: str, identity: ValueReference) -> None:
    """Allow ``identity`` when it administers the prefix ``child`` lies under
    here (ADD_DERIVED_PREFIX: the right to review child prefixes).

    Raises:
        ServerNotResponsible: no prefix homed here is above ``child``.
        InvalidAdmin, InsufficientPermissions.
    """
    registry = request.app[REGISTRY]
    homed = {p.upper() for p in registry.homed_prefixes}
    for ancestor in prefix_ancestors(child)[1:]:
        if ancestor.upper() in homed:
            record = await registry.store.get(prefix_record_key(ancestor))
            source = authz.AdminSource(authz.record_admins(record), AdminPermission.ADD_DERIVED_PREFIX)
            check = authz.check(identity, [source], what=f"administer the escrow of {child}", handle=child)
            await authz.run_async(check, registry.store.get)
            return
    raise ServerNotResponsible(f"{child} is not a child of a prefix homed here", handle=child)


@api_endpoint
async def post_takeover(request: web.Request) -> web.StreamResponse:
    escrow = _escrow(request)
    child = check_child(request.match_info["child"])
    body = await read_json(request, limit=MAX_TAKEOVER_BODY, limit_name="MAX_TAKEOVER_BODY", what='{"takeover": true} or {"takeover": false}')
    on = body.get("takeover") if isinstance(body, dict) else None
    if not isinstance(on, bool):
        raise MalformedRequest('send {"takeover": true} or {"takeover": false}')
    identity = await request_identity(request, request.app[REGISTRY], required=True)
    assert identity is not None
    await check_parent_admin(request, child, identity)
    applied = await escrow.set_takeover(child, on)
    restored: dict[str, Any] = {}
    if applied:
        restored = {"archives": len(applied), "watermark": applied[-1].watermark_to}
    return json_object_reply({"responseCode": 1, "child": child, "takeover": on, "restored": restored or None})


@web.middleware
async def takeover_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Answer ``GET /api/handles/{handle}`` under a taken-over child from
    escrow; everything else passes through."""
    escrow = request.app[ESCROW]
    if escrow.active and request.method == "GET" and request.path.startswith("/api/handles/"):
        try:
            child = escrow.taken_over(path_handle(request.match_info.get("handle", "")))
        except IdnodeError:
            child = None  # the handle route reports a malformed handle
        if child is not None:
            return await _takeover_answer(request)
    return await handler(request)


@api_endpoint
async def _takeover_answer(request: web.Request) -> web.StreamResponse:
    text = request.match_info["handle"]
    handle = path_handle(text)
    escrow = request.app[ESCROW]
    child = escrow.taken_over(handle)
    assert child is not None
    options = ReadOptions.of(request)
    try:
        reply = record_reply(text, await escrow.resolve(handle, child), options)
    except HandleNotFound as exc:  # marked too: "not found" is as old as the escrowed data
        reply = error_reply(exc)
    assert isinstance(reply.body, bytes)
    body = orjson.loads(reply.body)
    body["escrow"] = True
    return json_reply(dumps(body, pretty=options.pretty), reply.status)
