"""``GET /api/journal?after=N&limit=M``: the node's change journal as a feed,
for mirrors (and other readers that keep their own cursor).

The reply::

    {"responseCode": 1, "last": 1234, "entries": [
      {"seq": 7, "at_ms": 1764130000000, "op": "create", "handle": "88.118.2/X",
       "actor": "300:0.NA/88.118.2", "record": "<base64 of the stored blob>"},
      {"seq": 8, "at_ms": ..., "op": "delete", "handle": "88.118.2/Y", "actor": ..., "record": null},
      {"seq": 9, "at_ms": ..., "op": "home", "handle": "88.118.2", "actor": null, "prefix": "88.118.2"}]}

- entries come in sequence order, those after ``after`` (default 0), at most
  ``limit`` (default and cap :data:`MAX_JOURNAL_PAGE`);
- ``last`` is the node's highest sequence number, so a reader knows its lag;
- a create or update carries the handle's CURRENT record, as the store keeps
  it: ``handle`` as first written and ``record`` the base64 of the compact
  blob (:mod:`registry.records`). A mirror storing ``StoredRecord(handle,
  blob)`` holds exactly the primary's record, byte for byte (hashed secrets
  included), which REST JSON could not promise. ``record`` is null (a
  tombstone) for a delete, and for a create or update of a handle deleted
  since: a later entry of the same feed deletes it anyway;
- a home or unhome names the ``prefix``.

Because every entry carries the whole current state of its handle,
applying a page twice, or an older page after a newer one, converges on the
primary's records once the reader has caught up.

Access: the feed holds every record, private values and secret hashes
included, so it is an administrator's read. A request with credentials
(HTTP Basic, as for writes) must be an identity that the HS_ADMIN of one of
the node's homed prefixes grants LIST_HANDLES and READ_VALUE. A request
without credentials is served from loopback only, the way an operator runs
a mirror or a backup tool on the same host without handing it a secret (and
the way ``idnode flush`` reaches a recursive node); from elsewhere it gets
401. A reverse proxy on the same host makes every client look local: put
the feed behind credentials there (do not proxy ``/api/journal``).
"""

from __future__ import annotations

import base64
import ipaddress
from typing import Any

from aiohttp import web

from idcore.errors import AuthenticationNeeded, IdnodeError, MalformedRequest
from idcore.handle import Handle, prefix_record_key
from idcore.values import AdminPermission
from registry import authz
from registry.authz import AdminSource
from registry.records import StoredRecord
from registry.service import Registry
from registry.store import JournalEntry, Op
from resolver.credentials import request_identity
from resolver.http_common import api_endpoint, int_params, json_object_reply
from resolver.node_api import REGISTRY

#: Most entries one reply carries (and the default): each create or update
#: costs a record read, and a page is held in memory on both sides; 5,000
#: records of a few hundred bytes keep a reply near a megabyte or two.
MAX_JOURNAL_PAGE = 5000

#: What the feed reveals: every handle and every value of the node.
FEED_PERMISSION = AdminPermission.LIST_HANDLES | AdminPermission.READ_VALUE


def entry_to_json(entry: JournalEntry, record: StoredRecord | None) -> dict[str, Any]:
    """One feed entry; ``record`` is the handle's current record (create and
    update only)."""
    out: dict[str, Any] = {
        "seq": entry.seq, "at_ms": entry.at_ms, "op": entry.op, "handle": entry.handle, "actor": entry.actor,
    }
    if entry.op in (Op.HOME, Op.UNHOME):
        out["prefix"] = entry.handle
    else:
        out["record"] = None if record is None else base64.b64encode(record.blob).decode("ascii")
        if record is not None:
            out["handle"] = record.handle
    return out


async def journal_page(registry: Registry, after: int, limit: int) -> dict[str, Any]:
    """The feed's reply body for entries after ``after`` (``limit`` checked)."""
    store = registry.store
    entries = await store.journal(after=after, limit=limit)
    current: dict[str, StoredRecord | None] = {}
    out = []
    for entry in entries:
        record = None
        if entry.op in (Op.CREATE, Op.UPDATE):
            key = Handle.from_text(entry.handle).key
            if key not in current:  # a page often touches a handle more than once
                current[key] = await store.get(key)
            record = current[key]
        out.append(entry_to_json(entry, record))
    return {"responseCode": 1, "last": await store.last_seq(), "entries": out}


def is_loopback(request: web.Request) -> bool:
    remote = request.remote or ""
    try:
        return ipaddress.ip_address(remote.split("%")[0]).is_loopback
    except ValueError:
        return False


async def check_feed_access(request: web.Request, registry: Registry) -> None:
    """Allow the feed (see the module's docstring).

    Raises:
        AuthenticationNeeded: no credentials, not from loopback (401).
        AuthenticationFailed / InvalidAdmin / InsufficientPermissions.
    """
    if "Authorization" not in request.headers:
        if is_loopback(request):
            return
        raise AuthenticationNeeded("the journal feed needs an administrator's credentials (HTTP Basic)")
    identity = await request_identity(request, registry, required=True)
    refusal: IdnodeError | None = None
    for prefix in registry.homed_prefixes:
        record = await registry.store.get(prefix_record_key(prefix))
        source = AdminSource(authz.record_admins(record), FEED_PERMISSION)
        try:
            await authz.run_async(
                authz.check(identity, [source], what="read the journal", handle=prefix), registry.store.get
            )
            return
        except IdnodeError as exc:
            refusal = exc
    raise refusal or AuthenticationNeeded("this node homes no prefix whose administrators could read its journal")


@api_endpoint
async def get_journal(request: web.Request) -> web.StreamResponse:
    registry = request.app[REGISTRY]
    await check_feed_access(request, registry)
    after = (int_params(request.query, "after") or [0])[0]
    limit = (int_params(request.query, "limit") or [MAX_JOURNAL_PAGE])[0]
    if after < 0 or not 0 < limit <= MAX_JOURNAL_PAGE:
        raise MalformedRequest(f"after must be >= 0 and limit in 1..{MAX_JOURNAL_PAGE}")
    return json_object_reply(await journal_page(registry, after, limit))
