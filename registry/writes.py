"""Write operations on handle records, run inside a store transaction.

Each function takes a :class:`~registry.store.Txn` and a
:class:`WriteContext`, checks responsibility and authorisation, and either
buffers its change in the transaction or raises without writing anything.
They are synchronous and do no I/O of their own: the store decides where
they run and commits what they buffered.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from idcore import limits
from idcore.errors import (
    HandleAlreadyExists,
    HandleNotFound,
    InsufficientPermissions,
    NodeError,
    ServerNotResponsible,
    ValueAlreadyExists,
    ValuesNotFound,
)
from idcore.handle import Handle, prefix_ancestors, prefix_record_key
from idcore.values import (
    AdminPermission,
    AdminRef,
    HandleValue,
    ReservedIndex,
    ValueReference,
    ValueType,
    check_record,
    type_is,
)
from registry import authz
from registry.authz import AdminSource
from registry.records import StoredRecord, decode_values, encode_record
from registry.store import Op, Txn

P = AdminPermission

#: Permissions of the HS_ADMIN value added to a handle created without one:
#: everything on the handle itself, nothing on derived prefixes or listing
#: (Handle's usual "011111110011").
AUTO_ADMIN_PERMISSIONS = (
    P.ADD_HANDLE | P.DELETE_HANDLE | P.MODIFY_VALUE | P.REMOVE_VALUE | P.ADD_VALUE
    | P.READ_VALUE | P.ADD_ADMIN | P.REMOVE_ADMIN | P.MODIFY_ADMIN
)


@dataclass(frozen=True, slots=True)
class WriteContext:
    """Who writes, and what this node is responsible for.

    Attributes:
        identity: the authenticated identity, or None for anonymous.
        homed: upper-cased prefixes this node homes.
        auto_admin: give a handle created without HS_ADMIN one naming the
            identity.
        system: node set-up writing its own records; skips authorisation.
            Never set from a request.
    """

    identity: ValueReference | None
    homed: frozenset[str]
    auto_admin: bool = True
    system: bool = False

    @property
    def actor(self) -> str | None:
        if self.system:
            return "system"
        return None if self.identity is None else self.identity.to_text()


@dataclass(frozen=True, slots=True)
class Authority:
    """Whose HS_ADMIN values govern a handle besides its own.

    Attributes:
        record_key: key of the ``0.NA/<prefix>`` record, or None when only
            the handle's own admins count (a homed prefix's own record).
        create: what that record's admins must grant to create the handle.
        delete: what they must grant to delete it.
    """

    record_key: str | None
    create: AdminPermission
    delete: AdminPermission


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a write did: the handle it wrote and how."""

    handle: str
    status: str  # "created", "replaced", "unchanged", "updated", "deleted"

    @property
    def created(self) -> bool:
        return self.status == "created"


def authority_for(handle: Handle, homed: frozenset[str]) -> Authority:
    """The authority over ``handle`` on a node homing ``homed``.

    Raises:
        ServerNotResponsible: the handle's prefix does not live here.
    """
    if handle.is_prefix_handle:
        described = handle.suffix.upper()
        if described in homed:
            return Authority(None, P(0), P.DELETE_HANDLE)
        for ancestor in prefix_ancestors(described)[1:]:
            if ancestor in homed:
                return Authority(prefix_record_key(ancestor), P.ADD_DERIVED_PREFIX, P.DELETE_DERIVED_PREFIX)
    elif handle.prefix_key in homed:
        return Authority(prefix_record_key(handle.prefix), P.ADD_HANDLE, P.DELETE_HANDLE)
    raise ServerNotResponsible("That prefix doesn't live here", handle=handle.to_text())


def create(txn: Txn, ctx: WriteContext, handle: Handle, values: list[HandleValue], *, idempotent: bool) -> WriteResult:
    """Create ``handle`` with ``values``.

    With ``idempotent``, an existing handle holding the same values (all but
    timestamps equal) is success, status "unchanged": a retried batch line
    does not fail as a duplicate.

    Raises:
        HandleAlreadyExists: the handle exists (with other values, if idempotent).
        ServerNotResponsible, AuthenticationNeeded, InvalidAdmin,
        InsufficientPermissions: as for every write.
    """
    authority = authority_for(handle, ctx.homed)
    existing = txn.get(handle.key)
    if existing is not None:
        if idempotent and _same_values(decode_values(existing), _with_auto_admin(ctx, values)):
            _authorize_change(txn, ctx, handle, authority, decode_values(existing), P(0))
            return WriteResult(existing.handle, "unchanged")
        raise HandleAlreadyExists(f"{handle} already exists", handle=handle.to_text())
    return _create_new(txn, ctx, handle, authority, values)


def put(txn: Txn, ctx: WriteContext, handle: Handle, values: list[HandleValue]) -> WriteResult:
    """Create ``handle`` or replace its whole record with ``values``.

    Values that did not change keep their timestamps.
    """
    authority = authority_for(handle, ctx.homed)
    existing = txn.get(handle.key)
    if existing is None:
        return _create_new(txn, ctx, handle, authority, values)
    old = decode_values(existing)
    _authorize_change(txn, ctx, handle, authority, old, _change_permissions(old, values, handle))
    stamped = _stamp(values, txn.now, old)
    txn.put(handle.key, encode_record(existing.handle, stamped), Op.UPDATE, ctx.actor)
    return WriteResult(existing.handle, "replaced")


def add_values(txn: Txn, ctx: WriteContext, handle: Handle, values: list[HandleValue], *, overwrite: bool) -> WriteResult:
    """Add ``values`` to an existing handle, replacing same-index values when
    ``overwrite``. The record stays ordered by index.

    Raises:
        HandleNotFound: no such handle.
        ValueAlreadyExists: an index is taken and ``overwrite`` is false.
    """
    authority = authority_for(handle, ctx.homed)
    existing = _existing(txn, handle)
    old = decode_values(existing)
    taken = {v.index for v in old}
    replaced = False
    for value in values:
        if value.index in taken:
            if not overwrite:
                raise ValueAlreadyExists(f"Index conflict for {value.index}", handle=handle.to_text(), index=value.index)
            replaced = True
    new_indexes = {v.index for v in values}
    merged = sorted([v for v in old if v.index not in new_indexes] + list(values), key=lambda v: v.index)
    check_record(merged)
    _authorize_change(txn, ctx, handle, authority, old, _change_permissions(old, merged, handle))
    txn.put(handle.key, encode_record(existing.handle, _stamp(merged, txn.now, old)), Op.UPDATE, ctx.actor)
    return WriteResult(existing.handle, "replaced" if replaced else "updated")


def remove_values(txn: Txn, ctx: WriteContext, handle: Handle, indexes: list[int]) -> WriteResult:
    """Remove the values at ``indexes`` from an existing handle.

    Raises:
        HandleNotFound: no such handle.
        ValuesNotFound: an index is not in the record (nothing is removed).
    """
    authority = authority_for(handle, ctx.homed)
    existing = _existing(txn, handle)
    old = decode_values(existing)
    present = {v.index for v in old}
    missing = sorted(set(indexes) - present)
    if missing:
        raise ValuesNotFound(
            f"{handle} has no value at index {', '.join(map(str, missing))}", handle=handle.to_text()
        )
    drop = set(indexes)
    kept = [v for v in old if v.index not in drop]
    _authorize_change(txn, ctx, handle, authority, old, _change_permissions(old, kept, handle))
    txn.put(handle.key, encode_record(existing.handle, kept), Op.UPDATE, ctx.actor)
    return WriteResult(existing.handle, "updated")


def delete(txn: Txn, ctx: WriteContext, handle: Handle) -> WriteResult:
    """Delete ``handle`` and all its values.

    Raises:
        HandleNotFound: no such handle.
    """
    authority = authority_for(handle, ctx.homed)
    existing = _existing(txn, handle)
    if not ctx.system:
        sources = [AdminSource(authz.record_admins(existing), P.DELETE_HANDLE)]
        if authority.record_key is not None:
            sources.append(AdminSource(authz.record_admins(txn.get(authority.record_key)), authority.delete))
        authz.run_sync(authz.check(ctx.identity, sources, what="delete it", handle=handle.to_text()), txn.get)
    txn.delete(handle.key, existing.handle, ctx.actor)
    return WriteResult(existing.handle, "deleted")


def mint(txn: Txn, ctx: WriteContext, base: str, values: list[HandleValue]) -> WriteResult:
    """Create a handle named ``base`` plus a fresh random suffix part.

    ``base`` is a prefix (``88.118.2``) or the start of a handle
    (``88.118.2/PRD-``); the new part is a lower-case UUID, as the Handle
    server mints. Retries on the (astronomically unlikely) collision.

    Raises:
        InvalidHandle: ``base`` plus a UUID is not a valid handle.
        NodeError: no free name after MAX_MINT_ATTEMPTS.
    """
    if "/" not in base:
        base += "/"
    for _ in range(limits.MAX_MINT_ATTEMPTS):
        handle = Handle.from_text(base + str(uuid.uuid4()))
        if txn.get(handle.key) is None:
            return create(txn, ctx, handle, values, idempotent=False)
    raise NodeError(f"no unused suffix under {base!r} after {limits.MAX_MINT_ATTEMPTS} attempts")


def _existing(txn: Txn, handle: Handle) -> StoredRecord:
    existing = txn.get(handle.key)
    if existing is None:
        raise HandleNotFound(f"{handle} does not exist", handle=handle.to_text())
    return existing


def _create_new(txn: Txn, ctx: WriteContext, handle: Handle, authority: Authority, values: list[HandleValue]) -> WriteResult:
    if not ctx.system:
        admins = () if authority.record_key is None else authz.record_admins(txn.get(authority.record_key))
        source = AdminSource(admins, authority.create)
        authz.run_sync(authz.check(ctx.identity, [source], what="create it", handle=handle.to_text()), txn.get)
    record_values = _stamp(_with_auto_admin(ctx, values), txn.now, ())
    check_record(record_values)
    text = handle.to_text()
    txn.put(handle.key, encode_record(text, record_values), Op.CREATE, ctx.actor)
    return WriteResult(text, "created")


def _authorize_change(
    txn: Txn, ctx: WriteContext, handle: Handle, authority: Authority, old: list[HandleValue], needed: AdminPermission
) -> None:
    if ctx.system:
        return
    sources = [AdminSource(authz.admin_refs(old), needed)]
    if authority.record_key is not None:
        sources.append(AdminSource(authz.record_admins(txn.get(authority.record_key)), needed))
    authz.run_sync(authz.check(ctx.identity, sources, what="change it this way", handle=handle.to_text()), txn.get)


def _change_permissions(old: list[HandleValue], new: list[HandleValue], handle: Handle) -> AdminPermission:
    """The HS_ADMIN permissions a change from ``old`` to ``new`` needs.

    Raises:
        InsufficientPermissions: the change touches a read-only value
            (admin write bit clear), which no permission allows.
    """
    before = {v.index: v for v in old}
    needed = P(0)
    for value in new:
        previous = before.pop(value.index, None)
        if previous is None:
            needed |= P.ADD_ADMIN if _is_admin(value) else P.ADD_VALUE
        elif not previous.same_content(value):
            _check_writable(previous, handle)
            needed |= P.MODIFY_ADMIN if _is_admin(value) or _is_admin(previous) else P.MODIFY_VALUE
    for previous in before.values():
        _check_writable(previous, handle)
        needed |= P.REMOVE_ADMIN if _is_admin(previous) else P.REMOVE_VALUE
    return needed


def _check_writable(value: HandleValue, handle: Handle) -> None:
    if not value.admin_write:
        raise InsufficientPermissions(f"Value {value.index} is read-only", handle=handle.to_text())


def _is_admin(value: HandleValue) -> bool:
    return type_is(value.type, ValueType.HS_ADMIN)


def _with_auto_admin(ctx: WriteContext, values: list[HandleValue]) -> list[HandleValue]:
    """``values`` plus an HS_ADMIN naming the writer when they have none."""
    if not ctx.auto_admin or ctx.identity is None or any(_is_admin(v) for v in values):
        return values
    taken = {v.index for v in values}
    index = ReservedIndex.ADMIN
    while index in taken:
        index += 1
    admin = AdminRef(ctx.identity.handle, ctx.identity.index, AUTO_ADMIN_PERMISSIONS)
    return [*values, HandleValue(index, ValueType.HS_ADMIN, admin)]


def _stamp(values: list[HandleValue], now: int, old: list[HandleValue] | tuple[()]) -> list[HandleValue]:
    """Timestamp values with ``now``, except those unchanged from ``old``."""
    before = {v.index: v for v in old}
    out = []
    for value in values:
        previous = before.get(value.index)
        if previous is not None and previous.same_content(value):
            out.append(value.with_timestamp(previous.timestamp))
        else:
            out.append(value.with_timestamp(now))
    return out


def _same_values(stored: list[HandleValue], wanted: list[HandleValue]) -> bool:
    if len(stored) != len(wanted):
        return False
    by_index = {v.index: v for v in stored}
    return all(v.index in by_index and by_index[v.index].same_content(v) for v in wanted)
