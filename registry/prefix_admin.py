"""Prefix administration at a parent node: applications for child prefixes,
their review, and the ``0.NA/<child>`` delegation records that follow.

Lifecycle (``ACTIONS``)::

    pending_review --approve--> approved --disable--> disabled --enable--> enabled
                   --reject---> rejected   (enabled behaves as approved)
    approved | enabled | disabled --request-deletion--> pending_deletion --delete--> deleted

Every transition is made by a reviewer: an identity the parent prefix's
HS_ADMIN grants ADD_DERIVED_PREFIX (DELETE_DERIVED_PREFIX for ``delete``),
the permissions Handle asks for creating and deleting a derived prefix.
Each is recorded with who, when and an optional reason.

Effects on the registry (each idempotent, made before the state moves, so a
crash in between is repaired by repeating the action):

- approve: writes ``0.NA/<child>`` with the application's HS_SITE (index 1),
  the parent prefix's admins (HS_ADMIN from index 100), and for the child's
  identity ``300:0.NA/<child>`` (its HS_SECKEY and/or HS_PUBKEY) an HS_ADMIN
  granting CHILD_PERMISSIONS: the child may add, change and remove ordinary
  values such as its HS_SITE, never admins or keys;
- disable: adds a read-only ``HS_PREFIX_STATUS`` value ``disabled``; the
  registry then answers PrefixDisabled (code 2, HTTP 403) for the child's
  handles instead of a referral. Read-only (admin write bit clear), so the
  child's value rights cannot remove it; only this module, which checks the
  reviewer itself, writes the record around that bit;
- enable: removes that value;
- delete: deletes the delegation record.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from typing import Any

import orjson

from idcore.errors import (
    HandleNotFound,
    IdnodeError,
    InvalidValue,
    RequestError,
    ServerNotResponsible,
)
from idcore.handle import Handle, prefix_ancestors, prefix_handle, prefix_record_key
from idcore.values import (
    PRIVATE_PERMISSIONS,
    AdminPermission,
    AdminRef,
    HandleValue,
    ReservedIndex,
    ValueReference,
    ValueType,
)
from registry import authz, writes
from registry.applicant import Application
from registry.authz import AdminSource
from registry.node_setup import SITE_INDEX
from registry.prefix_admin_store import ApplicationRow, ApplicationStore, HistoryEntry
from registry.records import encode_record
from registry.service import PREFIX_DISABLED, PREFIX_STATUS_TYPE, Registry
from registry.store import Op, Txn

P = AdminPermission

PENDING_REVIEW = "pending_review"
APPROVED = "approved"
REJECTED = "rejected"
DISABLED = "disabled"
ENABLED = "enabled"
PENDING_DELETION = "pending_deletion"
DELETED = "deleted"
STATES = (PENDING_REVIEW, APPROVED, REJECTED, DISABLED, ENABLED, PENDING_DELETION, DELETED)

#: States after which a new application for the same prefix may be made.
CLOSED_STATES = (REJECTED, DELETED)

#: action -> (states it may start from, state it leads to)
ACTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "approve": ((PENDING_REVIEW,), APPROVED),
    "reject": ((PENDING_REVIEW,), REJECTED),
    "disable": ((APPROVED, ENABLED), DISABLED),
    "enable": ((DISABLED,), ENABLED),
    "request-deletion": ((APPROVED, ENABLED, DISABLED), PENDING_DELETION),
    "delete": ((PENDING_DELETION,), DELETED),
}

#: What the parent prefix's HS_ADMIN must grant a reviewer, per action.
REVIEW_PERMISSION = P.ADD_DERIVED_PREFIX
DELETE_PERMISSION = P.DELETE_DERIVED_PREFIX

#: Seconds a resolver may keep the delegation (the TTL of its HS_SITE
#: value): a resolver that cached the referral keeps using it, so a disable
#: or deletion reaches every resolver within this time (and at once where
#: an operator flushes the prefix, ``idnode flush --prefix``). Shorter than
#: Handle's default day, as a prefix under review is more likely to change.
DELEGATION_TTL_SECONDS = 3600

#: What the child's identity may do to its own delegation record: ordinary
#: values (its HS_SITE) only, so it files a new site itself but can neither
#: take the record from the parent nor lift a disable.
CHILD_PERMISSIONS = P.ADD_VALUE | P.MODIFY_VALUE | P.REMOVE_VALUE | P.READ_VALUE

#: Applications waiting for review at once. Applying needs no identity (the
#: applicant has none here yet), so this caps what anonymous callers can
#: make the node store; reviewers clear the queue to admit more.
MAX_PENDING_APPLICATIONS = 1000

#: Longest reason a reviewer may give (characters).
MAX_REASON_LENGTH = 1000

#: Index of the HS_PREFIX_STATUS mark in a delegation record (or the next free one).
STATUS_INDEX = 90

#: Admin read only, not writable by any admin, publicly readable.
STATUS_PERMISSIONS = "1010"

#: Index of the child identity's HS_ADMIN in its delegation record.
CHILD_ADMIN_INDEX = 200


def allowed_actions(state: str) -> list[str]:
    """The actions that may follow ``state``."""
    return [action for action, (sources, _) in ACTIONS.items() if state in sources]


class InvalidTransition(RequestError):
    """The action does not apply to the application's current state (409)."""

    http_status = 409


class TooManyPending(RequestError):
    """MAX_PENDING_APPLICATIONS are waiting for review."""

    http_status = 429


class PrefixAdmin:
    """The applications of one parent node over ``registry`` and ``store``.

    Args:
        registry: the node's open registry (delegation records are written there).
        store: where applications and their history are kept.
        clock: seconds since the epoch (tests pass a fixed one).
    """

    def __init__(
        self, registry: Registry, store: ApplicationStore, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.registry = registry
        self.store = store
        self.clock = clock
        self._lock = asyncio.Lock()  # one transition at a time: check, effect, record

    # --- applying -----------------------------------------------------------

    def parent_of(self, prefix: str) -> str:
        """The homed prefix ``prefix`` would be delegated from (the nearest).

        Raises:
            ServerNotResponsible: no homed prefix above it here.
        """
        homed = {p.upper(): p for p in self.registry.homed_prefixes}
        if prefix.upper() in homed:
            raise InvalidValue(f"prefix: {prefix} is homed at this node itself", field="prefix")
        for ancestor in prefix_ancestors(prefix)[1:]:
            if ancestor.upper() in homed:
                return homed[ancestor.upper()]
        raise ServerNotResponsible(f"no prefix above {prefix} lives here; apply at its parent node", handle=prefix)

    async def apply(self, application: Application, secret_hash: bytes | None = None) -> ApplicationRow:
        """Store a new application, pending review.

        ``secret_hash`` (from :func:`registry.secret_hash.hash_secret`) is the
        secret of the child's identity at this node, written on approval.

        Raises:
            ServerNotResponsible: no parent prefix here.
            InvalidTransition: an open application or a delegation for the prefix exists.
            TooManyPending: the review queue is full.
        """
        parent = self.parent_of(application.prefix)
        async with self._lock:
            existing = await self.store.open_for(application.prefix, CLOSED_STATES)
            if existing is not None:
                raise InvalidTransition(
                    f"prefix {application.prefix} already has application {existing.id} ({existing.state})",
                    handle=application.prefix,
                )
            if await self.registry.store.get(prefix_record_key(application.prefix)) is not None:
                raise InvalidTransition(
                    f"prefix {application.prefix} is already delegated from this node", handle=application.prefix
                )
            if await self.store.count(PENDING_REVIEW) >= MAX_PENDING_APPLICATIONS:
                raise TooManyPending(
                    f"{MAX_PENDING_APPLICATIONS} applications are waiting for review; try again later",
                    limit="MAX_PENDING_APPLICATIONS",
                )
            now = self.clock()
            row = ApplicationRow(
                id=secrets.token_hex(12),
                prefix=application.prefix,
                parent_prefix=parent,
                state=PENDING_REVIEW,
                body=orjson.dumps(application.to_json()),
                secret_hash=secret_hash,
                created=now,
                updated=now,
            )
            await self.store.add(row, HistoryEntry("apply", None, PENDING_REVIEW, None, now))
        return row

    # --- reviewing ----------------------------------------------------------

    async def check_reviewer(self, identity: ValueReference | None, parent: str, needed: P = REVIEW_PERMISSION) -> None:
        """Refuse unless ``identity`` is granted ``needed`` by ``0.NA/<parent>``'s HS_ADMIN.

        Raises:
            AuthenticationNeeded, InvalidAdmin, InsufficientPermissions.
        """
        record = await self.registry.store.get(prefix_record_key(parent))
        source = AdminSource(authz.record_admins(record), needed)
        what = "administer its child prefixes"
        check = authz.check(identity, [source], what=what, handle=prefix_handle(parent).to_text())
        await authz.run_async(check, self.registry.store.get)

    async def get(self, app_id: str, identity: ValueReference | None) -> ApplicationRow:
        """One application, for a reviewer of its parent prefix.

        Raises:
            HandleNotFound: no such application (also said before any check:
                ids are unguessable); the reviewer errors.
        """
        row = await self.store.get(app_id)
        if row is None:
            raise HandleNotFound(f"no prefix application {app_id!r}")
        await self.check_reviewer(identity, row.parent_prefix)
        return row

    async def list(self, identity: ValueReference | None, state: str | None = None) -> list[ApplicationRow]:
        """The applications under the parent prefixes ``identity`` reviews.

        Raises:
            InvalidValue: an unknown ``state``; the reviewer errors when it
                reviews none of this node's prefixes.
        """
        if state is not None and state not in STATES:
            raise InvalidValue(f"state {state!r} is not one of {', '.join(STATES)}", field="state")
        reviewed, refusal = [], None
        for parent in self.registry.homed_prefixes:
            try:
                await self.check_reviewer(identity, parent)
                reviewed.append(parent.upper())
            except IdnodeError as exc:
                refusal = refusal or exc
        if not reviewed and refusal is not None:
            raise refusal
        return [r for r in await self.store.list(state) if r.parent_prefix.upper() in reviewed]

    async def act(
        self, app_id: str, action: str, identity: ValueReference | None, reason: str | None = None
    ) -> ApplicationRow:
        """Apply ``action`` to the application, by reviewer ``identity``.

        Raises:
            InvalidValue: an unknown action or an overlong reason.
            HandleNotFound: no such application.
            InvalidTransition: the action does not follow the current state
                (the message names the state and the actions that may follow).
            the reviewer errors; the write errors of the delegation record.
        """
        if action not in ACTIONS:
            raise InvalidValue(f"action {action!r} is not one of {', '.join(ACTIONS)}", field="action")
        if reason is not None and len(reason) > MAX_REASON_LENGTH:
            raise InvalidValue(f"reason is longer than {MAX_REASON_LENGTH} characters", field="reason")
        sources, target = ACTIONS[action]
        async with self._lock:
            row = await self.get(app_id, identity)
            if action == "delete":
                await self.check_reviewer(identity, row.parent_prefix, DELETE_PERMISSION)
            if row.state not in sources:
                allowed = allowed_actions(row.state)
                raise InvalidTransition(
                    f"application {app_id} is {row.state}; it cannot {action}."
                    f" Allowed next: {', '.join(allowed) if allowed else 'nothing (final state)'}",
                    handle=row.prefix,
                    state=row.state,
                    allowed=allowed,
                )
            assert identity is not None  # check_reviewer refuses anonymous callers
            await self._effect(row, action, identity)
            entry = HistoryEntry(action, row.state, target, identity.to_text(), self.clock(), reason)
            if not await self.store.transition(app_id, row.state, entry):
                raise InvalidTransition(f"application {app_id} changed meanwhile; look again", handle=row.prefix)
            moved = await self.store.get(app_id)
        assert moved is not None
        return moved

    async def history(self, app_id: str) -> list[HistoryEntry]:
        return await self.store.history(app_id)

    # --- effects on the delegation record -------------------------------------

    async def _effect(self, row: ApplicationRow, action: str, identity: ValueReference) -> None:
        record = prefix_handle(row.prefix)
        if action == "approve":
            values = await self._delegation_values(row)
            values = await self.registry.prepare_values(record, values, accept_hashed=True)
            await self.registry.write(lambda txn, ctx: writes.put(txn, ctx, record, values), identity)
        elif action in ("disable", "enable"):
            await self.registry.write(
                lambda txn, ctx: _set_disabled(txn, ctx, record, row.parent_prefix, action == "disable"), identity
            )
        elif action == "delete":
            try:
                await self.registry.delete(record, identity)
            except HandleNotFound:
                pass  # deleted before a crash, or by hand: the end is the same

    async def _delegation_values(self, row: ApplicationRow) -> list[HandleValue]:
        application = Application.from_json(orjson.loads(row.body))
        record = prefix_handle(row.prefix).to_text()
        values = [HandleValue(SITE_INDEX, ValueType.HS_SITE, application.site, ttl=DELEGATION_TTL_SECONDS)]
        parent_record = await self.registry.store.get(prefix_record_key(row.parent_prefix))
        for offset, admin in enumerate(authz.record_admins(parent_record)):
            values.append(HandleValue(ReservedIndex.ADMIN + offset, ValueType.HS_ADMIN, admin))
        child_keys = []
        if row.secret_hash is not None:
            child_keys.append((ValueType.HS_SECKEY, row.secret_hash, PRIVATE_PERMISSIONS))
        if application.public_key is not None:
            child_keys.append((ValueType.HS_PUBKEY, application.public_key, "1110"))
        for offset, (kind, data, permissions) in enumerate(child_keys):
            values.append(HandleValue(ReservedIndex.AUTH + offset, kind, data, permissions=permissions))
        if child_keys:
            admin = AdminRef(record, ReservedIndex.AUTH, CHILD_PERMISSIONS)
            values.append(HandleValue(CHILD_ADMIN_INDEX, ValueType.HS_ADMIN, admin))
        return sorted(values, key=lambda v: v.index)


def _set_disabled(txn: Txn, ctx: writes.WriteContext, record: Handle, parent: str, disabled: bool) -> writes.WriteResult:
    """Add (or remove) the read-only disabled mark of ``record``, after
    checking the writer reviews ``parent``: written directly, since no
    admin may change a read-only value through :mod:`registry.writes`."""
    source = AdminSource(authz.record_admins(txn.get(prefix_record_key(parent))), REVIEW_PERMISSION)
    authz.run_sync(authz.check(ctx.identity, [source], what="disable or enable it", handle=record.to_text()), txn.get)
    existing = txn.get(record.key)
    if existing is None:
        raise HandleNotFound(f"{record} does not exist here", handle=record.to_text())
    old = existing.values()
    kept = [v for v in old if v.type != PREFIX_STATUS_TYPE]
    if disabled:
        taken = {v.index for v in kept}
        index = STATUS_INDEX
        while index in taken:
            index += 1
        mark = HandleValue(index, PREFIX_STATUS_TYPE, PREFIX_DISABLED.encode(), permissions=STATUS_PERMISSIONS)
        kept = sorted([*kept, mark], key=lambda v: v.index)
    if [v.index for v in kept] == [v.index for v in old] and all(a.same_content(b) for a, b in zip(kept, old)):
        return writes.WriteResult(existing.handle, "unchanged")
    before = {v.index: v for v in old}
    stamps = [before[v.index].timestamp if v.index in before and before[v.index].same_content(v) else txn.now for v in kept]
    txn.put(record.key, encode_record(existing.handle, kept, stamps), Op.UPDATE, ctx.actor)
    return writes.WriteResult(existing.handle, "updated")


def row_to_json(row: ApplicationRow, history: list[HistoryEntry] | None = None) -> dict[str, Any]:
    """An application as the HTTP API shows it (never the secret's hash)."""
    body = orjson.loads(row.body)
    has_identity = row.secret_hash is not None or "publicKey" in body
    out: dict[str, Any] = {
        "id": row.id,
        "prefix": row.prefix,
        "parentPrefix": row.parent_prefix,
        "state": row.state,
        "allowedActions": allowed_actions(row.state),
        "created": row.created,
        "updated": row.updated,
        "childIdentity": f"{ReservedIndex.AUTH}:{prefix_handle(row.prefix)}" if has_identity else None,
        "application": body,
    }
    if history is not None:
        out["history"] = [h.to_json() for h in history]
    return out
