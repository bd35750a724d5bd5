"""A node's records survive a restart on the same SQLite file."""

from __future__ import annotations

from registry.node_setup import init_node
from resolver.node_app import node_app
from tests.conftest import basic


async def test_records_survive_a_restart(aiohttp_client, tmp_path):
    result = await init_node(tmp_path, "88.118.2", site_address="127.0.0.1", site_port=8000, secret="s3cret-admin")
    body = {"values": [{"index": 1, "type": "URL", "data": "https://e/1"}, {"index": 2001, "type": "NAME", "data": "泵"}]}

    first = await aiohttp_client(node_app(result.database))
    assert (await first.put("/api/handles/88.118.2/R-1", json=body, headers=basic())).status == 201
    before = await (await first.get("/api/handles/88.118.2/R-1")).read()
    await first.close()

    second = await aiohttp_client(node_app(result.database))
    after = await (await second.get("/api/handles/88.118.2/R-1")).read()
    assert after == before
    assert (await second.get("/api/prefixes")).status == 200
    # the admin identity written by init still authenticates
    assert (await second.delete("/api/handles/88.118.2/R-1", headers=basic())).status == 200
    await second.close()
