"""Write (and private read) authorisation, Handle style.

An identity (``index:handle`` naming an HS_SECKEY or HS_PUBKEY value) may do
something to a handle when an HS_ADMIN value grants it the permission:
either an HS_ADMIN of the handle itself or one of the prefix the handle is
under (``0.NA/<prefix>``). An HS_ADMIN names the identity directly, or names
an HS_VLIST (a group) whose members include it, within the named limits on
group depth and on groups visited per check.

The check is written once, sans-I/O, as a generator that yields the key of
each group record it needs and receives the record: :func:`run_sync` drives
it inside a write transaction, :func:`run_async` over the store.
"""

from __future__ import annotations

import functools
from typing import Awaitable, Callable, Generator, Iterable, NamedTuple

from idcore import limits
from idcore.errors import AuthenticationNeeded, IdnodeError, InsufficientPermissions, InvalidAdmin
from idcore.handle import Handle
from idcore.values import AdminPermission, AdminRef, HandleValue, ValueReference, ValueType, type_is
from registry.records import StoredRecord

#: Distinct admin lists and identity handles remembered between checks.
ADMIN_CACHE_SIZE = 4096

#: Records larger than this are not remembered by content (prefix records,
#: whose admins a batch asks for on every line, are far smaller).
ADMIN_CACHE_MAX_RECORD_BYTES = 16 * 1024

# A check yields record keys and is sent back the record (or None); it
# returns None when allowed, or the error to raise.
Check = Generator[str, "StoredRecord | None", "IdnodeError | None"]


class AdminSource(NamedTuple):
    """HS_ADMIN values that may authorise an operation, and what they must grant.

    The same operation asks different bits of different sources: creating
    ``0.NA/88.118.2.5`` needs ADD_DERIVED_PREFIX from the prefix's admins,
    deleting a handle needs DELETE_HANDLE from its own.
    """

    admins: tuple[AdminRef, ...]
    needed: AdminPermission


def admin_refs(values: Iterable[HandleValue]) -> tuple[AdminRef, ...]:
    """The HS_ADMIN data among ``values``."""
    return tuple(v.data for v in values if isinstance(v.data, AdminRef))


def record_admins(record: StoredRecord | None) -> tuple[AdminRef, ...]:
    """The HS_ADMIN data of a stored record (none for a missing record)."""
    if record is None:
        return ()
    if len(record.blob) > ADMIN_CACHE_MAX_RECORD_BYTES:
        return admin_refs(record.values())
    return _admins_of(record.blob)


@functools.lru_cache(maxsize=ADMIN_CACHE_SIZE)
def _admins_of(blob: bytes) -> tuple[AdminRef, ...]:
    # A batch asks the same prefix record for its admins once per line;
    # decoding it once per distinct content keeps that off the hot path.
    return admin_refs(StoredRecord("", blob).values())


def check(identity: ValueReference | None, sources: list[AdminSource], *, what: str, handle: str) -> Check:
    """Decide whether ``identity`` may do ``what`` to ``handle``.

    Allowed when, for some source, the identity is one of the source's
    admins and the permissions of its matching admin values together include
    everything the source needs (nothing, for a change that changes nothing).

    Returns (as the generator's value) None when allowed; otherwise
    AuthenticationNeeded (no identity), InvalidAdmin (the identity
    administers nothing here) or InsufficientPermissions (it does, but
    without the permission).
    """
    if identity is None:
        return AuthenticationNeeded(f"{what} needs an authenticated identity", handle=handle)
    groups = _GroupSearch(identity)
    is_admin = False
    for source in sources:
        needed = int(source.needed)  # plain ints: IntFlag arithmetic is slow
        granted = 0
        admin_here = False
        for admin in source.admins:
            if (yield from groups.reaches(admin.handle, admin.index)):
                admin_here = True
                granted |= int(admin.permissions)
                if (granted & needed) == needed:
                    return None
        is_admin = is_admin or admin_here
    if not is_admin:
        return InvalidAdmin(
            f"{identity.to_text()} is not an administrator of {handle} or its prefix", handle=handle
        )
    return InsufficientPermissions(
        f"{identity.to_text()} administers {handle} but may not {what}", handle=handle
    )


class _GroupSearch:
    """Whether an admin reference reaches the identity, directly or through
    HS_VLIST groups: breadth first, each group value visited once per check,
    at most MAX_ADMIN_GROUP_DEPTH levels and MAX_ADMIN_GROUP_VISITS groups
    deep, so that cyclic or huge groups cost a bounded amount of work."""

    def __init__(self, identity: ValueReference) -> None:
        self.identity = identity
        self.identity_key = _handle_key(identity.handle)
        self.visited: dict[tuple[str, int], int] = {}  # group value -> shallowest depth seen
        self.records: dict[str, list[HandleValue] | None] = {}

    def reaches(self, ref_handle: str, ref_index: int) -> Generator[str, StoredRecord | None, bool]:
        if self.identity_key is None:
            return False
        frontier = [(ref_handle, ref_index)]
        for depth in range(limits.MAX_ADMIN_GROUP_DEPTH + 1):
            deeper: list[tuple[str, int]] = []
            for handle, index in frontier:
                key = _handle_key(handle)
                if key is None:
                    continue
                if key == self.identity_key and index in (0, self.identity.index):
                    return True
                if depth == limits.MAX_ADMIN_GROUP_DEPTH or self.visited.get((key, index), depth + 1) <= depth:
                    continue
                self.visited[(key, index)] = depth
                if len(self.visited) > limits.MAX_ADMIN_GROUP_VISITS:
                    return False
                if key not in self.records:
                    record = yield key
                    self.records[key] = None if record is None else record.values()
                for value in self.records[key] or ():
                    if type_is(value.type, ValueType.HS_VLIST) and index in (0, value.index):
                        deeper.extend((member.handle, member.index) for member in value.data)
            if not deeper:
                return False
            frontier = deeper
        return False


@functools.lru_cache(maxsize=ADMIN_CACHE_SIZE)
def _handle_key(text: str) -> str | None:
    try:
        return Handle.from_text(text).key
    except IdnodeError:
        return None


def run_sync(gen: Check, fetch: Callable[[str], StoredRecord | None]) -> bool:
    """Drive a check with a synchronous fetch; raise its error if refused.

    Returns True when the decision needed no record beyond the sources
    (no group was looked up), so it may be reused for the same sources.
    """
    fetched = False
    try:
        key = next(gen)
        while True:
            fetched = True
            key = gen.send(fetch(key))
    except StopIteration as stop:
        if stop.value is not None:
            raise stop.value from None
    return not fetched


async def run_async(gen: Check, fetch: Callable[[str], Awaitable[StoredRecord | None]]) -> None:
    """Drive a check with an async fetch; raise its error if refused."""
    try:
        key = next(gen)
        while True:
            key = gen.send(await fetch(key))
    except StopIteration as stop:
        if stop.value is not None:
            raise stop.value from None
