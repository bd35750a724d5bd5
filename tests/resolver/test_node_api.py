"""The node's Handle.Net REST API over a real loopback server."""

from __future__ import annotations

import io
import re

import orjson
import pytest

from idcore import limits
from resolver.node_app import build_node_app
from tests.conftest import ADMIN, basic

PUT_BODY = {
    "values": [
        {"index": 1, "type": "URL", "data": {"format": "string", "value": "https://example.com/p/1"}},
        {"index": 2001, "type": "PRODUCT_NAME", "data": {"format": "string", "value": "减速机 RV-40"}},
        {"index": 2002, "type": "BATCH", "data": "B-2024-11"},
    ]
}
TIMESTAMP = re.compile(rb'"timestamp":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"')


@pytest.fixture
async def client(aiohttp_client, registry):
    return await aiohttp_client(build_node_app(registry))


async def journal_length(registry) -> int:
    return len(await registry.store.journal(limit=100_000))


async def put(client, handle, body=PUT_BODY, **params):
    return await client.put(f"/api/handles/{handle}", json=body, headers=basic(), params=params)


async def test_put_then_get_is_byte_compatible_with_handle_net(client):
    reply = await put(client, "88.118.2/PRD-1")
    assert reply.status == 201
    assert await reply.read() == b'{"responseCode":1,"handle":"88.118.2/PRD-1"}'
    reply = await client.get("/api/handles/88.118.2/PRD-1")
    assert reply.status == 200
    assert reply.content_type == "application/json"
    body = TIMESTAMP.sub(b'"timestamp":"T"', await reply.read())
    assert body == (
        '{"responseCode":1,"handle":"88.118.2/PRD-1","values":['
        '{"index":1,"type":"URL","data":{"format":"string","value":"https://example.com/p/1"},"ttl":86400,"timestamp":"T"},'
        '{"index":2001,"type":"PRODUCT_NAME","data":{"format":"string","value":"减速机 RV-40"},"ttl":86400,"timestamp":"T"},'
        '{"index":2002,"type":"BATCH","data":{"format":"string","value":"B-2024-11"},"ttl":86400,"timestamp":"T"},'
        '{"index":100,"type":"HS_ADMIN","data":{"format":"admin","value":{"handle":"0.NA/88.118.2","index":300,'
        '"permissions":"011111110011"}},"ttl":86400,"timestamp":"T"}]}'
    ).encode()


async def test_replace_answers_200_and_create_only_409(client):
    assert (await put(client, "88.118.2/PRD-1")).status == 201
    assert (await put(client, "88.118.2/PRD-1")).status == 200
    reply = await put(client, "88.118.2/PRD-1", overwrite="false")
    assert reply.status == 409
    assert (await reply.json())["responseCode"] == 101


async def test_filters_by_type_and_index_and_pretty(client):
    await put(client, "88.118.2/PRD-1")
    reply = await client.get("/api/handles/88.118.2/PRD-1", params=[("type", "URL"), ("index", "2002")])
    assert [v["index"] for v in (await reply.json())["values"]] == [1, 2002]
    reply = await client.get("/api/handles/88.118.2/PRD-1", params={"type": "NOTHING"})
    assert reply.status == 200
    assert await reply.read() == b'{"responseCode":200,"values":[],"handle":"88.118.2/PRD-1"}'
    reply = await client.get("/api/handles/88.118.2/PRD-1?pretty&type=URL")
    text = await reply.text()
    assert text.startswith('{\n  "responseCode": 1,\n  "handle": "88.118.2/PRD-1",\n  "values": [\n')


async def test_index_put_updates_only_those_values(client):
    await put(client, "88.118.2/PRD-1")
    body = {"values": [{"index": 2002, "type": "BATCH", "data": "B-2025-01"}, {"index": 2003, "type": "LINE", "data": "L3"}]}
    reply = await put(client, "88.118.2/PRD-1", body, index=["2002", "2003"])
    assert reply.status == 200  # an existing index was replaced
    values = {v["index"]: v for v in (await (await client.get("/api/handles/88.118.2/PRD-1")).json())["values"]}
    assert values[2002]["data"]["value"] == "B-2025-01" and values[2003]["data"]["value"] == "L3"
    assert values[1]["data"]["value"] == "https://example.com/p/1"
    reply = await put(client, "88.118.2/PRD-1", body, index=["2002"])
    assert reply.status == 400 and "Mismatched indexes" in (await reply.json())["message"]


async def test_mint_new_suffix(client):
    reply = await put(client, "88.118.2", mintNewSuffix="true")
    assert reply.status == 201
    minted = (await reply.json())["handle"]
    assert re.fullmatch(r"88\.118\.2/[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", minted)
    assert (await client.get(f"/api/handles/{minted}")).status == 200


async def test_delete_handle_and_values(client):
    await put(client, "88.118.2/PRD-1")
    reply = await client.delete("/api/handles/88.118.2/PRD-1", params={"index": "2002"}, headers=basic())
    assert reply.status == 200
    reply = await client.delete("/api/handles/88.118.2/PRD-1", params={"index": "2002"}, headers=basic())
    assert reply.status == 400 and (await reply.json())["responseCode"] == 200
    reply = await client.delete("/api/handles/88.118.2/PRD-1", headers=basic())
    assert await reply.read() == b'{"responseCode":1,"handle":"88.118.2/PRD-1"}'
    reply = await client.get("/api/handles/88.118.2/PRD-1")
    assert reply.status == 404
    assert (await reply.json())["responseCode"] == 100
    reply = await client.delete("/api/handles/88.118.2/PRD-1", headers=basic())
    assert reply.status == 404


async def test_prefix_referral_for_a_delegated_prefix(client):
    site = {"index": 1, "type": "HS_SITE", "data": {"format": "site", "value": {"servers": [
        {"serverId": 1, "address": "127.0.0.1", "interfaces": [{"query": True, "admin": False, "protocol": "HTTP", "port": 9005}]}]}}}
    assert (await put(client, "0.NA/88.118.2.5", {"values": [site]})).status == 201
    reply = await client.get("/api/handles/88.118.2.5/PRD-9")
    assert reply.status == 300
    body = await reply.json()
    assert list(body) == ["responseCode", "values", "handle", "referralHandle"]
    assert body["referralHandle"] == "0.NA/88.118.2.5"
    assert body["responseCode"] == 303 and body["handle"] == "88.118.2.5/PRD-9"
    assert body["values"][0]["data"]["value"]["servers"][0]["interfaces"][0]["port"] == 9005


async def test_a_prefix_not_here_is_301_not_404(client):
    reply = await client.get("/api/handles/86.100/X")
    assert reply.status == 400
    assert await reply.read() == b'{"responseCode":301,"message":"That prefix doesn\'t live here","handle":"86.100/X"}'


async def test_proxy_redirects_to_the_first_url(client):
    await put(client, "88.118.2/PRD-1")
    reply = await client.get("/88.118.2/PRD-1", allow_redirects=False)
    assert reply.status == 302
    assert reply.headers["Location"] == "https://example.com/p/1"
    reply = await client.get("/88.118.2/PRD-1?noredirect", allow_redirects=False)
    assert reply.status == 200 and (await reply.json())["handle"] == "88.118.2/PRD-1"
    reply = await client.get("/88.118.2/missing", allow_redirects=False)
    assert reply.status == 404


async def test_listing_pages_and_streams(client):
    for i in range(25):
        await put(client, f"88.118.2/L-{i:02}")
    reply = await client.get("/api/handles", params={"prefix": "88.118.2", "page": "1", "pageSize": "10"}, headers=basic())
    body = await reply.json()
    assert list(body) == ["responseCode", "prefix", "totalCount", "page", "pageSize", "handles"]
    assert body["totalCount"] == "25" and body["handles"][0] == "88.118.2/L-10" and len(body["handles"]) == 10
    reply = await client.get("/api/handles", params={"prefix": "0.NA/88.118.2"}, headers=basic())
    body = await reply.json()
    assert body["totalCount"] == "25" and len(body["handles"]) == 25 and "page" not in body
    reply = await client.get("/api/handles", params={"prefix": "88.118.2"})
    assert reply.status == 401 and (await reply.json())["responseCode"] == 402
    assert reply.headers["WWW-Authenticate"] == 'Basic realm="handle"'
    reply = await client.get("/api/handles", params={"prefix": "88.118.2", "page": "0", "pageSize": str(limits.MAX_PAGE_SIZE + 1)}, headers=basic())
    assert reply.status == 400 and "above the limit" in (await reply.json())["message"]


async def test_root_describes_the_node(client):
    body = await (await client.get("/")).json()
    assert body["prefixes"] == ["88.118.2"] and body["api"]["handles"] == "/api/handles/{handle}"
    # every route it lists exists (whatever it then answers this unauthenticated GET)
    samples = {"{handle}": "88.118.2/PRD-1", "{prefix}": "88.118.2", "{seq}": "0", "{name}": "x", "{child}": "88.118.2"}
    for name, template in body["api"].items():
        path = template.split(" | ")[0].split("?")[0]
        for placeholder, value in samples.items():
            path = path.replace(placeholder, value)
        reply = await client.get(path)
        assert "Unknown HTTP API endpoint" not in await reply.text(), (name, path)


async def test_prefixes(client):
    reply = await client.get("/api/prefixes")
    assert await reply.read() == b'{"responseCode":1,"totalCount":"1","prefixes":["0.NA/88.118.2"]}'


async def test_write_authorisation(client, registry):
    before = await journal_length(registry)
    anonymous = await client.put("/api/handles/88.118.2/PRD-1", json=PUT_BODY)
    assert anonymous.status == 401 and (await anonymous.json())["responseCode"] == 402
    wrong = await client.put("/api/handles/88.118.2/PRD-1", json=PUT_BODY, headers=basic(secret="guess"))
    assert wrong.status == 401 and (await wrong.json())["responseCode"] == 403
    other_prefix = await client.put("/api/handles/88.7/PRD-1", json=PUT_BODY, headers=basic())
    assert other_prefix.status == 400 and (await other_prefix.json())["responseCode"] == 301
    # an identity of another prefix homed here administers nothing under 88.118.2
    from tests.conftest import home
    from registry.secret_hash import hash_secret

    await home(registry, hash_secret(b"other"), "88.999")
    before = await journal_length(registry)
    foreign = await client.put("/api/handles/88.118.2/PRD-1", json=PUT_BODY, headers=basic("300:0.NA/88.999", "other"))
    assert foreign.status == 403 and (await foreign.json())["responseCode"] == 400
    assert (await client.get("/api/handles/88.118.2/PRD-1")).status == 404
    assert await journal_length(registry) == before


async def test_curl_style_and_handle_style_user_names_both_work(client):
    import base64

    for user in (b"300:0.NA/88.118.2", b"300%3A0.NA%2F88.118.2"):
        header = {"Authorization": "Basic " + base64.b64encode(user + b":s3cret-admin").decode()}
        reply = await client.put("/api/handles/88.118.2/U", json=PUT_BODY, headers=header)
        assert reply.status in (200, 201), await reply.text()


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code", "fragment"),
    [
        ("PUT", "/api/handles/88.118.2/B", {"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, 4, "not valid JSON"),
        ("PUT", "/api/handles/88.118.2/B", {"data": b"", "headers": {"Content-Type": "application/json"}}, 400, 4, "empty"),
        ("PUT", "/api/handles/88.118.2/B", {"data": b"<x/>", "headers": {"Content-Type": "application/xml"}}, 415, 4, "Content-Type 'application/xml'"),
        ("PUT", "/api/handles/88.118.2/B", {"json": {"values": [{"index": "one", "type": "URL", "data": "u"}]}}, 400, 202, "must be an integer"),
        ("PUT", "/api/handles/88.118.2/B", {"json": {"values": [{"index": 0, "type": "URL", "data": "u"}]}}, 400, 202, "1..2147483647"),
        ("PUT", "/api/handles/88.118.2/B", {"json": {"values": [{"index": 1, "type": "URL", "data": "u"}, {"index": 1, "type": "X", "data": "v"}]}}, 409, 201, "Index conflict"),
        ("PUT", "/api/handles/88.118.2/B", {"json": {"handle": "88.118.2/C", "values": []}}, 400, 4, "Mismatched handle"),
        ("PUT", "/api/handles/88.118.2 B/x", {"json": PUT_BODY}, 400, 102, "position 9"),
        ("PUT", "/api/handles/", {"json": PUT_BODY}, 400, 102, "Empty handle"),
        ("PUT", "/api/handles/88.118.2/B", {"data": io.BytesIO(b"[" + b" " * limits.MAX_RECORD_BODY_BYTES + b"]"), "headers": {"Content-Type": "application/json"}}, 413, 4, "limit"),
        ("GET", "/api/handles/88.118.2/B?index=abc", {}, 400, 4, "index='abc'"),
        ("GET", "/api/handles/88..2/B", {}, 400, 102, "empty segment"),
        ("DELETE", "/api/handles/88.118.2/B?index=x", {}, 400, 4, "not an integer"),
        ("POST", "/api/handles/88.118.2/B", {}, 405, 4, "not allowed"),
        ("GET", "/api/nothing", {}, 404, 4, "Unknown HTTP API endpoint"),
        ("POST", "/api/batch", {"data": b"{}", "headers": {"Content-Type": "text/csv"}}, 415, 4, "application/x-ndjson"),
    ],
)
async def test_bad_requests_get_4xx_with_a_message_and_change_nothing(client, registry, method, path, kwargs, status, code, fragment):
    before = await journal_length(registry)
    headers = {**basic(), **kwargs.pop("headers", {})}
    reply = await client.request(method, path, headers=headers, **kwargs)
    assert reply.status == status, await reply.text()
    body = await reply.json()
    assert body["responseCode"] == code
    assert fragment in body["message"]
    assert await journal_length(registry) == before


async def test_an_oversized_chunked_body_is_refused(client, registry):
    async def body():
        for _ in range(limits.MAX_RECORD_BODY_BYTES // 65536 + 2):
            yield b" " * 65536

    before = await journal_length(registry)
    reply = await client.put(
        "/api/handles/88.118.2/B", data=body(), headers={**basic(), "Content-Type": "application/json"}
    )
    assert reply.status == 413
    assert "larger than" in (await reply.json())["message"]
    assert await journal_length(registry) == before


async def test_unicode_and_slashes_in_suffixes_round_trip(client):
    handle = "88.118.2/批次/2024/产品-1"
    from urllib.parse import quote

    reply = await client.put("/api/handles/" + quote(handle), json=PUT_BODY, headers=basic())
    assert reply.status == 201
    body = await (await client.get("/api/handles/" + quote(handle))).json()
    assert body["handle"] == handle


async def test_private_values_are_shown_to_admins_only(client):
    body = {"values": [{"index": 1, "type": "URL", "data": "u"}, {"index": 9, "type": "COST", "data": "12", "permissions": "1100"}]}
    await put(client, "88.118.2/PRD-1", body)
    public = await (await client.get("/api/handles/88.118.2/PRD-1")).json()
    assert 9 not in [v["index"] for v in public["values"]]
    private = await (await client.get("/api/handles/88.118.2/PRD-1", headers=basic())).json()
    assert [v for v in private["values"] if v["index"] == 9][0]["permissions"] == "1100"


async def test_admin_secret_is_never_served_in_clear(client):
    body = await (await client.get("/api/handles/0.NA/88.118.2", headers=basic())).read()
    assert b"s3cret-admin" not in body and b"$scrypt$" in body
    anonymous = await (await client.get("/api/handles/0.NA/88.118.2")).read()
    assert b"HS_SECKEY" not in anonymous


def test_admin_identity_constant():
    assert ADMIN == "300:0.NA/88.118.2"
    assert orjson.dumps(PUT_BODY)


async def test_a_url_with_control_characters_is_not_a_redirect(client):
    body = {"values": [{"index": 1, "type": "URL", "data": "https://e.example/a\r\nSet-Cookie: x=1"}]}
    await put(client, "88.118.2/CRLF", body)
    reply = await client.get("/88.118.2/CRLF", allow_redirects=False)
    assert reply.status == 200 and "Location" not in reply.headers


async def test_listing_follows_handle_server_paging_rules(client):
    for i in range(3):
        await put(client, f"88.118.2/L-{i}")
    only_size = await (await client.get("/api/handles", params={"prefix": "88.118.2", "pageSize": "1"}, headers=basic())).json()
    assert "page" not in only_size and len(only_size["handles"]) == 3  # paging needs both parameters
    slash = await client.get("/api/handles/", params={"prefix": "88.118.2"}, headers=basic())
    assert (await slash.json())["totalCount"] == "3"
    huge = await client.get("/api/handles", params={"prefix": "88.118.2", "page": str(2**62), "pageSize": "10"}, headers=basic())
    assert huge.status == 400
    beyond = await (await client.get("/api/handles", params={"prefix": "88.118.2", "page": "9", "pageSize": "10"}, headers=basic())).json()
    assert beyond["handles"] == []


async def test_proxy_does_not_redirect_to_script_urls(client):
    body = {"values": [
        {"index": 1, "type": "URL", "data": {"format": "string", "value": "javascript:alert(1)"}},
        {"index": 2, "type": "URL", "data": {"format": "string", "value": "HTTPS://example.com/ok"}},
    ]}
    assert (await put(client, "88.118.2/PRD-JS", body)).status == 201
    reply = await client.get("/88.118.2/PRD-JS", allow_redirects=False)
    assert reply.status == 302 and reply.headers["Location"] == "HTTPS://example.com/ok"
    only_script = {"values": [body["values"][0]]}
    assert (await put(client, "88.118.2/PRD-JS2", only_script)).status == 201
    reply = await client.get("/88.118.2/PRD-JS2", allow_redirects=False)
    assert reply.status == 200 and "Location" not in reply.headers
