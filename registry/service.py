"""The registry of one node: lookups, writes, listing and batches over a store.

:class:`Registry` is what the node's front ends call. It knows which
prefixes the node homes, answers a lookup with the record, a prefix
referral or "not responsible", authenticates identities, prepares values
(secrets are hashed before they reach a transaction) and hands each write
to the store as one transaction.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, TypeVar

import orjson

from idcore import limits
from idcore.errors import HandleNotFound, IdnodeError, InvalidValue, PrefixDisabled, ServerNotResponsible
from idcore.handle import Handle, check_prefix, prefix_ancestors, prefix_handle, prefix_record_key
from idcore.rest_json import dumps
from idcore.values import (
    AdminPermission,
    HandleValue,
    ValueReference,
    ValueType,
    is_secret_key_type,
    type_is,
)
from registry import authz, batch, writes
from registry.auth import Authenticator
from registry.authz import AdminSource
from registry.batch import BatchLineError, BatchOp
from registry.records import StoredRecord
from registry.secret_hash import hash_secret, is_hashed, run_hashing, verify_secret
from registry.store import Store, Txn
from registry.writes import WriteContext, WriteResult

T = TypeVar("T")

#: Value types a prefix referral carries: where the child node's servers are.
REFERRAL_TYPES = (ValueType.HS_SITE, ValueType.HS_NA_DELEGATE, "HS_SERV")

#: A delegation record holding a value of this type whose text is
#: PREFIX_DISABLED answers PrefixDisabled instead of a referral (the parent's
#: prefix administration sets and clears it; see registry.prefix_admin).
PREFIX_STATUS_TYPE = "HS_PREFIX_STATUS"
PREFIX_DISABLED = "disabled"


class Resolution(NamedTuple):
    """The answer to a lookup.

    Attributes:
        response_code: 1 (the record) or 303 (a prefix referral).
        handle: the handle as stored (for 1) or as asked (for 303).
        values_json: JSON array of the values the reader may see, or of the
            referral's site values.
        public_record: the stored record when ``values_json`` is its public
            view (what most reads get), so its ready-made answer can be used.
        referral: for 303, the prefix handle (``0.NA/<prefix>``) whose site
            values are given, so a resolver knows which prefix they serve.
    """

    response_code: int
    handle: str
    values_json: bytes
    public_record: StoredRecord | None = None
    referral: str | None = None


class Registry:
    """Identifier registry of one node over a :class:`~registry.store.Store`.

    Args:
        store: an open store.
        auto_admin: add an HS_ADMIN naming the creator to handles created
            without one (as Handle servers do).
    """

    def __init__(self, store: Store, *, auto_admin: bool = True) -> None:
        self.store = store
        self.auto_admin = auto_admin
        self.authenticator = Authenticator(store)
        self._homed: frozenset[str] = frozenset()
        self._homed_display: tuple[str, ...] = ()

    async def open(self) -> None:
        """Load the homed prefixes from the store."""
        prefixes = await self.store.homed_prefixes()
        self._set_homed(prefixes)

    def _set_homed(self, prefixes: list[str]) -> None:
        self._homed_display = tuple(sorted(prefixes, key=str.upper))
        self._homed = frozenset(p.upper() for p in prefixes)

    @property
    def homed_prefixes(self) -> tuple[str, ...]:
        """The prefixes this node homes, as written."""
        return self._homed_display

    def context(self, identity: ValueReference | None) -> WriteContext:
        return WriteContext.of(identity, self._homed, auto_admin=self.auto_admin)

    # --- lookups -------------------------------------------------------------

    async def resolve(self, handle: Handle, *, identity: ValueReference | None = None) -> Resolution:
        """Look ``handle`` up as its authoritative node.

        Returns the record (values the reader may see: every value for an
        identity with READ_VALUE, else the publicly readable ones), or a
        prefix referral when the handle lies under a prefix this node has
        delegated (a ``0.NA/<prefix>`` record here with HS_SITE values).

        Raises:
            HandleNotFound: the handle would be here but is not.
            ServerNotResponsible: the handle's prefix neither lives here nor
                is delegated from here.
        """
        if not handle.is_prefix_handle and handle.prefix_key in self._homed:
            record = await self.store.get(handle.key)
            if record is None:
                raise HandleNotFound(f"{handle} does not exist", handle=handle.to_text())
            return await self._found(handle, record, identity)
        if handle.is_prefix_handle:
            record = await self.store.get(handle.key)
            if record is not None:
                return await self._found(handle, record, identity)
            namespace = handle.suffix
        else:
            namespace = handle.prefix
        for depth, ancestor in enumerate(prefix_ancestors(namespace)):
            if ancestor.upper() in self._homed:
                if handle.is_prefix_handle:
                    raise HandleNotFound(f"{handle} does not exist", handle=handle.to_text())
                break
            if handle.is_prefix_handle and depth == 0:
                continue  # the record itself was looked for above
            referral = await self._referral(ancestor, handle)
            if referral is not None:
                return Resolution(303, handle.to_text(), referral, referral=prefix_handle(ancestor).to_text())
        raise ServerNotResponsible("That prefix doesn't live here", handle=handle.to_text())

    async def _found(self, handle: Handle, record: StoredRecord, identity: ValueReference | None) -> Resolution:
        if identity is None or not record.has_private_values:
            return Resolution(1, record.handle, record.public_values_json, record)
        sources = [AdminSource(authz.record_admins(record), AdminPermission.READ_VALUE)]
        authority = writes.authority_for(handle, self._homed)
        if authority.record_key is not None:
            prefix_record = await self.store.get(authority.record_key)
            sources.append(AdminSource(authz.record_admins(prefix_record), AdminPermission.READ_VALUE))
        try:
            await authz.run_async(
                authz.check(identity, sources, what="read its private values", handle=handle.to_text()),
                self.store.get,
            )
        except IdnodeError:
            return Resolution(1, record.handle, record.public_values_json, record)
        return Resolution(1, record.handle, record.values_json)

    async def _referral(self, prefix: str, handle: Handle) -> bytes | None:
        record = await self.store.get(prefix_record_key(prefix))
        if record is None:
            return None
        items = orjson.loads(record.public_values_json)
        if any(item["type"] == PREFIX_STATUS_TYPE and _text_of(item) == PREFIX_DISABLED for item in items):
            raise PrefixDisabled(
                f"prefix {prefix} is disabled by its parent node; its identifiers are not resolved",
                handle=handle.to_text(),
                prefix=prefix,
            )
        sites = [item for item in items if any(type_is(item["type"], t) for t in REFERRAL_TYPES)]
        return dumps(sites) if sites else None

    # --- writes --------------------------------------------------------------

    async def prepare_values(
        self, handle: Handle | None, values: list[HandleValue], *, accept_hashed: bool = False
    ) -> list[HandleValue]:
        """Make values safe to store: every HS_SECKEY becomes a salted hash,
        readable by administrators only.

        A secret equal to the one already stored at the same index of
        ``handle``, or that stored hash itself sent back, keeps the stored
        hash, so writing the same record again changes nothing (``handle``
        is None for a handle yet to be named). Any other text, even one that
        looks like a hash, is hashed as a secret: a client cannot plant a
        hash of its own making. Only node set-up (``accept_hashed``) may
        hand over a hash made by :func:`~registry.secret_hash.hash_secret`.

        Raises:
            InvalidValue: a secret longer than MAX_SECRET_BYTES (it could
                never be presented).
        """
        if not any(is_secret_key_type(v.type) for v in values):
            return values
        existing = None if handle is None else await self.store.get(handle.key)
        stored = {v.index: v.data for v in existing.values()} if existing is not None else {}
        out = []
        for value in values:
            if is_secret_key_type(value.type):
                data = value.data
                assert isinstance(data, bytes)
                if len(data) > limits.MAX_SECRET_BYTES:
                    raise InvalidValue(
                        f"value {value.index}: the secret is longer than {limits.MAX_SECRET_BYTES} bytes",
                        handle=handle.to_text() if handle else None,
                    )
                previous = stored.get(value.index)
                if is_hashed(data) and (accept_hashed or data == previous):
                    pass  # the stored hash sent back unchanged, or node set-up handing one over
                elif isinstance(previous, bytes) and await run_hashing(verify_secret, data, previous):
                    data = previous  # the same secret again: keep its hash, change nothing
                else:
                    data = await run_hashing(hash_secret, data)
                value = value.replace(data=data, permissions=value.permissions[:2] + "00")
            out.append(value)
        return out

    async def write(self, fn: Callable[[Txn, WriteContext], T], identity: ValueReference | None) -> T:
        """Run one write function (from :mod:`registry.writes`) as a transaction."""
        ctx = self.context(identity)
        return await self.store.transact(lambda txn: fn(txn, ctx))

    async def put(
        self, handle: Handle, values: list[HandleValue], identity: ValueReference | None, *, overwrite: bool = True
    ) -> WriteResult:
        """Create ``handle``, or replace its record when ``overwrite``."""
        values = await self.prepare_values(handle, values)
        if overwrite:
            return await self.write(lambda txn, ctx: writes.put(txn, ctx, handle, values), identity)
        return await self.write(lambda txn, ctx: writes.create(txn, ctx, handle, values, idempotent=False), identity)

    async def add_values(
        self, handle: Handle, values: list[HandleValue], identity: ValueReference | None, *, overwrite: bool = True
    ) -> WriteResult:
        values = await self.prepare_values(handle, values)
        return await self.write(
            lambda txn, ctx: writes.add_values(txn, ctx, handle, values, overwrite=overwrite), identity
        )

    async def remove_values(self, handle: Handle, indexes: list[int], identity: ValueReference | None) -> WriteResult:
        return await self.write(lambda txn, ctx: writes.remove_values(txn, ctx, handle, indexes), identity)

    async def delete(self, handle: Handle, identity: ValueReference | None) -> WriteResult:
        return await self.write(lambda txn, ctx: writes.delete(txn, ctx, handle), identity)

    async def mint(self, base: str, values: list[HandleValue], identity: ValueReference | None) -> WriteResult:
        """Create a handle under ``base`` with a freshly minted suffix."""
        values = await self.prepare_values(None, values)
        return await self.write(lambda txn, ctx: writes.mint(txn, ctx, base, values), identity)

    async def apply_batch(
        self, items: list[BatchOp | BatchLineError], identity: ValueReference | None
    ) -> list[dict[str, Any]]:
        """Apply parsed batch lines as one durable transaction; a result per line.

        Returns only once every change is committed, so a caller may send the
        results on: no acknowledged line can be lost.
        """
        prepared = list(items)
        for position, item in enumerate(items):
            if isinstance(item, BatchOp) and any(is_secret_key_type(v.type) for v in item.values):
                prepared[position] = item._replace(values=await self.prepare_values(item.handle, item.values))
        ctx = self.context(identity)
        return await self.store.transact(lambda txn: batch.apply(txn, ctx, prepared))

    # --- prefixes and listing -------------------------------------------------

    async def home_prefix(self, prefix: str, values: list[HandleValue]) -> None:
        """Home ``prefix`` here and write its ``0.NA/<prefix>`` record (node set-up).

        Raises:
            InvalidHandle: the prefix is malformed.
        """
        check_prefix(prefix)
        record_handle = prefix_handle(prefix)
        values = await self.prepare_values(record_handle, values, accept_hashed=True)
        homed = self._homed | {prefix.upper()}
        ctx = WriteContext.of(None, homed, auto_admin=False, system=True)

        def home(txn: Txn) -> None:
            txn.set_homed(prefix, True, ctx.actor)
            writes.put(txn, ctx, record_handle, values)

        await self.store.transact(home)
        if prefix.upper() not in self._homed:
            self._set_homed([*self._homed_display, prefix])

    async def check_list_permission(self, prefix: str, identity: ValueReference | None) -> None:
        """Allow listing ``prefix`` to identities its HS_ADMIN grants LIST_HANDLES.

        Raises:
            ServerNotResponsible: the prefix is not homed here.
            AuthenticationNeeded, InvalidAdmin, InsufficientPermissions.
        """
        if prefix.upper() not in self._homed:
            raise ServerNotResponsible("That prefix doesn't live here", handle=prefix)
        record = await self.store.get(prefix_record_key(prefix))
        source = AdminSource(authz.record_admins(record), AdminPermission.LIST_HANDLES)
        await authz.run_async(
            authz.check(identity, [source], what="list its handles", handle=prefix), self.store.get
        )



def _text_of(item: dict[str, Any]) -> Any:
    """The ``value`` of a REST JSON value's data (None when it has none)."""
    data = item.get("data")
    return data.get("value") if isinstance(data, dict) else None
