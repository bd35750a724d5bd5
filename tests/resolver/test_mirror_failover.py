"""Resolution survives stopping the primary: the enterprise node 88.118.2
has a mirror (its own store and node app on loopback, fed from the
primary's journal over HTTP), the delegation at 88.118 lists both sites,
and a recursive node fails over to the mirror."""

from __future__ import annotations

import aiohttp
import orjson
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from idcore.errors import UpstreamUnavailable
from idcore.handle import prefix_handle
from idcore.site import Site
from registry.memory_store import MemoryStore
from registry.mirror import STATE_NAME, Mirror
from registry.node_setup import add_mirror_site
from registry.service import Registry
from resolver.mirror_app import HttpFeed, build_mirror_app
from tests.registry.mirror_helpers import snapshot
from tests.resolver.conftest import ENTERPRISE, SECONDARY, sample, take_down


@pytest.fixture
async def mirror_node(hierarchy, tmp_path):
    """A mirror of the enterprise node (nothing pulled yet), serving on loopback;
    yields ``(mirror, base URL)``."""
    async with MemoryStore() as store, HttpFeed(hierarchy.enterprise.url) as feed:
        registry = Registry(store)
        await registry.open()
        mirror = Mirror(registry, feed, tmp_path / STATE_NAME, hierarchy.enterprise.url, batch=7)
        runner = web.AppRunner(build_mirror_app(mirror), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            yield mirror, port
        finally:
            await runner.cleanup()


async def test_resolution_survives_stopping_the_primary(hierarchy, mirror_node, resolver_client, monkeypatch):
    mirror, port = mirror_node
    served: list[str] = []
    resolve = mirror.registry.resolve

    async def counted(handle, **kwargs):
        served.append(handle.to_text())
        return await resolve(handle, **kwargs)

    monkeypatch.setattr(mirror.registry, "resolve", counted)
    secondary, enterprise = hierarchy.nodes[SECONDARY], hierarchy.enterprise
    # the mirror site is listed at the primary (its own prefix record) and at the parent's delegation
    await add_mirror_site(enterprise.registry, ENTERPRISE, "127.0.0.1", port, enterprise.admin)
    index = await add_mirror_site(secondary.registry, ENTERPRISE, "127.0.0.1", port, secondary.admin)
    delegation = await secondary.registry.store.get(prefix_handle(ENTERPRISE).key)
    sites = {v.index: v.data for v in delegation.values() if isinstance(v.data, Site)}
    assert sites[1].primary is True and sites[index].primary is False and sites[index].servers[0].interfaces[0].port == port

    await mirror.catch_up()  # over HTTP, 7 entries a page
    assert await snapshot(mirror.registry.store) == await snapshot(enterprise.registry.store)

    reply = await resolver_client.get(f"/api/handles/{sample(5)}")
    assert reply.status == 200 and (await reply.json())["handle"] == sample(5)
    assert served == []  # the primary answered while it was up

    await take_down(enterprise)
    flushed = await resolver_client.post("/api/cache/flush", params={"prefix": ENTERPRISE})
    assert flushed.status == 200
    for number in (5, 6):
        reply = await resolver_client.get(f"/api/handles/{sample(number)}")
        body = await reply.read()
        assert reply.status == 200, body
        assert orjson.loads(body)["handle"] == sample(number)
        assert reply.headers["X-Idnode-Cache"] == "upstream"
    assert served == [sample(5), sample(6)]  # the mirror answered

    # the primary down: the mirror keeps its data and reports the outage as lag
    with pytest.raises(UpstreamUnavailable):
        await mirror.pull_once()
    assert mirror.status()["appliedSeq"] == mirror.status()["primarySeq"]


async def scrape(port: int) -> dict[str, float]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as reply:
        assert reply.status == 200 and reply.headers["Content-Type"].startswith("text/plain")
        text = await reply.text()
    return {sample.name: sample.value for family in text_string_to_metric_families(text) for sample in family.samples}


async def test_the_mirrors_lag_is_a_prometheus_metric(hierarchy, mirror_node):
    mirror, port = mirror_node
    before = await scrape(port)
    assert before["idnode_mirror_applied_sequence"] == 0 and before["idnode_mirror_primary_up"] == 0
    assert "idnode_mirror_lag_entries" not in before  # unknown until the primary was read

    await mirror.pull_once()  # one page of 7 entries: behind the primary
    behind = await scrape(port)
    primary_seq = await hierarchy.enterprise.registry.store.last_seq()
    assert behind["idnode_mirror_applied_sequence"] == mirror.applied_seq == 7
    assert behind["idnode_mirror_primary_sequence"] == primary_seq
    assert behind["idnode_mirror_lag_entries"] == primary_seq - 7 > 0
    assert behind["idnode_mirror_primary_up"] == 1

    await mirror.catch_up()
    caught_up = await scrape(port)
    assert caught_up["idnode_mirror_lag_entries"] == 0
    assert caught_up["idnode_mirror_applied_sequence"] == primary_seq
