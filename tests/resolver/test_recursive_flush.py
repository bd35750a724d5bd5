"""Flushing a recursive node's cache: one handle, or everything under a
prefix, through ``POST /api/cache/flush`` and through ``idnode flush`` run
as a real subprocess against a node on a real port."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import aiohttp
import pytest

from cache.entry import CacheEntry, EntryKind, answer_key, delegation_key
from idcore.handle import Handle
from resolver.recursive_api import RESOLVER
from tests.resolver.conftest import ENTERPRISE, SECONDARY, TOP, sample

IDNODE = Path(sys.executable).with_name("idnode")

#: Generous bound on one ``idnode flush`` run (interpreter start-up included).
CLI_TIMEOUT_SECONDS = 60

TOKEN = "flush-token-1"


def key(handle: str) -> str:
    return answer_key(Handle.from_text(handle).key)


def foreign_entries() -> dict[str, CacheEntry]:
    """Entries of other prefixes that a flush of 88.118 must leave alone
    (88.1180 and 88.119 only share leading characters with it)."""
    return {
        "h:88.1180/X": CacheEntry(EntryKind.NOT_FOUND, "88.1180/X", b"[]", 600, 0),
        "h:88.119/Y": CacheEntry(EntryKind.NOT_FOUND, "88.119/Y", b"[]", 600, 0),
        "d:88.1180": CacheEntry(EntryKind.DELEGATION, "88.1180", b"[]", 600, 0),
    }


async def flush(client, headers=None, **params):
    reply = await client.post("/api/cache/flush", params=params, headers=headers or {})
    return reply.status, await reply.json()


async def source(client, handle: str) -> str:
    reply = await client.get(f"/api/handles/{handle}")
    assert reply.status == 200
    await reply.read()
    return reply.headers["X-Idnode-Cache"]


async def test_flushing_one_handle_sends_only_it_upstream_again(resolver_client, node_requests):
    assert await source(resolver_client, sample(1)) == "upstream"
    assert await source(resolver_client, sample(2)) == "upstream"
    status, body = await flush(resolver_client, handle=sample(1))
    assert status == 200 and body == {"responseCode": 1, "handle": sample(1), "flushed": 1}
    assert await source(resolver_client, sample(1)) == "upstream"
    assert await source(resolver_client, sample(2)) == "memory"
    assert node_requests.count(ENTERPRISE, sample(1)) == 2
    assert node_requests.count(ENTERPRISE, sample(2)) == 1
    # a handle that is not cached flushes nothing
    assert (await flush(resolver_client, handle="88.118.2/NEVER-ASKED"))[1]["flushed"] == 0


@pytest.mark.parametrize(
    ("prefix", "flushed", "kept", "walk"),
    [
        # answers, and both delegations: the next walk starts at the top
        ("88.118", 4, [], {TOP: 1, SECONDARY: 1, ENTERPRISE: 1}),
        # answers and the enterprise delegation; the secondary's stays
        ("88.118.2", 3, [SECONDARY], {SECONDARY: 1, ENTERPRISE: 1}),
    ],
)
async def test_flushing_a_prefix_forgets_its_handles_sub_prefixes_and_delegations(
    resolver_client, node_requests, prefix, flushed, kept, walk
):
    assert await source(resolver_client, sample(1)) == "upstream"
    assert await source(resolver_client, sample(2)) == "upstream"
    memory = resolver_client.app[RESOLVER].memory
    for foreign_key, entry in foreign_entries().items():
        memory.store(foreign_key, entry, 10**9)

    status, body = await flush(resolver_client, prefix=prefix)
    assert status == 200 and body == {"responseCode": 1, "prefix": prefix, "flushed": flushed}
    assert memory.peek(key(sample(1))) is None and memory.peek(key(sample(2))) is None
    assert memory.peek(delegation_key(ENTERPRISE)) is None
    assert (memory.peek(delegation_key(SECONDARY)) is not None) == (SECONDARY in kept)
    for foreign_key in foreign_entries():
        assert memory.peek(foreign_key) is not None, foreign_key

    node_requests.clear()
    assert await source(resolver_client, sample(1)) == "upstream"
    assert node_requests.per_node() == walk


async def test_a_flush_names_exactly_one_of_handle_or_prefix(resolver_client):
    assert (await flush(resolver_client))[0] == 400
    status, body = await flush(resolver_client, handle=sample(1), prefix=ENTERPRISE)
    assert status == 400 and "exactly one" in body["message"]


async def test_with_an_admin_token_a_flush_needs_the_bearer_token(make_resolver_client):
    client = await make_resolver_client(admin_token=TOKEN)
    assert await source(client, sample(1)) == "upstream"

    status, body = await flush(client, handle=sample(1))
    assert status == 401 and body["responseCode"] == 402
    status, body = await flush(client, {"Authorization": "Bearer not-the-token"}, handle=sample(1))
    assert status in (401, 403) and body["responseCode"] == 403
    status, body = await flush(client, {"Authorization": f"Basic {TOKEN}"}, handle=sample(1))
    assert status == 401
    assert await source(client, sample(1)) == "memory"  # none of those flushed anything

    status, body = await flush(client, {"Authorization": f"Bearer {TOKEN}"}, handle=sample(1))
    assert status == 200 and body["flushed"] == 1
    assert await source(client, sample(1)) == "upstream"


# --- idnode flush, as a subprocess ------------------------------------------------


async def idnode(*args: str, token: str | None = None) -> tuple[int, str, str]:
    """Run ``idnode ARGS`` while this event loop keeps serving the resolver."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDNODE_")}
    if token is not None:
        env["IDNODE_RESOLVER_TOKEN"] = token
    process = await asyncio.create_subprocess_exec(
        str(IDNODE), *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), CLI_TIMEOUT_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    return process.returncode, out.decode(), err.decode()


async def warm(url: str, *handles: str) -> None:
    """Resolve ``handles`` through the node at ``url``, filling its cache."""
    async with aiohttp.ClientSession() as session:
        for handle in handles:
            async with session.get(f"{url}/api/handles/{handle}") as reply:
                assert reply.status == 200


async def test_idnode_flush_a_handle_and_a_prefix(serve_resolver):
    url, app = await serve_resolver()
    memory = app[RESOLVER].memory
    await warm(url, sample(1), sample(2))

    code, out, err = await idnode("flush", sample(1), "--resolver", url)
    assert code == 0, err
    assert out.strip() == f"flushed {sample(1)}: 1 entry"
    assert memory.peek(key(sample(1))) is None and memory.peek(key(sample(2))) is not None

    code, out, err = await idnode("flush", "--prefix", SECONDARY, "--resolver", url)
    assert code == 0, err
    assert out.strip() == f"flushed everything under {SECONDARY}: 3 entries"  # sample 2 and two delegations
    assert memory.peek(key(sample(2))) is None and memory.peek(delegation_key(SECONDARY)) is None

    code, _, err = await idnode("flush", sample(1), "--prefix", SECONDARY, "--resolver", url)
    assert code == 2 and "not both" in err


async def test_idnode_flush_with_the_admin_token(serve_resolver):
    url, app = await serve_resolver(admin_token=TOKEN)
    memory = app[RESOLVER].memory
    await warm(url, sample(1), sample(2))

    code, _, err = await idnode("flush", sample(1), "--resolver", url)
    assert code == 1 and "response code 402" in err
    code, _, err = await idnode("flush", sample(1), "--resolver", url, "--token", "wrong")
    assert code == 1 and "response code 403" in err
    assert memory.peek(key(sample(1))) is not None

    code, out, err = await idnode("flush", sample(1), "--resolver", url, "--token", TOKEN)
    assert code == 0, err
    assert memory.peek(key(sample(1))) is None
    code, out, err = await idnode("flush", sample(2), "--resolver", url, token=TOKEN)  # from the environment
    assert code == 0, err
    assert out.strip() == f"flushed {sample(2)}: 1 entry" and memory.peek(key(sample(2))) is None
