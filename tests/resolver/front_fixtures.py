"""Helpers for tests of the recursive node's HTTP front end: asking a node
of a :class:`~resolver.hierarchy.LocalHierarchy` directly, registering
records at it, and taking it down and up again."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from idcore.handle import Handle
from idcore.rest_json import values_from_json
from resolver.hierarchy import LocalNode


async def ask_node(node: LocalNode, path: str, **params: Any) -> tuple[int, bytes]:
    """``GET path`` at ``node`` itself (no resolver): status and body."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(node.url + path, params=params, allow_redirects=False) as reply,
    ):
        return reply.status, await reply.read()


async def put_record(node: LocalNode, handle: str, values: list[dict[str, Any]]) -> None:
    """Create or replace ``handle`` at ``node`` as its admin (REST JSON values)."""
    await node.registry.put(Handle.from_text(handle), values_from_json(values), node.admin)


def text_value(index: int, kind: str, text: str) -> dict[str, Any]:
    return {"index": index, "type": kind, "data": {"format": "string", "value": text}}


async def take_down(node: LocalNode) -> None:
    """Make ``node`` unreachable: close its port and the keep-alive
    connections clients still hold to it (``LocalNode.stop`` closes only
    the listening socket, and a pooled connection would still be served)."""
    await node.stop()
    for connection in node.runner.server.connections:  # type: ignore[union-attr]
        connection.force_close()
    await asyncio.sleep(0.01)  # let the clients see their connections close
