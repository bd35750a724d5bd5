"""HTTP API of a parent node's prefix administration (:mod:`registry.prefix_admin`).

- ``POST /api/prefix-applications``: apply for a child prefix. No identity
  is needed (the applicant has none at this node yet); the queue of pending
  applications is capped (MAX_PENDING_APPLICATIONS, then 429). An optional
  ``secret`` member is the secret of the child's identity ``300:0.NA/<child>``
  here; it is hashed at once and never stored or shown in the clear.
  Answers 201 with the application (its unguessable ``id``).
- ``GET /api/prefix-applications[?state=]``: the applications a reviewer
  (HTTP Basic) may review.
- ``GET /api/prefix-applications/{id}``: one application with its history.
- ``POST /api/prefix-applications/{id}/{action}``: approve, reject, disable,
  enable, request-deletion, delete; optional JSON body ``{"reason": ...}``.
  A transition the state does not allow is 409, naming the state and the
  actions that may follow.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from idcore import limits
from idcore.errors import InvalidValue
from registry.applicant import Application
from registry.prefix_admin import PrefixAdmin, row_to_json
from registry.prefix_admin_store import (
    PREFIX_ADMIN_DATABASE_NAME,
    MemoryApplications,
    SqliteApplications,
)
from registry.secret_hash import hash_secret, run_hashing
from resolver.credentials import request_identity
from resolver.http_common import app_feature, add_endpoint, api_endpoint, json_object_reply, read_json
from resolver.node_api import REGISTRY

PREFIX_ADMIN = web.AppKey("prefix_admin", PrefixAdmin)

#: Largest application body (bytes): a site of MAX_SITE_SERVERS servers with
#: keys and the organisation's texts fit many times over.
MAX_APPLICATION_BODY_BYTES = 64 * 1024


def add_prefix_admin_routes(router: web.UrlDispatcher) -> None:
    """The prefix administration routes (before the ``/api/`` catch-all)."""
    add_endpoint(router, "/api/prefix-applications", GET=list_applications, POST=post_application)
    add_endpoint(router, "/api/prefix-applications/{id}", GET=get_application)
    add_endpoint(router, "/api/prefix-applications/{id}/{action}", POST=post_action)


def use_memory_store(app: web.Application) -> None:
    """Keep ``app``'s applications in memory (nodes built around an open registry)."""
    app[PREFIX_ADMIN] = PrefixAdmin(app[REGISTRY], MemoryApplications())


def open_prefix_admin(data_dir: Path) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context keeping applications in ``data_dir``'s
    PREFIX_ADMIN_DATABASE_NAME; append it after the registry's."""

    async def keep(app: web.Application) -> AsyncIterator[None]:
        async with SqliteApplications(data_dir / PREFIX_ADMIN_DATABASE_NAME) as store:
            app[PREFIX_ADMIN] = PrefixAdmin(app[REGISTRY], store)
            yield

    return keep


def _admin(request: web.Request) -> PrefixAdmin:
    return app_feature(request, PREFIX_ADMIN, "this node does not administer child prefixes")


@api_endpoint
async def post_application(request: web.Request) -> web.StreamResponse:
    admin = _admin(request)
    body = await read_json(request, limit=MAX_APPLICATION_BODY_BYTES, limit_name="MAX_APPLICATION_BODY_BYTES", what="the application as JSON")
    application = Application.from_json(body)
    assert isinstance(body, dict)
    secret = body.get("secret")
    secret_hash = None
    if secret is not None:
        if not isinstance(secret, str) or not secret or len(secret.encode()) > limits.MAX_SECRET_BYTES:
            raise InvalidValue(f"secret must be text of 1..{limits.MAX_SECRET_BYTES} bytes", field="secret")
        secret_hash = await run_hashing(hash_secret, secret.encode())
    row = await admin.apply(application, secret_hash)
    return json_object_reply({"responseCode": 1, **row_to_json(row, await admin.history(row.id))}, 201)


@api_endpoint
async def list_applications(request: web.Request) -> web.StreamResponse:
    admin = _admin(request)
    identity = await request_identity(request, admin.registry, required=True)
    rows = await admin.list(identity, request.query.get("state"))
    return json_object_reply({"responseCode": 1, "applications": [row_to_json(r) for r in rows]})


@api_endpoint
async def get_application(request: web.Request) -> web.StreamResponse:
    admin = _admin(request)
    identity = await request_identity(request, admin.registry, required=True)
    row = await admin.get(request.match_info["id"], identity)
    return json_object_reply({"responseCode": 1, **row_to_json(row, await admin.history(row.id))})


@api_endpoint
async def post_action(request: web.Request) -> web.StreamResponse:
    admin = _admin(request)
    identity = await request_identity(request, admin.registry, required=True)
    body = await read_json(request, limit=MAX_APPLICATION_BODY_BYTES, limit_name="MAX_APPLICATION_BODY_BYTES", required=False) or {}
    reason = body.get("reason") if isinstance(body, dict) else None
    if reason is not None and not isinstance(reason, str):
        raise InvalidValue("reason must be text", field="reason")
    row = await admin.act(request.match_info["id"], request.match_info["action"], identity, reason)
    return json_object_reply({"responseCode": 1, **row_to_json(row, await admin.history(row.id))})
