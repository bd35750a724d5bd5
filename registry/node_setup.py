"""Setting up a node's data folder: database, homed prefix, first admin.

``init_node`` homes a prefix and writes its ``0.NA/<prefix>`` record:

- index 1, ``HS_SITE``: this node's server (address, HTTP port);
- index 100, ``HS_ADMIN``: ``300:0.NA/<prefix>`` with every permission;
- index 300, ``HS_SECKEY``: that identity's secret, stored hashed.

The identity and secret are written to ``admin.json`` in the data folder
(readable by the owner only) and returned; the node's database never keeps
the secret in the clear.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import orjson

from idcore.errors import HandleNotFound, IdnodeError, InvalidValue
from idcore.handle import check_prefix, prefix_handle
from idcore.settings import ADMIN_CREDENTIALS_NAME, DATABASE_NAME
from idcore.site import Interface, Server, Site
from idcore.values import (
    ALL_ADMIN_PERMISSIONS,
    PRIVATE_PERMISSIONS,
    AdminRef,
    HandleValue,
    ReservedIndex,
    ValueReference,
    ValueType,
)
from registry.node_key import node_key, write_private
from registry.service import Registry
from registry.sqlite_store import SqliteStore

#: Bytes of randomness in a generated admin secret.
GENERATED_SECRET_BYTES = 24

#: Index of the node's own HS_SITE value in its prefix record.
SITE_INDEX = 1


class AlreadyInitialised(IdnodeError):
    """The data folder already homes a prefix."""


@dataclass(frozen=True, slots=True)
class InitResult:
    """What ``init_node`` created."""

    prefix: str
    identity: str
    secret: str
    credentials_file: Path
    database: Path


def site_for(address: str, port: int) -> Site:
    """A one-server site answering queries and admin requests over HTTP."""
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise InvalidValue(f"site address {address!r} must be an IP address (Handle sites list addresses)") from None
    return Site(servers=(Server(1, address, (Interface("HTTP", port, query=True, admin=True),)),))


def prefix_record_values(prefix: str, secret: bytes, site: Site) -> list[HandleValue]:
    """The values of a freshly homed prefix's ``0.NA/<prefix>`` record."""
    record = prefix_handle(prefix).to_text()
    return [
        HandleValue(SITE_INDEX, ValueType.HS_SITE, site),
        HandleValue(ReservedIndex.ADMIN, ValueType.HS_ADMIN, AdminRef(record, ReservedIndex.AUTH, ALL_ADMIN_PERMISSIONS)),
        HandleValue(ReservedIndex.AUTH, ValueType.HS_SECKEY, secret, permissions=PRIVATE_PERMISSIONS),
    ]


async def init_node(
    data_dir: Path, prefix: str, *, site_address: str, site_port: int, secret: str | None = None
) -> InitResult:
    """Create ``data_dir`` (if needed), its database, and home ``prefix``.

    Raises:
        AlreadyInitialised: the database already homes a prefix.
        InvalidHandle / InvalidValue: a malformed prefix or site address.
    """
    check_prefix(prefix)
    site = site_for(site_address, site_port)
    data_dir.mkdir(parents=True, exist_ok=True)
    database = data_dir / DATABASE_NAME
    secret = secret or secrets.token_urlsafe(GENERATED_SECRET_BYTES)
    identity = f"{ReservedIndex.AUTH}:{prefix_handle(prefix)}"
    credentials_file = data_dir / ADMIN_CREDENTIALS_NAME
    async with SqliteStore(database) as store:
        registry = Registry(store)
        await registry.open()
        if registry.homed_prefixes:
            raise AlreadyInitialised(
                f"{data_dir} already homes {', '.join(registry.homed_prefixes)}; use a new folder"
            )
        # The secret is on disk before the node knows its hash: a crash in
        # between leaves a file to delete, never a node nobody can administer.
        write_private(credentials_file, orjson.dumps({"identity": identity, "secret": secret}) + b"\n")
        await registry.home_prefix(prefix, prefix_record_values(prefix, secret.encode("utf-8"), site))
    node_key(data_dir)  # the node's signing key (node_key.pem), made once
    return InitResult(prefix, identity, secret, credentials_file, database)


def mirror_site_for(address: str, port: int) -> Site:
    """A mirror's site (``primarySite`` false): resolvers ask it only when
    the primary sites do not answer."""
    return dataclasses.replace(site_for(address, port), primary=False)


def next_site_index(used: Iterable[int]) -> int:
    """The index for another HS_SITE value in a prefix record: the first free
    one after :data:`SITE_INDEX` (admin and secret indexes are far above)."""
    taken = set(used)
    index = SITE_INDEX + 1
    while index in taken:
        index += 1
    return index


async def add_mirror_site(
    registry: Registry, prefix: str, address: str, port: int, identity: ValueReference | None
) -> int:
    """Add a mirror site (``address``:``port``) to the ``0.NA/<prefix>`` record
    at ``registry``'s node: the prefix record at the primary, or the
    delegation record at the parent. Returns the new value's index.

    Raises:
        HandleNotFound: no such record here; the authorisation errors of a write.
    """
    record_handle = prefix_handle(prefix)
    record = await registry.store.get(record_handle.key)
    if record is None:
        raise HandleNotFound(f"{record_handle} does not exist here", handle=record_handle.to_text())
    index = next_site_index(v.index for v in record.values())
    value = HandleValue(index, ValueType.HS_SITE, mirror_site_for(address, port))
    await registry.add_values(record_handle, [value], identity, overwrite=False)
    return index
