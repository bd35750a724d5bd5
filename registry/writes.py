"""Write operations on handle records, run inside a store transaction.

Each function takes a :class:`~registry.store.Txn` and a
:class:`WriteContext`, checks responsibility and authorisation, and either
buffers its change in the transaction or raises without writing anything.
They are synchronous and do no I/O of their own: the store decides where
they run and commits what they buffered.
"""

from __future__ import annotations

import functools
import uuid
from typing import NamedTuple

from idcore import limits
from idcore.errors import (
    HandleAlreadyExists,
    HandleNotFound,
    InsufficientPermissions,
    InvalidValue,
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
    is_secret_key_type,
)
from idcore.pubkey import PublicKey
from registry import authz
from registry.authz import AdminSource
from registry.records import StoredRecord, encode_record
from registry.store import Op, Txn

P = AdminPermission

#: Permissions of the HS_ADMIN value added to a handle created without one:
#: everything on the handle itself, nothing on derived prefixes or listing
#: (Handle's usual "011111110011").
AUTO_ADMIN_PERMISSIONS = (
    P.ADD_HANDLE | P.DELETE_HANDLE | P.MODIFY_VALUE | P.REMOVE_VALUE | P.ADD_VALUE
    | P.READ_VALUE | P.ADD_ADMIN | P.REMOVE_ADMIN | P.MODIFY_ADMIN
)


class WriteContext(NamedTuple):
    """Who writes, and what this node is responsible for. Build with :meth:`of`.

    Attributes:
        identity: the authenticated identity, or None for anonymous.
        homed: upper-cased prefixes this node homes.
        auto_admin: give a handle created without HS_ADMIN one naming the
            identity.
        system: node set-up writing its own records; skips authorisation.
            Never set from a request.
        actor: who the journal records as making the change.
    """

    identity: ValueReference | None
    homed: frozenset[str]
    auto_admin: bool
    system: bool
    actor: str | None

    @classmethod
    def of(
        cls, identity: ValueReference | None, homed: frozenset[str], *, auto_admin: bool = True, system: bool = False
    ) -> WriteContext:
        actor = "system" if system else None if identity is None else identity.to_text()
        return cls(identity, homed, auto_admin, system, actor)


class Authority(NamedTuple):
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


class WriteResult(NamedTuple):
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
        authority = _authority(handle.suffix.upper(), True, homed)
    else:
        authority = _authority(handle.prefix_key, False, homed)
    if authority is None:
        raise ServerNotResponsible("That prefix doesn't live here", handle=handle.to_text())
    return authority


@functools.lru_cache(maxsize=1024)
def _authority(namespace: str, prefix_handle: bool, homed: frozenset[str]) -> Authority | None:
    # Every line of a batch under one prefix asks the same question.
    if prefix_handle:
        if namespace in homed:
            return Authority(None, P(0), P.DELETE_HANDLE)
        for ancestor in prefix_ancestors(namespace)[1:]:
            if ancestor in homed:
                return Authority(prefix_record_key(ancestor), P.ADD_DERIVED_PREFIX, P.DELETE_DERIVED_PREFIX)
        return None
    if namespace in homed:
        return Authority(prefix_record_key(namespace), P.ADD_HANDLE, P.DELETE_HANDLE)
    return None


def create(txn: Txn, ctx: WriteContext, handle: Handle, values: list[HandleValue], *, idempotent: bool) -> WriteResult:
    """Create ``handle`` with ``values``.

    With ``idempotent``, an existing handle holding the same values (all but
    timestamps equal) is success, status "unchanged": a retried batch line
    does not fail as a duplicate. Only an administrator of the handle learns
    whether its values match.

    Raises:
        HandleAlreadyExists: the handle exists (with other values, if idempotent).
        ServerNotResponsible, AuthenticationNeeded, InvalidAdmin,
        InsufficientPermissions: as for every write.
    """
    authority = authority_for(handle, ctx.homed)
    existing = txn.get(handle.key)
    if existing is None:
        return _create_new(txn, ctx, handle, authority, values)
    if idempotent:
        old = existing.values()
        _authorize_change(txn, ctx, handle, authority, existing, P(0))
        if _same_values(old, _with_auto_admin(ctx, values)):
            return WriteResult(existing.handle, "unchanged")
    raise HandleAlreadyExists(f"{handle} already exists", handle=handle.to_text())


def put(txn: Txn, ctx: WriteContext, handle: Handle, values: list[HandleValue]) -> WriteResult:
    """Create ``handle`` or replace its whole record with ``values``.

    Values that did not change keep their timestamps.
    """
    authority = authority_for(handle, ctx.homed)
    existing = txn.get(handle.key)
    if existing is None:
        return _create_new(txn, ctx, handle, authority, values)
    old = existing.values()
    _authorize_change(txn, ctx, handle, authority, existing, P(0))
    _authorize_change(txn, ctx, handle, authority, existing, _change_permissions(old, values, handle))
    txn.put(handle.key, _record(existing.handle, values, _timestamps(values, txn.now, old)), Op.UPDATE, ctx.actor)
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
    old = existing.values()
    _authorize_change(txn, ctx, handle, authority, existing, P(0))  # before saying anything about the record
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
    _authorize_change(txn, ctx, handle, authority, existing, _change_permissions(old, merged, handle))
    txn.put(handle.key, _record(existing.handle, merged, _timestamps(merged, txn.now, old)), Op.UPDATE, ctx.actor)
    return WriteResult(existing.handle, "replaced" if replaced else "updated")


def remove_values(txn: Txn, ctx: WriteContext, handle: Handle, indexes: list[int]) -> WriteResult:
    """Remove the values at ``indexes`` from an existing handle.

    Raises:
        HandleNotFound: no such handle.
        ValuesNotFound: an index is not in the record (nothing is removed).
    """
    authority = authority_for(handle, ctx.homed)
    existing = _existing(txn, handle)
    old = existing.values()
    _authorize_change(txn, ctx, handle, authority, existing, P(0))  # before saying anything about the record
    present = {v.index for v in old}
    missing = sorted(set(indexes) - present)
    if missing:
        raise ValuesNotFound(
            f"{handle} has no value at index {', '.join(map(str, missing))}", handle=handle.to_text()
        )
    drop = set(indexes)
    kept = [v for v in old if v.index not in drop]
    _authorize_change(txn, ctx, handle, authority, existing, _change_permissions(old, kept, handle))
    txn.put(handle.key, _record(existing.handle, kept, [v.timestamp for v in kept]), Op.UPDATE, ctx.actor)
    return WriteResult(existing.handle, "updated")


def delete(txn: Txn, ctx: WriteContext, handle: Handle) -> WriteResult:
    """Delete ``handle`` and all its values.

    Raises:
        HandleNotFound: no such handle.
    """
    authority = authority_for(handle, ctx.homed)
    existing = _existing(txn, handle)
    sources = [AdminSource(authz.record_admins(existing), P.DELETE_HANDLE)]
    if authority.record_key is not None:
        sources.append(AdminSource(authz.record_admins(txn.get(authority.record_key)), authority.delete))
    _authorize(txn, ctx, sources, "delete it", handle)
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
        try:
            return create(txn, ctx, Handle.from_text(base + str(uuid.uuid4())), values, idempotent=False)
        except HandleAlreadyExists:
            continue
    raise NodeError(f"no unused suffix under {base!r} after {limits.MAX_MINT_ATTEMPTS} attempts")


def _existing(txn: Txn, handle: Handle) -> StoredRecord:
    existing = txn.get(handle.key)
    if existing is None:
        raise HandleNotFound(f"{handle} does not exist", handle=handle.to_text())
    return existing


def _authorize(txn: Txn, ctx: WriteContext, sources: list[AdminSource], what: str, handle: Handle) -> None:
    """Refuse unless ``sources`` let the writer do ``what``.

    A decision that needed no group lookup depends only on the identity
    and the sources, so it is remembered for the rest of the transaction:
    a batch of creates under one prefix checks the prefix's admins once.
    """
    if ctx.system:
        return
    memo_key = ("authz", ctx.identity, *((id(s.admins), s.needed) for s in sources))
    if memo_key in txn.memo:
        return
    reusable = authz.run_sync(authz.check(ctx.identity, sources, what=what, handle=handle.to_text()), txn.get)
    if reusable:
        # keep the admin tuples alive so that their ids in the key stay theirs
        txn.memo[memo_key] = [s.admins for s in sources]


def _create_new(txn: Txn, ctx: WriteContext, handle: Handle, authority: Authority, values: list[HandleValue]) -> WriteResult:
    admins = () if authority.record_key is None else authz.record_admins(txn.get(authority.record_key))
    _authorize(txn, ctx, [AdminSource(admins, authority.create)], "create it", handle)
    if handle.is_prefix_handle:
        _refuse_below_delegation(txn, handle, authority)
    record_values = _with_auto_admin(ctx, values)
    check_record(record_values)
    text = handle.to_text()
    txn.put(handle.key, _record(text, record_values, [txn.now] * len(record_values)), Op.CREATE, ctx.actor)
    return WriteResult(text, "created")


def _refuse_below_delegation(txn: Txn, handle: Handle, authority: Authority) -> None:
    """Refuse ``0.NA/<prefix>`` when a shorter prefix between it and ours is
    delegated from here: that part of the tree belongs to the child node, and
    a record here would shadow the child's delegation."""
    for ancestor in prefix_ancestors(handle.suffix)[1:]:
        key = prefix_record_key(ancestor)
        if key == authority.record_key:
            return
        if txn.get(key) is not None:
            raise ServerNotResponsible(
                f"{handle.suffix} lies under {ancestor}, which is delegated to another node", handle=handle.to_text()
            )


def _record(handle_text: str, values: list[HandleValue], timestamps: list[int]) -> StoredRecord:
    """The stored form of a record, refused when it outgrows MAX_RECORD_BYTES
    (values are added a request at a time, so no request limit bounds it)."""
    record = encode_record(handle_text, values, timestamps)
    if len(record.blob) > limits.MAX_RECORD_BYTES:
        raise InvalidValue(
            f"{handle_text} would take {len(record.blob)} bytes; the limit is {limits.MAX_RECORD_BYTES} per record",
            handle=handle_text,
            limit="MAX_RECORD_BYTES",
        )
    return record


def _authorize_change(
    txn: Txn, ctx: WriteContext, handle: Handle, authority: Authority, existing: StoredRecord, needed: AdminPermission
) -> None:
    """Refuse unless the admins of ``existing`` or of its prefix grant ``needed``."""
    sources = [AdminSource(authz.record_admins(existing), needed)]
    if authority.record_key is not None:
        sources.append(AdminSource(authz.record_admins(txn.get(authority.record_key)), needed))
    _authorize(txn, ctx, sources, "change it this way", handle)


def _change_permissions(old: list[HandleValue], new: list[HandleValue], handle: Handle) -> AdminPermission:
    """The HS_ADMIN permissions a change from ``old`` to ``new`` needs
    (value permissions for ordinary values, admin permissions for the values
    access control rests on).

    Raises:
        InsufficientPermissions: the change touches a read-only value
            (admin write bit clear), which no permission allows.
    """
    before = {v.index: v for v in old}
    needed = P(0)
    for value in new:
        previous = before.pop(value.index, None)
        if previous is None:
            needed |= P.ADD_ADMIN if _guards_access(value) else P.ADD_VALUE
        elif not previous.same_content(value):
            _check_writable(previous, handle)
            needed |= P.MODIFY_ADMIN if _guards_access(value) or _guards_access(previous) else P.MODIFY_VALUE
    for previous in before.values():
        _check_writable(previous, handle)
        needed |= P.REMOVE_ADMIN if _guards_access(previous) else P.REMOVE_VALUE
    return needed


def _check_writable(value: HandleValue, handle: Handle) -> None:
    if not value.admin_write:
        raise InsufficientPermissions(f"Value {value.index} is read-only", handle=handle.to_text())


def _is_admin(value: HandleValue) -> bool:
    # a value's data class follows its type, so this is "type is HS_ADMIN"
    return isinstance(value.data, AdminRef)


def _guards_access(value: HandleValue) -> bool:
    """True for the values access control rests on: HS_ADMIN grants, and
    the keys and groups they name (HS_SECKEY, HS_PUBKEY, HS_VLIST).
    Changing them needs the *_ADMIN permissions, not just value rights,
    or whoever may edit a value could replace the root admin's key."""
    return isinstance(value.data, (AdminRef, PublicKey, tuple)) or is_secret_key_type(value.type)


def _with_auto_admin(ctx: WriteContext, values: list[HandleValue]) -> list[HandleValue]:
    """``values`` plus an HS_ADMIN naming the writer when they have none."""
    if not ctx.auto_admin or ctx.identity is None or any(_is_admin(v) for v in values):
        return values
    taken = {v.index for v in values}
    index = ReservedIndex.ADMIN
    while index in taken:
        index += 1
    return [*values, _auto_admin_value(ctx.identity, index)]


@functools.lru_cache(maxsize=256)
def _auto_admin_value(identity: ValueReference, index: int) -> HandleValue:
    # One immutable value serves every handle a writer creates.
    return HandleValue(index, ValueType.HS_ADMIN, AdminRef(identity.handle, identity.index, AUTO_ADMIN_PERMISSIONS))


def _timestamps(values: list[HandleValue], now: int, old: list[HandleValue]) -> list[int]:
    """``now`` for each value, except those unchanged from ``old``, which
    keep their timestamp (as the Handle server does on overwrite)."""
    before = {v.index: v for v in old}
    out = []
    for value in values:
        previous = before.get(value.index)
        out.append(previous.timestamp if previous is not None and previous.same_content(value) else now)
    return out


def _same_values(stored: list[HandleValue], wanted: list[HandleValue]) -> bool:
    if len(stored) != len(wanted):
        return False
    by_index = {v.index: v for v in stored}
    return all(v.index in by_index and by_index[v.index].same_content(v) for v in wanted)
