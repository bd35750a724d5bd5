"""Fixtures for the cache tiers: a real redis-server of the tests' own."""

from __future__ import annotations

import shutil

import pytest

from tests.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """One redis-server on a free loopback port for the whole session (never
    the machine's own on 6379); skips the tests when it is not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (scripts/test.sh installs Debian's redis-server package)")
    with RedisServer(binary, tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_url(redis_server) -> str:
    """URL of the test redis-server, running and empty."""
    # An outage test may have left it killed or frozen.
    redis_server.ensure_running()
    redis_server.flushall()
    return redis_server.url
