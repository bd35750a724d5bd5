"""The shared HTTP pieces: bounded body reading and per-method routing,
against a real aiohttp server on loopback."""

from __future__ import annotations

from typing import AsyncIterator

import orjson
import pytest
from aiohttp import web

from resolver.http_common import add_endpoint, api_endpoint, json_object_reply, read_json

LIMIT = 64 * 1024


@api_endpoint
async def echo(request: web.Request) -> web.StreamResponse:
    body = await read_json(request, limit=LIMIT, limit_name="TEST_LIMIT", what="a test object")
    return json_object_reply({"got": body})


@api_endpoint
async def optional(request: web.Request) -> web.StreamResponse:
    return json_object_reply({"got": await read_json(request, limit=LIMIT, required=False)})


@pytest.fixture
async def client(aiohttp_client):
    app = web.Application()
    add_endpoint(app.router, "/echo", POST=echo, PUT=echo)
    add_endpoint(app.router, "/optional", POST=optional)
    return await aiohttp_client(app)


async def pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


async def test_a_chunked_body_arriving_in_pieces_is_read_whole(client):
    obj = {"text": "x" * (LIMIT - 100)}
    reply = await client.post("/echo", data=pieces(orjson.dumps(obj), 997),
                              headers={"Content-Type": "application/json"})
    assert reply.status == 200
    assert (await reply.json())["got"] == obj


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "streamed"])
async def test_a_body_over_the_limit_is_413_naming_the_limit(client, chunked):
    data = orjson.dumps({"text": "x" * LIMIT})
    reply = await client.post("/echo", data=pieces(data, 4096) if chunked else data,
                              headers={"Content-Type": "application/json"})
    assert reply.status == 413
    message = (await reply.json())["message"]
    assert "TEST_LIMIT" in message and str(LIMIT) in message


@pytest.mark.parametrize(
    "body, content_type, status, words",
    [
        (b"", "application/json", 400, "send a test object"),
        (b"{nope", "application/json", 400, "not valid JSON"),
        (b"{}", "text/plain", 415, "'text/plain'"),
    ],
)
async def test_bad_bodies_are_refused_saying_why(client, body, content_type, status, words):
    reply = await client.post("/echo", data=body, headers={"Content-Type": content_type})
    assert reply.status == status
    assert words in (await reply.json())["message"]


async def test_an_optional_body_may_be_absent_but_not_malformed(client):
    absent = await client.post("/optional")
    assert absent.status == 200 and (await absent.json())["got"] is None
    present = await client.post("/optional", json={"reason": "r"})
    assert (await present.json())["got"] == {"reason": "r"}
    malformed = await client.post("/optional", data=b"[", headers={"Content-Type": "application/json"})
    assert malformed.status == 400


async def test_other_methods_are_405_listing_the_allowed_ones(client):
    reply = await client.delete("/echo")
    assert reply.status == 405
    assert reply.headers["Allow"] == "POST, PUT"
    body = await reply.json()
    assert body["responseCode"] == 4 and "DELETE is not allowed on /echo; use POST, PUT" == body["message"]
