"""The whole application -> approval -> referral path over HTTP on loopback.

The parent is the secondary node (88.118) of a real in-memory hierarchy; the
applicant is a separate node homing 88.118.9; a recursive resolver
bootstrapped at the top node resolves through them. Each phase asks a fresh
resolver, so what it sees is what the nodes say now, not what it cached.
"""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest

from cache.entry import EntryKind
from idcore.errors import IdnodeError
from idcore.handle import Handle
from registry.prefix_admin import DELEGATION_TTL_SECONDS
from registry.node_setup import site_for
from resolver.hierarchy import LocalHierarchy
from resolver.rest_client import NodeClient, NodeReplyError, basic_auth_header
from scripts.idnode import main
from tests.registry.test_applicant import application_json
from tests.resolver.conftest import SECONDARY, put_record, text_value

CHILD = "88.118.9"
CHILD_SECRET = "child-node-secret"
APPLICATIONS = "/api/prefix-applications"


@pytest.fixture
async def child():
    """The applicant's node, homing 88.118.9, with three sample products."""
    async with LocalHierarchy((CHILD,)) as nodes:
        await nodes.register_samples(3)
        yield nodes.enterprise


@pytest.fixture
async def parent_http(hierarchy):
    parent = hierarchy.nodes[SECONDARY]
    reviewer = {"Authorization": basic_auth_header(parent.admin.to_text(), hierarchy.admin_secret)}

    async def call(method, path, body=None, *, auth=True):
        headers = dict(reviewer) if auth else {}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = orjson.dumps(body)
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, parent.url + path, data=data, headers=headers) as reply,
        ):
            return reply.status, orjson.loads(await reply.read())

    return call


async def resolve(make_resolver_client, handle):
    client = await make_resolver_client()
    reply = await client.get(f"/api/handles/{handle}")
    return reply.status, orjson.loads(await reply.read())


def child_application(node):
    return application_json(prefix=CHILD, site=site_for(node.host, node.port).to_json(), secret=CHILD_SECRET)


async def test_application_approval_referral_path(hierarchy, child, parent_http, make_resolver_client):
    handle = f"{CHILD}/PRD-2026-000001"
    status, body = await resolve(make_resolver_client, handle)
    assert status != 200 and "doesn't live here" in body["message"]  # 88.118 does not delegate it yet

    status, created = await parent_http("POST", APPLICATIONS, child_application(child), auth=False)
    assert status == 201, created
    assert created["state"] == "pending_review" and created["parentPrefix"] == SECONDARY
    assert created["childIdentity"] == f"300:0.NA/{CHILD}"
    assert "secret" not in created["application"] and "secret" not in orjson.dumps(created).decode()
    app_id = created["id"]

    status, listing = await parent_http("GET", f"{APPLICATIONS}?state=pending_review")
    assert status == 200 and [a["id"] for a in listing["applications"]] == [app_id]
    status, refused = await parent_http("GET", APPLICATIONS, auth=False)
    assert status == 401

    status, approved = await parent_http("POST", f"{APPLICATIONS}/{app_id}/approve", {"reason": "papers in order"})
    assert status == 200 and approved["state"] == "approved"
    assert approved["history"][-1]["by"] == "300:0.NA/88.118" and approved["history"][-1]["reason"] == "papers in order"

    status, body = await resolve(make_resolver_client, handle)
    assert status == 200 and body["responseCode"] == 1 and body["handle"] == handle

    status, disabled = await parent_http("POST", f"{APPLICATIONS}/{app_id}/disable")
    assert disabled["state"] == "disabled"
    status, direct = await parent_http("GET", f"/api/handles/{handle}", auth=False)
    assert status == 403 and direct["responseCode"] == 2 and "disabled" in direct["message"]
    status, body = await resolve(make_resolver_client, handle)
    assert status != 200 and "disabled" in body["message"]

    status, enabled = await parent_http("POST", f"{APPLICATIONS}/{app_id}/enable")
    assert enabled["state"] == "enabled"
    status, body = await resolve(make_resolver_client, handle)
    assert status == 200 and body["responseCode"] == 1

    status, refused = await parent_http("POST", f"{APPLICATIONS}/{app_id}/delete")
    assert status == 409 and "enabled" in refused["message"] and "request-deletion" in refused["message"]
    await parent_http("POST", f"{APPLICATIONS}/{app_id}/request-deletion")
    status, deleted = await parent_http("POST", f"{APPLICATIONS}/{app_id}/delete")
    assert status == 200 and deleted["state"] == "deleted"
    assert [h["action"] for h in deleted["history"]] == [
        "apply", "approve", "disable", "enable", "request-deletion", "delete"
    ]
    status, gone = await parent_http("GET", f"/api/handles/0.NA/{CHILD}", auth=False)
    assert status == 404 and gone["responseCode"] == 100
    status, body = await resolve(make_resolver_client, handle)
    assert status != 200 and "doesn't live here" in body["message"]


async def test_a_resolver_that_cached_the_referral_sees_a_disable_within_the_delegation_ttl(
    hierarchy, child, parent_http, make_direct_resolver, clock
):
    status, created = await parent_http("POST", APPLICATIONS, child_application(child), auth=False)
    await parent_http("POST", f"{APPLICATIONS}/{created['id']}/approve")
    resolver = await make_direct_resolver()
    first = await resolver.resolve(Handle.from_text(f"{CHILD}/PRD-2026-000001"))
    assert first.entry.kind is EntryKind.ANSWER

    await parent_http("POST", f"{APPLICATIONS}/{created['id']}/disable")
    # within the delegation's TTL the cached referral still leads to the child (as DNS's NS records do)
    clock.advance(DELEGATION_TTL_SECONDS - 60)
    within = await resolver.resolve(Handle.from_text(f"{CHILD}/PRD-2026-000002"))
    assert within.entry.kind is EntryKind.ANSWER
    clock.advance(120)
    with pytest.raises(IdnodeError, match="disabled"):
        await resolver.resolve(Handle.from_text(f"{CHILD}/PRD-2026-000003"))


async def test_a_site_change_by_the_child_takes_effect_at_once(hierarchy, child, parent_http, make_resolver_client):
    _, created = await parent_http("POST", APPLICATIONS, child_application(child), auth=False)
    await parent_http("POST", f"{APPLICATIONS}/{created['id']}/approve")
    async with LocalHierarchy((CHILD,)) as moved_nodes:  # the child's node, moved to another port
        moved = moved_nodes.enterprise
        await put_record(moved, f"{CHILD}/MOVED", [text_value(1, "NOTE", "served by the new site")])
        status, body = await resolve(make_resolver_client, f"{CHILD}/MOVED")
        assert body["responseCode"] == 100  # the parent still refers to the old site

        site = {"index": 1, "type": "HS_SITE", "data": {"format": "site", "value": site_for(moved.host, moved.port).to_json()}}
        parent_url = hierarchy.nodes[SECONDARY].url
        async with NodeClient(parent_url, identity=f"300:0.NA/{CHILD}", secret=CHILD_SECRET) as as_child:
            await as_child.add_values(f"0.NA/{CHILD}", [site], overwrite=True)
            status, body = await resolve(make_resolver_client, f"{CHILD}/MOVED")
            assert status == 200 and body["values"][0]["data"]["value"] == "served by the new site"
            # the child may change its site, not the parent's admins
            with pytest.raises(NodeReplyError) as refused:
                await as_child.delete(f"0.NA/{CHILD}", indexes=[100])
            assert refused.value.http_status == 403


async def test_applications_are_checked(parent_http):
    bad = application_json(prefix=CHILD)
    bad["organisation"]["creditCode"] = "91350100M000100Y44"
    status, body = await parent_http("POST", APPLICATIONS, bad, auth=False)
    assert status == 400 and "creditCode" in body["message"]
    status, body = await parent_http("POST", APPLICATIONS, application_json(prefix="99.1"), auth=False)
    assert status == 400 and body["responseCode"] == 301  # not under a prefix homed here
    status, body = await parent_http("POST", f"{APPLICATIONS}/nope/approve")
    assert status == 404
    status, body = await parent_http("GET", f"{APPLICATIONS}/nope/approve")
    assert status == 405


async def test_the_cli_applies_lists_and_approves(hierarchy, child, tmp_path, capsys):
    parent = hierarchy.nodes[SECONDARY]
    application = tmp_path / "application.json"
    application.write_bytes(orjson.dumps(application_json(prefix=CHILD, site=site_for(child.host, child.port).to_json())))
    secret_file = tmp_path / "secret"
    secret_file.write_text(hierarchy.admin_secret)
    common = ["--server", parent.url, "--id", parent.admin.to_text(), "--secret-file", str(secret_file)]

    async def idnode(*argv):
        return await asyncio.to_thread(main, ["prefix", *common, *argv])

    assert await idnode("apply", str(application)) == 0
    app_id = capsys.readouterr().out.split()[1]
    assert await idnode("list", "--state", "pending_review") == 0
    assert CHILD in capsys.readouterr().out
    assert await idnode("enable", app_id) == 1
    assert "Allowed next: approve, reject" in capsys.readouterr().err
    assert await idnode("approve", app_id, "--reason", "fine") == 0
    assert capsys.readouterr().out.strip().endswith("approved")
    assert await idnode("show", app_id) == 0
    shown = orjson.loads(capsys.readouterr().out)
    assert shown["history"][-1]["reason"] == "fine"
    assert (await parent.registry.resolve(Handle.from_text(f"{CHILD}/X"))).response_code == 303
