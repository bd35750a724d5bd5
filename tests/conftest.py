"""Fixtures shared across the suite: a node homing 88.118.2 with one admin."""

from __future__ import annotations

import pytest

from registry.memory_store import MemoryStore
from registry.node_setup import prefix_record_values, site_for
from registry.secret_hash import hash_secret
from registry.service import Registry
from registry.sqlite_store import SqliteStore
from resolver.rest_client import basic_auth_header

PREFIX = "88.118.2"
ADMIN = "300:0.NA/88.118.2"
SECRET = "s3cret-admin"


def basic(identity: str = ADMIN, secret: str = SECRET) -> dict[str, str]:
    """Headers carrying Basic credentials the way Handle clients send them."""
    return {"Authorization": basic_auth_header(identity, secret)}


@pytest.fixture(scope="session")
def admin_secret_hash() -> bytes:
    # scrypt is slow on purpose; hash the admin secret once per session.
    return hash_secret(SECRET.encode())


async def home(registry: Registry, secret_hash: bytes, prefix: str = PREFIX, port: int = 8000) -> None:
    await registry.home_prefix(prefix, prefix_record_values(prefix, secret_hash, site_for("127.0.0.1", port)))


@pytest.fixture
async def registry(admin_secret_hash):
    """A registry over the memory store, homing 88.118.2."""
    store = MemoryStore()
    registry = Registry(store)
    await registry.open()
    await home(registry, admin_secret_hash)
    return registry


@pytest.fixture
async def sqlite_registry(tmp_path, admin_secret_hash):
    """A registry over a real SQLite file, homing 88.118.2."""
    async with SqliteStore(tmp_path / "node.sqlite3") as store:
        registry = Registry(store)
        await registry.open()
        await home(registry, admin_secret_hash)
        yield registry
