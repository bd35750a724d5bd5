"""Backups over the node's HTTP API (resolver.backup_api), against real node
apps over real SQLite folders on loopback: create, list, download, verify,
restore into a second node, escrow to a parent; refusals and limits."""

from __future__ import annotations

import asyncio
import io
import shutil
import tarfile
import threading

import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from idcore.settings import DATABASE_NAME
from registry.backup.archive import part_name
from registry.backup.create import last_watermark
from registry.backup.digest import records_digest
from registry.backup.folder import BACKUPS_DIR
from registry.backup.verify import verify_archive
from registry.node_key import fingerprint, node_key, private_pem, public_pem
from registry.node_setup import init_node
from registry.sqlite_store import SqliteStore
from resolver import backup_api
from resolver.escrow_client import tar_archive
from resolver.node_app import build_node_app, node_app
from tests.conftest import ADMIN, PREFIX, SECRET, basic
from tests.resolver.conftest import ENTERPRISE, SECONDARY
from tests.resolver.test_escrow_api import (  # noqa: F401  (fixtures: a parent with escrow, the child's identity)
    CHILD_SECRET,
    admin_auth,
    child_id,
    hierarchy,
    listing,
)
from tests.scripts.test_backup_cli import put_products

#: Plaintext bytes per part in these tests, so 200 products fill several parts.
SMALL_VOLUME = 4096

#: Where a test pretends a request came from (see ``from_afar``).
FAR_AWAY = "203.0.113.9"


class Keys:
    """A recipient key pair, as PEM text for request bodies."""

    def __init__(self) -> None:
        self.private = X25519PrivateKey.generate()
        self.private_pem = private_pem(self.private).decode()
        self.public_pem = public_pem(self.private.public_key()).decode()


@pytest.fixture
def keys() -> Keys:
    return Keys()


@pytest.fixture
async def source(tmp_path):
    """A node folder homing 88.118.2 with 200 products (201 records)."""
    data = tmp_path / "src"
    await init_node(data, PREFIX, site_address="127.0.0.1", site_port=1, secret=SECRET)
    await put_products(data, range(200))
    return data


@web.middleware
async def from_afar(request: web.Request, handler):
    """Let a test send a request as if from another machine (``X-Test-Remote``)
    and over TLS (``X-Test-Scheme: https``), which loopback cannot show."""
    remote = request.headers.get("X-Test-Remote")
    if remote is None:
        return await handler(request)
    return await handler(request.clone(remote=remote, scheme=request.headers.get("X-Test-Scheme", "http")))


@pytest.fixture
def start_node(aiohttp_client):
    async def start(data):
        data.mkdir(parents=True, exist_ok=True)
        app = node_app(data / DATABASE_NAME)
        app.middlewares.insert(0, from_afar)
        return await aiohttp_client(app)

    return start


async def test_an_archive_a_crash_left_unfinished_is_removed_when_the_node_starts(source, start_node, keys):
    leftover = source / BACKUPS_DIR / "idnode-full-0000000000-0000000009-20261126T000000Z.partial"
    leftover.mkdir(parents=True)
    (leftover / "records-0001.ndjson.enc").write_bytes(b"half a part")
    client = await start_node(source)
    assert not leftover.exists()
    assert (await create(client, "full", keys)).status == 201
    assert [a["kind"] for a in (await (await client.get("/api/backups")).json())["archives"]] == ["full"]


async def create(client, kind: str, keys: Keys, **extra):
    return await client.post("/api/backups", json={"kind": kind, "recipient": keys.public_pem, **extra})


async def created(client, kind: str, keys: Keys, **extra) -> dict:
    response = await create(client, kind, keys, **extra)
    assert response.status == 201, await response.text()
    return (await response.json())["archive"]


async def digest_of(data) -> tuple[str, int]:
    async with SqliteStore(data / DATABASE_NAME) as store:
        return await records_digest(store)


async def download(client, name: str, into) -> bytes:
    """GET the archive's tar; unpack it into the folder ``into``."""
    response = await client.get(f"/api/backups/{name}")
    assert response.status == 200 and response.content_type == "application/x-tar"
    body = await response.read()
    into.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        tar.extractall(into, filter="data")
    return body


async def test_full_then_diff_list_download_and_verify_with_the_library(source, start_node, keys, tmp_path):
    client = await start_node(source)
    first_diff = await create(client, "diff", keys)
    assert first_diff.status == 409
    body = await first_diff.json()
    assert body["error"] == "NoBaseBackup" and "make a FULL backup first" in body["message"]

    full = await created(client, "full", keys, volumeBytes=SMALL_VOLUME)
    assert full["kind"] == "full" and full["counts"]["records"] == 201 and full["counts"]["parts"] > 2
    assert full["signer"] == fingerprint(node_key(source).public_key())
    assert full["watermark"]["from"] == 0 and full["prefixes"] == [PREFIX] and full["created"]
    await put_products(source, range(10), version=1, delete=range(50, 60))
    diff = await created(client, "DIFF", keys)
    assert diff["kind"] == "diff" and diff["watermark"]["from"] == full["watermark"]["to"]
    assert (diff["counts"]["records"], diff["counts"]["deleted"]) == (10, 10)
    assert last_watermark(source) == diff["watermark"]["to"]  # recorded as the CLI does: its next DIFF follows

    backups = source / BACKUPS_DIR
    shutil.copytree(backups / full["archive"], backups / "tampered")
    (backups / "tampered" / "manifest.json").write_text("{}")
    response = await client.get("/api/backups")
    assert response.status == 200
    rows = (await response.json())["archives"]
    assert [r["archive"] for r in rows] == sorted([full["archive"], diff["archive"], "tampered"])
    by_name = {r["archive"]: r for r in rows}
    assert by_name[full["archive"]] == full and by_name[diff["archive"]] == diff
    assert "signature does not verify" in by_name["tampered"]["error"] and by_name["tampered"]["size"] > 0

    tar = await download(client, full["archive"], tmp_path / "unpacked")
    verified = verify_archive(tmp_path / "unpacked", keys.private, node_key(source).public_key())
    assert verified.records == 201
    tar_archive(backups / full["archive"], tmp_path / "escrow-format.tar")
    assert tar == (tmp_path / "escrow-format.tar").read_bytes()  # what escrow uploads, byte for byte

    assert (await client.get("/api/backups/idnode-full-none")).status == 404
    for bad in ("..%2F..%2Fsrc", "x.partial", ".hidden", "a b"):
        response = await client.get(f"/api/backups/{bad}")
        assert response.status == 400 and "not a plain name" in (await response.json())["message"]


async def test_verify_names_the_first_bad_part_and_a_wrong_key(source, start_node, keys):
    client = await start_node(source)
    name = (await created(client, "full", keys, volumeBytes=SMALL_VOLUME))["archive"]
    url = f"/api/backups/{name}/verify"

    for body, checked in ((None, "hashes"), ({"recipientKey": keys.private_pem}, "full")):
        response = await client.post(url, json=body)
        reply = await response.json()
        assert response.status == 200 and reply["ok"] is True and reply["checked"] == checked, reply
        assert reply["archive"]["counts"]["records"] == 201

    response = await client.post(url, json={"recipientKey": Keys().private_pem})
    reply = await response.json()
    assert response.status == 200 and reply["ok"] is False
    assert reply["error"]["error"] == "WrongRecipientKey" and "encrypted for recipient" in reply["error"]["message"]

    part = source / BACKUPS_DIR / name / part_name(2)
    data = bytearray(part.read_bytes())
    data[100] ^= 0x80
    part.write_bytes(bytes(data))
    for body in (None, {"recipientKey": keys.private_pem}):
        reply = await (await client.post(url, json=body)).json()
        assert reply["ok"] is False and reply["error"]["part"] == 2 and reply["error"]["name"] == part_name(2)
        assert reply["error"]["message"] == "part 2 (records-0002.ndjson.enc): SHA-256 mismatch"

    response = await client.post(url, json={"recipientKey": keys.public_pem})
    assert response.status == 400 and "recipientKey is not an X25519 private key" in (await response.json())["message"]


async def test_restore_over_http_into_an_empty_node_gives_the_sources_digest(source, start_node, keys, tmp_path):
    src = await start_node(source)
    full = await created(src, "full", keys, volumeBytes=SMALL_VOLUME)
    await put_products(source, range(10), version=1, delete=range(50, 60))
    diff = await created(src, "diff", keys)
    target = tmp_path / "dst"
    for archive in (diff, full):  # downloaded from the source, put into the new node's backups folder
        await download(src, archive["archive"], target / BACKUPS_DIR / archive["archive"])
    dst = await start_node(target)
    assert (await dst.get(f"/api/handles/{PREFIX}/PRD-00000001")).status == 400  # it homes nothing yet

    body = {"archives": [diff["archive"], full["archive"]], "recipientKey": keys.private_pem,
            "signerPub": public_pem(node_key(source).public_key()).decode()}
    response = await dst.post("/api/backups/restore", json=body)
    reply = await response.json()
    assert response.status == 200, reply
    assert [a["archive"] for a in reply["applied"]] == [full["archive"], diff["archive"]]
    assert (reply["digest"], reply["records"]) == await digest_of(source)
    assert reply["records"] == 191 and reply["prefixes"] == [PREFIX]
    # the running registry answers for the restored prefix at once
    assert (await dst.get(f"/api/handles/{PREFIX}/PRD-00000001")).status == 200
    assert (await dst.get(f"/api/handles/{PREFIX}/PRD-00000055")).status == 404
    assert (await (await dst.get("/api/prefixes")).json())["prefixes"] == [f"0.NA/{PREFIX}"]

    again = await dst.post("/api/backups/restore", json=body)
    assert again.status == 409 and "not empty" in (await again.json())["message"]
    into_source = await src.post("/api/backups/restore", json={**body, "archives": [full["archive"]]})
    assert into_source.status == 409 and (await into_source.json())["error"] == "RestoreRefused"


async def test_a_second_backup_job_meanwhile_is_refused_with_409(source, start_node, keys, monkeypatch):
    client = await start_node(source)
    started, release = threading.Event(), threading.Event()
    real = backup_api.backup_node

    async def held(*args, **kwargs):  # runs on the job's own thread and loop
        started.set()
        await asyncio.to_thread(release.wait)
        return await real(*args, **kwargs)

    monkeypatch.setattr(backup_api, "backup_node", held)
    first = asyncio.ensure_future(create(client, "full", keys))
    try:
        await asyncio.to_thread(started.wait, 10)
        for path, body in (
            ("/api/backups", {"kind": "diff", "recipient": keys.public_pem}),
            ("/api/backups/restore", {"archives": ["x"], "recipientKey": keys.private_pem}),
            ("/api/backups/escrow", {"parent": "http://127.0.0.1:1", "secret": "s"}),
        ):
            if path.endswith("restore"):
                (source / BACKUPS_DIR / "x").mkdir(parents=True, exist_ok=True)
            response = await client.post(path, json=body)
            reply = await response.json()
            assert response.status == 409, reply
            assert "a full backup (started" in reply["message"] and "in progress" in reply["message"]
    finally:
        release.set()
    response = await first
    assert response.status == 201
    assert (await create(client, "diff", keys)).status == 201  # free again


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"recipient": "PUB"}, "kind is missing"),
        ({"kind": "weekly", "recipient": "PUB"}, "kind must be"),
        ({"kind": "full"}, "recipient is missing"),
        ({"kind": "full", "recipient": "-----BEGIN PUBLIC KEY-----\nnope\n"}, "recipient is not an X25519 public key"),
        ({"kind": "full", "recipient": "PRIVATE"}, "recipient is not an X25519 public key"),
        ({"kind": "full", "recipient": "PUB", "volumeBytes": 10}, "volumeBytes must be"),
        ({"kind": "full", "recipient": "PUB", "volumeBytes": 2**40}, "volumeBytes must be"),
        ({"kind": "full", "recipient": "PUB", "volumeBytes": "64M"}, "volumeBytes must be"),
        ({"kind": "full", "recipient": "PUB", "recipent": "PUB"}, "unknown field(s) recipent"),
        (["full"], "send a JSON object"),
    ],
)
async def test_bad_create_requests_name_the_field(source, start_node, keys, body, field):
    client = await start_node(source)
    swap = {"PUB": keys.public_pem, "PRIVATE": keys.private_pem}
    if isinstance(body, dict):
        body = {k: swap.get(v, v) if isinstance(v, str) else v for k, v in body.items()}
    response = await client.post("/api/backups", json=body)
    reply = await response.json()
    assert response.status == 400 and field in reply["message"], reply
    assert not (source / BACKUPS_DIR).exists()


async def test_bad_restore_and_escrow_requests_name_the_field(source, start_node, keys):
    client = await start_node(source)
    cases = [
        ("/api/backups/restore", {"recipientKey": keys.private_pem}, 400, "archives must be a list"),
        ("/api/backups/restore", {"archives": [], "recipientKey": keys.private_pem}, 400, "archives must be a list"),
        ("/api/backups/restore", {"archives": ["../src"], "recipientKey": keys.private_pem}, 400, "not a plain name"),
        ("/api/backups/restore", {"archives": ["idnode-full-x"], "recipientKey": keys.private_pem}, 404,
         "no archive 'idnode-full-x'"),
        ("/api/backups/escrow", {"secret": "s"}, 400, "parent is missing"),
        ("/api/backups/escrow", {"parent": "ftp://parent", "secret": "s"}, 400, "parent 'ftp://parent' must be"),
        ("/api/backups/escrow", {"parent": "http://127.0.0.1:1"}, 400, "secret is missing"),
        ("/api/backups/escrow", {"parent": "http://127.0.0.1:1", "secret": "s", "kind": "all"}, 400, "kind must be"),
    ]
    for path, body, status, message in cases:
        response = await client.post(path, json=body)
        reply = await response.json()
        assert response.status == status and message in reply["message"], (path, body, reply)


async def test_callers_from_afar_need_an_admin_and_tls_for_keys(source, start_node, keys):
    client = await start_node(source)
    name = (await created(client, "full", keys))["archive"]
    afar = {"X-Test-Remote": FAR_AWAY}
    for method, path in (("GET", "/api/backups"), ("POST", "/api/backups"), ("GET", f"/api/backups/{name}"),
                         ("POST", f"/api/backups/{name}/verify"), ("POST", "/api/backups/restore"),
                         ("POST", "/api/backups/escrow")):
        response = await client.request(method, path, headers=afar)
        assert response.status == 401, (method, path)
        assert "backups need an administrator's credentials" in (await response.json())["message"]
    wrong = await client.get("/api/backups", headers={**afar, **basic(secret="wrong")})
    assert wrong.status in (401, 403)

    admin = {**afar, **basic(ADMIN, SECRET)}
    assert (await client.get("/api/backups", headers=admin)).status == 200
    url = f"/api/backups/{name}/verify"
    assert (await client.post(url, headers=admin)).status == 200  # no key in it: plain HTTP will do
    clear = await client.post(url, json={"recipientKey": keys.private_pem}, headers=admin)
    reply = await clear.json()
    assert clear.status == 403 and "recipientKey" in reply["message"] and "TLS" in reply["message"]
    over_tls = await client.post(url, json={"recipientKey": keys.private_pem}, headers={**admin, "X-Test-Scheme": "https"})
    assert over_tls.status == 200 and (await over_tls.json())["ok"] is True
    escrow = await client.post("/api/backups/escrow", json={"parent": "http://127.0.0.1:1", "secret": "s"},
                               headers=admin)
    assert escrow.status == 403 and "secret" in (await escrow.json())["message"]


async def test_escrow_over_http_to_the_parent(hierarchy, child_id, start_node, tmp_path):  # noqa: F811
    data = tmp_path / "child"
    await init_node(data, ENTERPRISE, site_address="127.0.0.1", site_port=1)
    client = await start_node(data)
    parent = hierarchy.nodes[SECONDARY].url

    kinds = []
    for _ in range(2):
        response = await client.post("/api/backups/escrow", json={"parent": parent, "secret": CHILD_SECRET})
        reply = await response.json()
        assert response.status == 200, reply
        assert reply["parentStatus"] == 201 and reply["escrow"]["status"] == "ok"
        assert reply["escrow"]["archive"] == reply["archive"]["archive"]
        kinds.append(reply["archive"]["kind"])
    assert kinds == ["full", "diff"]  # chained like `idnode backup escrow`
    _, body = await listing(hierarchy, admin_auth(hierarchy))
    assert [a["kind"] for a in body["children"][0]["archives"]] == ["FULL", "DIFF"]

    refused = await client.post("/api/backups/escrow", json={"parent": parent, "secret": "wrong"})
    reply = await refused.json()
    assert refused.status == 502 and reply["error"] == "EscrowRefused" and "the parent answered 401" in reply["message"]
    unreachable = await client.post("/api/backups/escrow", json={"parent": "http://127.0.0.1:1", "secret": "s"})
    reply = await unreachable.json()
    assert unreachable.status == 502 and "http://127.0.0.1:1/api/escrow/recipient" in reply["message"]


async def test_a_node_without_a_data_folder_keeps_no_backups(aiohttp_client, registry):
    client = await aiohttp_client(build_node_app(registry))
    response = await client.get("/api/backups")
    assert response.status == 501 and "keeps no backups" in (await response.json())["message"]


async def test_the_node_index_lists_the_backup_routes(source, start_node):
    client = await start_node(source)
    api = (await (await client.get("/")).json())["api"]
    assert api["backups"] == "/api/backups" and api["backupRestore"] == "/api/backups/restore"
    assert api["backup"] == "/api/backups/{name}" and api["backupVerify"] == "/api/backups/{name}/verify"
    assert api["backupEscrow"] == "/api/backups/escrow"
