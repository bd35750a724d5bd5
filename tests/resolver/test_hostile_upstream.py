"""A recursive node in front of upstream servers that misbehave.

Each test sets the handler of a tiny aiohttp server on a random loopback
port (dnspython's way of testing a resolver against a hostile name server)
and uses it as the bootstrap of a real recursive app. Whatever the upstream
does, the recursive node must answer a clear Handle-shaped error, cache
nothing, and ask again on the next request; and with a good server beside
the hostile one, the answer must come from the good one.
"""

from __future__ import annotations

import asyncio
import gzip
from typing import Any, Awaitable, Callable

import orjson
import pytest
from aiohttp import web

from cache.entry import answer_key
from idcore import limits
from idcore.handle import Handle
from registry.node_setup import site_for
from resolver.recursive_api import RESOLVER
from resolver.recursive_app import recursive_app
from resolver.resolver_settings import build_resolver_settings

HANDLE = "88.118.2/PRD-1"

#: Per-request timeout of the resolvers built here: a loopback server that
#: has not answered in this long is the "slow server" of these tests.
REQUEST_TIMEOUT = 0.3

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FakeUpstream:
    """An HTTP server on a random loopback port; ``handler`` answers every
    request and may be replaced by the test at any time."""

    def __init__(self, handler: Handler | None = None) -> None:
        self.handler: Handler = handler or good
        self.paths: list[str] = []
        #: set at shutdown, so that handlers told to hang stop hanging
        self.release = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def asked(self, handle: str = HANDLE) -> int:
        """Requests that arrived for ``handle``."""
        return self.paths.count("/api/handles/" + handle)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.paths.append(request.path)
        return await self.handler(request)

    async def __aenter__(self) -> FakeUpstream:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        assert self._runner is not None
        await self._runner.cleanup()


def asked_handle(request: web.Request) -> str:
    return request.path.removeprefix("/api/handles/")


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


async def good(request: web.Request) -> web.StreamResponse:
    values = [{"index": 2001, "type": "PRODUCT_NAME", "data": {"format": "string", "value": "from the good server"}}]
    return json_response({"responseCode": 1, "handle": asked_handle(request), "values": values})


def referral_to(port: int, prefix: str) -> Handler:
    """A handler referring every request to the node on ``port``."""
    site = {"index": 1, "type": "HS_SITE", "data": {"format": "site", "value": site_for("127.0.0.1", port).to_json()}}

    async def refer(request: web.Request) -> web.StreamResponse:
        body = {
            "responseCode": 303,
            "values": [site],
            "handle": asked_handle(request),
            "referralHandle": f"0.NA/{prefix}",
        }
        return json_response(body, 300)

    return refer


# --- the misbehaviours -------------------------------------------------------------


async def wrong_handle(request: web.Request) -> web.StreamResponse:
    values = [{"index": 1, "type": "URL", "data": {"format": "string", "value": "https://phishing.example/"}}]
    return json_response({"responseCode": 1, "handle": "88.118.2/SOMETHING-ELSE", "values": values})


async def oversized(request: web.Request) -> web.StreamResponse:
    padding = "x" * (limits.MAX_UPSTREAM_REPLY_BYTES + 1)
    values = [{"index": 2001, "type": "PRODUCT_NAME", "data": {"format": "string", "value": padding}}]
    return json_response({"responseCode": 1, "handle": asked_handle(request), "values": values})


async def oversized_chunked(request: web.Request) -> web.StreamResponse:
    """A body without Content-Length that never ends before the limit."""
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    chunk = b" " * 65536
    try:
        for _ in range(limits.MAX_UPSTREAM_REPLY_BYTES // len(chunk) + 2):
            await response.write(chunk)
        await response.write_eof()
    except (ConnectionResetError, ConnectionError):
        pass  # the resolver hung up, as it should
    return response


#: 64 MiB of JSON white space, gzipped to about 64 KiB
_BOMB = gzip.compress(b" " * (16 * limits.MAX_UPSTREAM_REPLY_BYTES))


async def gzip_bomb(request: web.Request) -> web.StreamResponse:
    return web.Response(body=_BOMB, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})


async def not_json(request: web.Request) -> web.StreamResponse:
    return web.Response(text="<html><body>502 Bad Gateway</body></html>", content_type="text/html")


async def truncated_json(request: web.Request) -> web.StreamResponse:
    return web.Response(body=b'{"responseCode":1,"handle":"88.118.2/PRD-1","values":[', content_type="application/json")


async def duplicate_indexes(request: web.Request) -> web.StreamResponse:
    value = {"index": 2001, "type": "PRODUCT_NAME", "data": {"format": "string", "value": "twice"}}
    return json_response({"responseCode": 1, "handle": asked_handle(request), "values": [value, value]})


async def no_response_code(request: web.Request) -> web.StreamResponse:
    return json_response({"handle": asked_handle(request), "values": []})


def hangs(upstream: FakeUpstream) -> Handler:
    async def slow(request: web.Request) -> web.StreamResponse:
        await upstream.release.wait()  # far beyond REQUEST_TIMEOUT
        return await good(request)

    return slow


async def closes_connection(request: web.Request) -> web.StreamResponse:
    assert request.transport is not None
    request.transport.close()
    await asyncio.sleep(0)
    return web.Response()


async def not_http(request: web.Request) -> web.StreamResponse:
    """Another protocol on the port."""
    assert request.transport is not None
    request.transport.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
    request.transport.close()
    await asyncio.sleep(0)
    return web.Response()


async def huge_header(request: web.Request) -> web.StreamResponse:
    return web.Response(text="{}", headers={"X-Padding": "a" * 100_000})


def refers_to_itself(upstream: FakeUpstream) -> Handler:
    async def refer(request: web.Request) -> web.StreamResponse:
        return await referral_to(upstream.port, "88.118")(request)

    return refer


#: name -> (handler, or a factory taking the FakeUpstream; HTTP status; words the message must hold)
MISBEHAVIOURS: dict[str, tuple[Any, int, str]] = {
    "wrong handle": (wrong_handle, 502, "reply is about '88.118.2/SOMETHING-ELSE', not '88.118.2/PRD-1'"),
    "oversized": (oversized, 502, "exceeds MAX_UPSTREAM_REPLY_BYTES"),
    "oversized, chunked": (oversized_chunked, 502, "exceeds MAX_UPSTREAM_REPLY_BYTES"),
    "gzip bomb": (gzip_bomb, 502, "reply exceeds MAX_UPSTREAM_REPLY_BYTES"),
    "not JSON": (not_json, 502, "reply is not JSON"),
    "truncated JSON": (truncated_json, 502, "reply is not JSON"),
    "no responseCode": (no_response_code, 502, "no Handle responseCode"),
    "duplicate value indexes": (duplicate_indexes, 502, "invalid value: Index conflict for 2001"),
    "slow": (hangs, 502, f"no reply within {REQUEST_TIMEOUT:.3g} s"),
    "closes the connection": (closes_connection, 502, "Server disconnected"),
    "not HTTP": (not_http, 502, "SSH-2.0-OpenSSH_9.6"),
    "huge header": (huge_header, 502, "8190 bytes"),
    "refers to itself": (refers_to_itself, 502, "leads back to a node already asked"),
}

_FACTORIES = (hangs, refers_to_itself)


def install(upstream: FakeUpstream, behaviour: Any) -> None:
    upstream.handler = behaviour(upstream) if behaviour in _FACTORIES else behaviour


async def start_resolver(aiohttp_client, bootstrap: Any, **flags: Any) -> Any:
    settings = build_resolver_settings(flags={"bootstrap": bootstrap, "request_timeout": REQUEST_TIMEOUT, **flags})
    return await aiohttp_client(recursive_app(settings))


def cached_answer(client: Any, handle: str = HANDLE) -> Any:
    return client.app[RESOLVER].memory.peek(answer_key(Handle.from_text(handle).key))


def memory_entries(client: Any) -> int:
    return len(client.app[RESOLVER].memory)


async def assert_clear_error(reply: Any, status: int, named: str) -> dict[str, Any]:
    assert reply.status == status
    assert reply.content_type == "application/json"
    body = await reply.json()
    assert body["responseCode"] == 2
    assert body["handle"] == HANDLE
    assert named in body["message"], body["message"]
    return body


# --- one hostile bootstrap ----------------------------------------------------------


@pytest.mark.parametrize("case", list(MISBEHAVIOURS))
async def test_a_hostile_upstream_gets_a_clear_error_and_nothing_is_cached(aiohttp_client, case):
    behaviour, status, named = MISBEHAVIOURS[case]
    async with FakeUpstream() as upstream:
        install(upstream, behaviour)
        client = await start_resolver(aiohttp_client, upstream.url)
        await assert_clear_error(await client.get(f"/api/handles/{HANDLE}"), status, named)
        first = upstream.asked()
        assert first >= 1
        assert cached_answer(client) is None
        assert memory_entries(client) == 0

        # not remembered as an answer, a "not found" or an error: the next request asks again
        await assert_clear_error(await client.get(f"/api/handles/{HANDLE}"), status, named)
        assert upstream.asked() > first
        assert cached_answer(client) is None
        assert memory_entries(client) == 0

        # and once the upstream behaves, its answer is served
        upstream.handler = good
        reply = await client.get(f"/api/handles/{HANDLE}")
        assert reply.status == 200
        assert (await reply.json())["values"][0]["data"]["value"] == "from the good server"
        assert cached_answer(client) is not None


async def test_a_redirect_is_not_followed(aiohttp_client):
    async with FakeUpstream() as elsewhere, FakeUpstream() as upstream:

        async def redirect(request: web.Request) -> web.StreamResponse:
            raise web.HTTPFound(elsewhere.url + request.path)

        upstream.handler = redirect
        client = await start_resolver(aiohttp_client, upstream.url)
        await assert_clear_error(await client.get(f"/api/handles/{HANDLE}"), 502, "HTTP 302 reply is not JSON")
        assert upstream.asked() == 1
        assert elsewhere.paths == []  # the resolver went nowhere it was not sent by a referral
        assert memory_entries(client) == 0


async def test_two_upstreams_referring_to_each_other_is_a_loop_and_nothing_is_cached(aiohttp_client):
    async with FakeUpstream() as top, FakeUpstream() as other:
        top.handler = referral_to(other.port, "88.118")
        other.handler = referral_to(top.port, "88.118.2")
        client = await start_resolver(aiohttp_client, top.url)
        for attempt in (1, 2):
            await assert_clear_error(
                await client.get(f"/api/handles/{HANDLE}"), 502, "leads back to a node already asked"
            )
            assert (top.asked(), other.asked()) == (attempt, attempt)
            # neither the answer nor the delegation the loop went through
            assert memory_entries(client) == 0


async def test_a_referral_up_the_hierarchy_is_refused(aiohttp_client):
    async with FakeUpstream() as top, FakeUpstream() as secondary, FakeUpstream() as impostor:
        top.handler = referral_to(secondary.port, "88.118")
        secondary.handler = referral_to(impostor.port, "88")
        client = await start_resolver(aiohttp_client, top.url)
        await assert_clear_error(await client.get(f"/api/handles/{HANDLE}"), 502, "leads up, not down")
        assert impostor.asked() == 0
        assert memory_entries(client) == 0


async def test_the_time_budget_running_out_is_504(aiohttp_client):
    async with FakeUpstream() as upstream:
        upstream.handler = hangs(upstream)
        client = await start_resolver(aiohttp_client, upstream.url, time_budget=REQUEST_TIMEOUT)
        await assert_clear_error(await client.get(f"/api/handles/{HANDLE}"), 504, "longer than its time budget")
        assert memory_entries(client) == 0


async def test_a_trace_of_a_failed_walk_shows_each_hop_and_the_error(aiohttp_client):
    async with FakeUpstream(wrong_handle) as upstream:
        client = await start_resolver(aiohttp_client, upstream.url)
        reply = await client.get(f"/api/handles/{HANDLE}", params={"trace": "true"})
        body = await assert_clear_error(reply, 502, "reply is about")
        assert [(hop["server"], hop["level"]) for hop in body["trace"]] == [(upstream.url, "(bootstrap)")]
        assert "reply is about '88.118.2/SOMETHING-ELSE'" in body["trace"][0]["outcome"]


async def test_the_health_report_names_the_failing_upstream(aiohttp_client):
    async with FakeUpstream(not_json) as upstream:
        client = await start_resolver(aiohttp_client, upstream.url)
        await client.get(f"/api/handles/{HANDLE}")
        health = await (await client.get("/healthz")).json()
        assert health["status"] == "degraded"
        assert health["upstreams"][upstream.url]["state"] == "down"
        assert "not JSON" in health["upstreams"][upstream.url]["last_error"]


# --- a hostile server beside a good one ----------------------------------------------

BESIDE_GOOD = ["wrong handle", "oversized", "not JSON", "slow", "closes the connection", "refers to itself"]


@pytest.mark.parametrize("case", BESIDE_GOOD)
async def test_a_hostile_primary_site_then_a_good_mirror_answers_from_the_mirror(aiohttp_client, case):
    async with FakeUpstream() as hostile, FakeUpstream(good) as mirror:
        install(hostile, MISBEHAVIOURS[case][0])
        client = await start_resolver(aiohttp_client, [[hostile.url], [mirror.url]])
        reply = await client.get(f"/api/handles/{HANDLE}")
        assert reply.status == 200
        body = await reply.json()
        assert body["handle"] == HANDLE
        assert body["values"][0]["data"]["value"] == "from the good server"
        assert hostile.asked() >= 1 and mirror.asked() == 1
        assert cached_answer(client) is not None
        health = await (await client.get("/healthz")).json()
        assert health["upstreams"][hostile.url]["state"] == "down"
        assert health["upstreams"][mirror.url]["state"] == "up"


def handle_hashed_to(settings_bootstrap: Any, port: int) -> str:
    """A handle the bootstrap site's hash rule assigns to the server on ``port``."""
    (site,) = settings_bootstrap
    for number in range(1000):
        handle = f"88.118.2/PRD-{number}"
        if site.server_for(handle).interfaces[0].port == port:
            return handle
    raise AssertionError("no handle hashes to that server")


@pytest.mark.parametrize("case", ["wrong handle", "not JSON", "slow"])
@pytest.mark.parametrize("hostile_listed_first", [True, False])
async def test_a_hostile_server_the_hash_picks_first_then_a_good_one_of_the_same_site(
    aiohttp_client, case, hostile_listed_first
):
    async with FakeUpstream() as hostile, FakeUpstream(good) as fine:
        install(hostile, MISBEHAVIOURS[case][0])
        urls = [hostile.url, fine.url] if hostile_listed_first else [fine.url, hostile.url]
        settings = build_resolver_settings(flags={"bootstrap": ",".join(urls), "request_timeout": REQUEST_TIMEOUT})
        handle = handle_hashed_to(settings.bootstrap, hostile.port)
        client = await aiohttp_client(recursive_app(settings))
        reply = await client.get(f"/api/handles/{handle}")
        assert reply.status == 200
        assert (await reply.json())["values"][0]["data"]["value"] == "from the good server"
        assert hostile.asked(handle) == 1 and fine.asked(handle) == 1
        assert hostile.paths.index("/api/handles/" + handle) == 0  # asked before the good one answered
