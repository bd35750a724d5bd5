"""Escrow over HTTP on a loopback hierarchy: the enterprise node (88.118.2)
escrows its backups with the secondary node (88.118), which lists them and,
in takeover mode, answers for 88.118.2 while it is down (issue 5, part 3)."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest

from idcore.handle import prefix_handle
from registry.backup.archive import part_name
from registry.escrow import grant_child_identity
from resolver import escrow_client
from resolver.escrow_api import ESCROW
from resolver.escrow_client import EscrowRefused, escrow_backup, fetch_recipient
from resolver.hierarchy import LocalHierarchy
from resolver.rest_client import basic_auth_header
from tests.resolver.conftest import (
    ENTERPRISE,
    SAMPLE_COUNT,
    SECONDARY,
    sample,
    take_down,
)

CHILD_SECRET = "child-escrow-secret"


@pytest.fixture
async def hierarchy(tmp_path):
    """The conftest's hierarchy, with escrow at every node."""
    async with LocalHierarchy(escrow_dir=tmp_path / "escrow") as nodes:
        await nodes.register_samples(SAMPLE_COUNT)
        yield nodes


@pytest.fixture
async def child_id(hierarchy) -> str:
    """The enterprise's identity at the secondary node, in its delegation record."""
    parent = hierarchy.nodes[SECONDARY]
    identity = await grant_child_identity(parent.registry, ENTERPRISE, CHILD_SECRET.encode(), parent.admin)
    return identity.to_text()


def admin_auth(hierarchy) -> dict[str, str]:
    parent = hierarchy.nodes[SECONDARY]
    return {"Authorization": basic_auth_header(parent.admin.to_text(), hierarchy.admin_secret)}


async def escrow(hierarchy, tmp_path, child_id, kind=None):
    parent, child = hierarchy.nodes[SECONDARY], hierarchy.enterprise
    return await escrow_backup(
        child.registry.store, tmp_path / "child", parent.url, child=ENTERPRISE, identity=child_id,
        secret=CHILD_SECRET, kind=kind,
    )


async def listing(hierarchy, headers) -> tuple[int, dict]:
    url = f"{hierarchy.nodes[SECONDARY].url}/api/escrow?child={ENTERPRISE}"
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        return response.status, await response.json()


async def test_upload_and_list_with_watermark_and_status(hierarchy, tmp_path, child_id):
    first = await escrow(hierarchy, tmp_path, child_id)
    assert first.http_status == 201 and first.reply["archive"]["status"] == "ok"
    await hierarchy.register_samples(SAMPLE_COUNT + 5)
    second = await escrow(hierarchy, tmp_path, child_id)
    assert second.backup.manifest.kind == "diff"
    assert not first.backup.folder.exists()  # the outbox is emptied once the parent has it

    status, body = await listing(hierarchy, admin_auth(hierarchy))
    assert status == 200
    [child] = body["children"]
    assert child["child"] == ENTERPRISE and child["takeover"] is False
    rows = [(a["kind"], a["watermark"]["from"], a["watermark"]["to"], a["status"]) for a in child["archives"]]
    mark = first.backup.manifest.watermark_to
    assert rows == [("FULL", 0, mark, "ok"), ("DIFF", mark, second.backup.manifest.watermark_to, "ok")]
    assert child["archives"][0]["counts"]["records"] == first.backup.manifest.records
    assert child["archives"][1]["counts"]["records"] == 5
    assert child["archives"][0]["received"]

    status, _ = await listing(hierarchy, {"Authorization": basic_auth_header(child_id, CHILD_SECRET)})
    assert status == 200  # the child may see its own escrow
    status, _ = await listing(hierarchy, {})
    assert status == 401


async def test_recipient_is_the_parents_own_key(hierarchy):
    parent = hierarchy.nodes[SECONDARY]
    async with aiohttp.ClientSession() as session:
        key = await fetch_recipient(session, parent.url)
    assert key.public_bytes_raw() == parent.runner.app[ESCROW].recipient_key().public_key().public_bytes_raw()


async def test_a_tampered_upload_is_recorded_bad(hierarchy, tmp_path, child_id, monkeypatch):
    real_tar = escrow_client.tar_archive

    def tampered(folder, out):
        part = folder / part_name(1)
        data = bytearray(part.read_bytes())
        data[-40] ^= 0x01
        part.write_bytes(bytes(data))
        real_tar(folder, out)

    monkeypatch.setattr(escrow_client, "tar_archive", tampered)
    with pytest.raises(EscrowRefused, match="422.*part 1"):
        await escrow(hierarchy, tmp_path, child_id)
    _, body = await listing(hierarchy, admin_auth(hierarchy))
    [archive] = body["children"][0]["archives"]
    assert archive["status"] == "bad" and part_name(1) in archive["reason"]


async def test_a_child_may_upload_only_for_its_own_prefix(hierarchy, child_id, tmp_path):
    parent = hierarchy.nodes[SECONDARY]
    async with aiohttp.ClientSession() as session:
        for who, secret, status in ((child_id, CHILD_SECRET, 403), (child_id, "wrong", 401), (None, None, 401)):
            headers = {"Content-Type": "application/x-tar"}
            if who:
                headers["Authorization"] = basic_auth_header(who, secret)
            url = f"{parent.url}/api/escrow/88.118.3/idnode-full-x"
            async with session.put(url, data=b"x" * 10, headers=headers) as response:
                assert response.status == status, await response.text()
        # the parent's admin is not the child either
        url = f"{parent.url}/api/escrow/{ENTERPRISE}/idnode-full-x"
        async with session.put(url, data=b"", headers=admin_auth(hierarchy)) as response:
            assert response.status == 403
        # and the child may not turn takeover on for itself
        url = f"{parent.url}/api/escrow/{ENTERPRISE}/takeover"
        headers = {"Authorization": basic_auth_header(child_id, CHILD_SECRET)}
        async with session.post(url, json={"takeover": True}, headers=headers) as response:
            assert response.status == 403
    assert not (tmp_path / "escrow" / SECONDARY / "escrow" / "88.118.3").exists()


async def set_takeover(hierarchy, on: bool) -> dict:
    url = f"{hierarchy.nodes[SECONDARY].url}/api/escrow/{ENTERPRISE}/takeover"
    async with aiohttp.ClientSession() as session, session.post(
        url, json={"takeover": on}, headers=admin_auth(hierarchy)
    ) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def test_takeover_answers_for_a_stopped_child(hierarchy, tmp_path, child_id, make_resolver_client):
    await escrow(hierarchy, tmp_path, child_id)
    await take_down(hierarchy.enterprise)

    reply = await set_takeover(hierarchy, True)
    assert reply["takeover"] is True and reply["restored"]["archives"] == 1

    resolver = await make_resolver_client()
    response = await resolver.get(f"/api/handles/{sample(3)}")
    assert response.status == 200
    body = await response.json()
    assert body["responseCode"] == 1 and body["handle"] == sample(3)
    assert any(v["type"] == "PRODUCT_NAME" for v in body["values"])
    assert body["escrow"] is True  # the resolver passes the parent's marker on

    parent = hierarchy.nodes[SECONDARY]
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{parent.url}/api/handles/{sample(3)}") as direct:
            answer = await direct.json()
        assert direct.status == 200 and answer["escrow"] is True and answer["responseCode"] == 1
        async with session.get(f"{parent.url}/api/handles/{ENTERPRISE}/NO-SUCH") as missing:
            assert missing.status == 404
            not_found = await missing.json()
            assert not_found["responseCode"] == 100 and not_found["escrow"] is True
        _, body = await listing(hierarchy, admin_auth(hierarchy))
        assert body["children"][0]["takeover"] is True

        await set_takeover(hierarchy, False)
        async with session.get(f"{parent.url}/api/handles/{sample(3)}") as referral:
            answer = await referral.json()
        assert referral.status == 300 and answer["responseCode"] == 303 and "escrow" not in answer
        assert answer["referralHandle"] == prefix_handle(ENTERPRISE).to_text()


async def test_idnode_backup_escrow_uploads_a_node_folder(hierarchy, tmp_path, child_id, capsys):
    from registry.node_setup import init_node
    from scripts.idnode import main

    data = tmp_path / "node"
    await init_node(data, ENTERPRISE, site_address="127.0.0.1", site_port=1)
    secret = tmp_path / "secret"
    secret.write_text(CHILD_SECRET + "\n")
    parent = hierarchy.nodes[SECONDARY].url
    argv = ["backup", "escrow", "--data", str(data), "--parent", parent, "--secret-file", str(secret)]
    assert await asyncio.to_thread(main, argv) == 0
    assert await asyncio.to_thread(main, argv) == 0  # the second is a DIFF
    out = capsys.readouterr().out
    assert "kind:      full" in out and "kind:      diff" in out
    _, body = await listing(hierarchy, admin_auth(hierarchy))
    assert [a["kind"] for a in body["children"][0]["archives"]] == ["FULL", "DIFF"]
    wrong = ["backup", "escrow", "--data", str(data), "--parent", parent, "--id", "300:0.NA/88.118.3",
             "--secret-file", str(secret)]
    assert await asyncio.to_thread(main, wrong) == 1


async def test_idnode_escrow_lists_and_takes_over_at_the_parent(hierarchy, tmp_path, child_id, capsys):
    from scripts.cli_common import EXIT_REFUSED
    from scripts.idnode import main

    parent = hierarchy.nodes[SECONDARY]
    secret = tmp_path / "admin.secret"
    secret.write_text(hierarchy.admin_secret)
    admin = ["--server", parent.url, "--id", parent.admin.to_text(), "--secret-file", str(secret)]
    assert await asyncio.to_thread(main, ["escrow", *admin, "list", "--child", ENTERPRISE]) == 0
    assert capsys.readouterr().out == f"{ENTERPRISE} has escrowed no backup here\n"
    await escrow(hierarchy, tmp_path, child_id)

    assert await asyncio.to_thread(main, ["escrow", *admin, "list"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(ENTERPRISE) and "FULL" in out and " ok" in out and "taken over" not in out

    assert await asyncio.to_thread(main, ["escrow", *admin, "takeover", ENTERPRISE, "--on"]) == 0
    assert "taken over, answered from 1 escrowed archive(s)" in capsys.readouterr().out
    assert await asyncio.to_thread(main, ["escrow", *admin, "list", "--child", ENTERPRISE, "--json"]) == 0
    [listed] = orjson.loads(capsys.readouterr().out)
    assert listed["takeover"] is True and listed["archives"][0]["status"] == "ok"

    assert await asyncio.to_thread(main, ["escrow", *admin, "takeover", ENTERPRISE, "--off"]) == 0
    assert "takeover off" in capsys.readouterr().out
    # the child's own identity may list its archives, not take itself over
    child_secret = tmp_path / "child.secret"
    child_secret.write_text(CHILD_SECRET)
    as_child = ["--server", parent.url, "--id", child_id, "--secret-file", str(child_secret)]
    assert await asyncio.to_thread(main, ["escrow", *as_child, "list", "--child", ENTERPRISE]) == 0
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["escrow", *as_child, "takeover", ENTERPRISE, "--on"]) == EXIT_REFUSED
    err = capsys.readouterr().err
    assert "refused" in err and "not an administrator of 88.118.2" in err
