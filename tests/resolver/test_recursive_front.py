"""The recursive node's HTTP front end, in front of a real hierarchy.

A :class:`LocalHierarchy` (top-level 88, secondary 88.118, enterprise
88.118.2, in memory, each a real aiohttp server on loopback) is resolved
through a real recursive app; answers are compared with what the
authoritative node itself says.
"""

from __future__ import annotations

import email.utils
import re
from urllib.parse import quote

import aiohttp
import orjson
import pytest
import yarl
from prometheus_client.parser import text_string_to_metric_families

from resolver.hierarchy import LocalHierarchy, sample_handle
from resolver.recursive_api import RESOLVER
from resolver.recursive_app import recursive_app
from resolver.resolver_settings import build_resolver_settings
from tests.resolver.front_fixtures import ask_node, put_record, take_down, text_value

ENTERPRISE = "88.118.2"
SAMPLES = 60
PLAIN = sample_handle(ENTERPRISE, 1)  #: a sample product without a URL value
WITH_URL = sample_handle(ENTERPRISE, 50)  #: every 50th sample has one
MISSING = f"{ENTERPRISE}/NO-SUCH-PRODUCT"
HTML = {"Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"}


class Front:
    """A hierarchy and the test client of a recursive node bootstrapped at its top."""

    def __init__(self, hierarchy: LocalHierarchy, client) -> None:
        self.hierarchy = hierarchy
        self.client = client

    @property
    def resolver(self):
        return self.client.app[RESOLVER]

    def url_of(self, prefix: str) -> str:
        return self.hierarchy.nodes[prefix].url


@pytest.fixture
async def front(aiohttp_client):
    async with LocalHierarchy() as hierarchy:
        await hierarchy.register_samples(SAMPLES)
        settings = build_resolver_settings(flags={"bootstrap": hierarchy.top.url})
        client = await aiohttp_client(recursive_app(settings))
        yield Front(hierarchy, client)
        await client.close()  # before the nodes go: the resolver's pool closes with it


# --- the REST API ----------------------------------------------------------------


async def test_an_answer_is_byte_for_byte_what_the_authoritative_node_says(front):
    status, direct = await ask_node(front.hierarchy.enterprise, f"/api/handles/{PLAIN}")
    assert status == 200
    first = await front.client.get(f"/api/handles/{PLAIN}")
    assert first.status == 200
    assert first.content_type == "application/json"
    assert first.headers["X-Idnode-Cache"] == "upstream"
    assert await first.read() == direct
    again = await front.client.get(f"/api/handles/{PLAIN}")
    assert again.headers["X-Idnode-Cache"] == "memory"
    assert await again.read() == direct
    body = orjson.loads(direct)
    assert list(body) == ["responseCode", "handle", "values"]
    assert body["responseCode"] == 1 and body["handle"] == PLAIN
    assert {v["type"] for v in body["values"]} >= {"PRODUCT_NAME", "BATCH", "MANUFACTURE_DATE"}


@pytest.mark.parametrize(
    "params",
    [
        [("type", "PRODUCT_NAME")],
        [("index", "2003")],
        [("type", "BATCH"), ("index", "2001"), ("index", "2007")],
        [("type", "URL")],  # an existing handle none of whose values match: responseCode 200
        [("type", "PRODUCT_NAME"), ("pretty", "")],
    ],
)
async def test_filters_and_pretty_give_what_the_node_gives(front, params):
    query = "&".join(f"{k}={v}" if v else k for k, v in params)
    status, direct = await ask_node(front.hierarchy.enterprise, f"/api/handles/{PLAIN}?{query}")
    reply = await front.client.get(f"/api/handles/{PLAIN}?{query}")
    assert reply.status == status == 200
    mine = await reply.read()
    assert orjson.loads(mine) == orjson.loads(direct)
    body = orjson.loads(mine)
    if ("type", "URL") in params:
        assert body["responseCode"] == 200 and body["values"] == []
    else:
        assert body["responseCode"] == 1 and body["values"]
    if ("pretty", "") in params:
        assert mine.startswith(b'{\n  "responseCode": 1,\n  "handle": "' + PLAIN.encode() + b'",\n  "values": [\n')
    else:
        assert b"\n" not in mine


async def test_filters_apply_to_a_cached_answer_too(front):
    await front.client.get(f"/api/handles/{PLAIN}")
    reply = await front.client.get(f"/api/handles/{PLAIN}", params={"index": "2002"})
    assert reply.headers["X-Idnode-Cache"] == "memory"
    assert [v["index"] for v in (await reply.json())["values"]] == [2002]


async def test_a_handle_that_does_not_exist_is_404_handle_not_found(front):
    for attempt in ("upstream", "cached"):
        reply = await front.client.get(f"/api/handles/{MISSING}")
        assert reply.status == 404, attempt
        assert await reply.json() == {"responseCode": 100, "message": "Handle Not Found", "handle": MISSING}


async def test_a_prefix_nobody_delegated_is_404_too(front):
    reply = await front.client.get("/api/handles/88.999/X", params={"trace": "true"})
    assert reply.status == 404
    body = await reply.json()
    assert body["responseCode"] == 100
    assert [hop["level"] for hop in body["trace"]] == ["(bootstrap)"]
    assert "88.999 is not delegated" in body["trace"][0]["outcome"]


@pytest.mark.parametrize(
    "path, named",
    [
        ("88.118.2", "has no '/' between prefix and suffix"),
        ("88..2/X", "empty segment"),
        ("88.1%202/X", "(U+0020) at position 5 is not allowed in a prefix"),
        ("88.118.2/" + "x" * 300, "the limit is 255"),
    ],
)
async def test_an_invalid_handle_is_400_naming_the_problem(front, path, named):
    reply = await front.client.get(f"/api/handles/{path}")
    assert reply.status == 400
    body = await reply.json()
    assert body["responseCode"] == 102
    assert named in body["message"], body["message"]


async def test_a_trace_shows_every_hop_from_the_bootstrap_with_timings(front):
    await front.client.get(f"/api/handles/{PLAIN}")  # cached: a trace walks afresh all the same
    reply = await front.client.get(f"/api/handles/{PLAIN}", params={"trace": "true"})
    assert reply.status == 200
    assert reply.headers["X-Idnode-Cache"] == "upstream"
    body = await reply.json()
    assert body["responseCode"] == 1 and body["handle"] == PLAIN and body["values"]
    hops = body["trace"]
    assert [(h["level"], h["server"]) for h in hops] == [
        ("(bootstrap)", front.url_of("88")),
        ("88.118", front.url_of("88.118")),
        ("88.118.2", front.url_of("88.118.2")),
    ]
    assert [h["outcome"] for h in hops] == [
        "referral to 88.118",
        "referral to 88.118.2",
        f"answer ({len(body['values'])} values)",
    ]
    assert all(isinstance(h["ms"], (int, float)) and h["ms"] >= 0 for h in hops)


async def test_a_prefix_handle_resolves_through_the_prefix_it_names(front):
    reply = await front.client.get(f"/api/handles/0.NA/{ENTERPRISE}", params={"trace": "true"})
    assert reply.status == 200
    body = await reply.json()
    assert body["handle"] == f"0.NA/{ENTERPRISE}"
    sites = [v["data"]["value"] for v in body["values"] if v["type"] == "HS_SITE"]
    assert sites[0]["servers"][0]["interfaces"][0]["port"] == front.hierarchy.enterprise.port
    # the secondary node holds the delegation record and answers it
    assert [h["level"] for h in body["trace"]] == ["(bootstrap)", "88.118"]


async def test_a_suffix_with_dot_segments_is_resolved_as_itself(front):
    # "a/../b" is a legal suffix; a URL library that collapses it would fetch 88.118.2/b
    await put_record(front.hierarchy.enterprise, f"{ENTERPRISE}/a/../b", [text_value(2001, "PRODUCT_NAME", "dots")])
    await put_record(front.hierarchy.enterprise, f"{ENTERPRISE}/b", [text_value(2001, "PRODUCT_NAME", "plain b")])
    raw = yarl.URL(f"http://127.0.0.1:{front.client.port}/api/handles/{ENTERPRISE}/a/%2E%2E/b", encoded=True)
    async with aiohttp.ClientSession() as session, session.get(raw) as reply:
        assert reply.status == 200, await reply.text()
        body = await reply.json()
    assert body["handle"] == f"{ENTERPRISE}/a/../b"
    assert body["values"][0]["data"]["value"] == "dots"
    health = await (await front.client.get("/healthz")).json()
    assert health["status"] == "ok"  # and nobody was blamed for it


# --- the proxy form ----------------------------------------------------------------


async def test_the_proxy_form_redirects_to_the_first_url_with_cache_headers(front):
    for source in ("upstream", "memory"):
        reply = await front.client.get(f"/{WITH_URL}", allow_redirects=False)
        assert reply.status == 302, source
        assert reply.headers["Location"] == f"https://example.com/products/{ENTERPRISE}/50"
        assert reply.headers["X-Idnode-Cache"] == source
        match = re.fullmatch(r"public, max-age=(\d+)", reply.headers["Cache-Control"])
        assert match is not None
        max_age = int(match.group(1))
        assert 0 < max_age <= 86400
        expires = email.utils.parsedate_to_datetime(reply.headers["Expires"])
        date = email.utils.parsedate_to_datetime(reply.headers["Date"])
        assert abs((expires - date).total_seconds() - max_age) <= 5


async def test_noredirect_for_a_browser_is_the_escaped_product_page(front):
    handle = f"{ENTERPRISE}/XSS-<i>1</i>"
    await put_record(
        front.hierarchy.enterprise,
        handle,
        [
            text_value(1, "URL", "https://example.com/p/1"),
            text_value(2001, "PRODUCT_NAME", "<script>alert('owned')</script> reducer"),
            text_value(2002, "BATCH", "B-2026-07 & co"),
            text_value(2003, "URL.manual", "javascript:alert(1)"),
        ],
    )
    reply = await front.client.get(f"/{quote(handle)}", params={"noredirect": ""}, headers=HTML)
    assert reply.status == 200
    assert reply.content_type == "text/html"
    page = await reply.text()
    assert "<script>" not in page and "<i>" not in page
    assert "&lt;script&gt;alert(&#x27;owned&#x27;)&lt;/script&gt; reducer" in page
    assert "B-2026-07 &amp; co" in page
    assert "Product name" in page and "Batch" in page
    assert '<a href="https://example.com/p/1" rel="nofollow noopener">https://example.com/p/1</a>' in page
    assert "<dd>javascript:alert(1)</dd>" in page and 'href="javascript' not in page
    assert f"{ENTERPRISE}/XSS-&lt;i&gt;1&lt;/i&gt;" in page
    assert f'href="/api/handles/{ENTERPRISE}/XSS-%3Ci%3E1%3C/i%3E"' in page
    assert '<meta name="viewport" content="width=device-width,initial-scale=1">' in page
    # the link is right: the raw JSON it names is the record
    raw = await front.client.get(f"/api/handles/{ENTERPRISE}/XSS-%3Ci%3E1%3C/i%3E")
    assert (await raw.json())["handle"] == handle


async def test_a_browser_asking_for_a_record_without_url_gets_its_page(front):
    reply = await front.client.get(f"/{PLAIN}", headers=HTML, allow_redirects=False)
    assert reply.status == 200 and reply.content_type == "text/html"
    page = await reply.text()
    assert PLAIN in page
    assert "<title>伺服电机 SM-750</title>" in page
    assert "<dt>Product type</dt><dd>Servo motor</dd>" in page
    assert f'href="/api/handles/{PLAIN}"' in page


async def test_a_program_asking_for_a_record_without_url_gets_json(front):
    reply = await front.client.get(f"/{PLAIN}", headers={"Accept": "application/json"}, allow_redirects=False)
    assert reply.status == 200
    assert reply.content_type == "application/json"
    body = await reply.json()
    assert body["responseCode"] == 1 and body["handle"] == PLAIN
    assert "public, max-age=" in reply.headers["Cache-Control"]


async def test_an_unknown_handle_is_a_404_page_for_a_browser_and_json_for_a_program(front):
    page = await front.client.get(f"/{MISSING}", headers=HTML)
    assert page.status == 404 and page.content_type == "text/html"
    text = await page.text()
    assert "Identifier not found" in text and MISSING in text
    program = await front.client.get(f"/{MISSING}")
    assert program.status == 404
    assert (await program.json())["responseCode"] == 100


@pytest.mark.parametrize(
    "text",
    [
        f"hdl:{PLAIN}",
        f"{PLAIN}\r\n",
        f"HTTPS://ID.EXAMPLE.CN/{PLAIN}",
        f"https://id.example.cn/api/handles/{quote(PLAIN)}?pretty",
    ],
)
async def test_the_lookup_form_redirects_any_input_form_to_the_proxy_form(front, text):
    reply = await front.client.get("/resolve", params={"handle": text}, allow_redirects=False)
    assert reply.status == 302
    assert reply.headers["Location"] == f"/{PLAIN}"


async def test_the_lookup_form_percent_encodes_the_handle_it_redirects_to(front):
    handle = f"{ENTERPRISE}/零件 #7?"
    await put_record(front.hierarchy.enterprise, handle, [text_value(2001, "PRODUCT_NAME", "gear")])
    reply = await front.client.get("/resolve", params={"handle": f"hdl:{handle}"}, allow_redirects=False)
    assert reply.status == 302
    location = reply.headers["Location"]
    assert location == "/" + ENTERPRISE + "/" + quote("零件 #7?")
    followed = await front.client.get(location, headers={"Accept": "application/json"})
    assert (await followed.json())["handle"] == handle


async def test_the_lookup_form_refuses_text_that_is_not_an_identifier(front):
    reply = await front.client.get("/resolve", params={"handle": "PRD-2026-000001"})
    assert reply.status == 400
    body = await reply.json()
    assert body["responseCode"] == 102 and "no '/'" in body["message"]
    page = await front.client.get("/resolve", params={"handle": "https://id.example.cn/"}, headers=HTML)
    assert page.status == 400
    assert "Not an identifier" in await page.text()
    empty = await front.client.get("/resolve")
    assert empty.status == 400 and "empty input" in (await empty.json())["message"]


# --- the rest of the surface ----------------------------------------------------------


async def test_the_front_page_is_a_lookup_form_for_people_and_a_description_for_programs(front):
    page = await front.client.get("/", headers=HTML)
    assert page.status == 200 and page.content_type == "text/html"
    text = await page.text()
    assert '<form method="get" action="/resolve"><input name="handle"' in text
    assert '<meta name="viewport"' in text
    described = await (await front.client.get("/")).json()
    assert described["api"]["handles"].startswith("/api/handles/{handle}")


async def test_other_methods_and_unknown_api_paths_get_handle_shaped_errors(front):
    put = await front.client.put(f"/api/handles/{PLAIN}", json={"values": []})
    assert put.status == 405 and put.headers["Allow"] == "GET"
    assert (await put.json())["responseCode"] == 4
    unknown = await front.client.get("/api/prefixes")
    assert unknown.status == 404 and (await unknown.json())["responseCode"] == 4


# --- operations ------------------------------------------------------------------------


def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition, keyed by name and labels."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def test_metrics_count_requests_answers_by_source_upstream_latency_and_errors(front):
    await front.client.get(f"/api/handles/{PLAIN}")  # upstream: three hops
    await front.client.get(f"/api/handles/{PLAIN}")  # memory
    await front.client.get(f"/api/handles/{MISSING}")  # upstream, from the cached 88.118.2 delegation: one hop
    await front.client.get(f"/api/handles/{MISSING}")  # the cached "not found"
    await front.client.get(f"/{WITH_URL}", allow_redirects=False)  # proxy, upstream: one hop
    reply = await front.client.get("/metrics")
    assert reply.status == 200
    assert reply.content_type == "text/plain"
    samples = scrape(await reply.text())

    def value(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    assert value("idnode_resolver_requests_total", endpoint="api") == 4
    assert value("idnode_resolver_requests_total", endpoint="proxy") == 1
    assert value("idnode_resolver_answers_total", source="upstream") == 3
    assert value("idnode_resolver_answers_total", source="memory") == 2
    assert value("idnode_resolver_errors_total", code="100") == 2
    assert value("idnode_resolver_upstream_request_seconds_count") == 5
    assert value("idnode_resolver_upstream_request_seconds_bucket", le="+Inf") == 5
    assert value("idnode_resolver_upstream_request_seconds_sum") > 0
    assert value("idnode_resolver_upstream_failures_total") == 0
    assert value("idnode_resolver_cache_entries") == len(front.resolver.memory) > 0


async def test_health_is_ok_then_degraded_after_an_upstream_failed_then_ok_again(front):
    await front.client.get(f"/api/handles/{PLAIN}")
    health = await (await front.client.get("/healthz")).json()
    assert health["status"] == "ok"
    assert set(health["upstreams"]) == {front.url_of(p) for p in ("88", "88.118", "88.118.2")}
    assert all(state["state"] == "up" for state in health["upstreams"].values())
    assert health["cache"]["memory"]["state"] == "up"

    enterprise = front.hierarchy.enterprise
    await take_down(enterprise)
    failed = await front.client.get(f"/api/handles/{sample_handle(ENTERPRISE, 2)}")
    assert failed.status == 502
    assert "no server of the node of 88.118.2 answered" in (await failed.json())["message"]
    reply = await front.client.get("/healthz")
    assert reply.status == 200  # the resolver still answers what it can
    health = await reply.json()
    assert health["status"] == "degraded"
    assert health["upstreams"][enterprise.url]["state"] == "down"
    assert health["upstreams"][enterprise.url]["consecutive_failures"] == 1
    assert "cannot connect" in health["upstreams"][enterprise.url]["last_error"]
    assert health["upstreams"][front.url_of("88")]["state"] == "up"

    await enterprise.start()
    assert (await front.client.get(f"/api/handles/{sample_handle(ENTERPRISE, 2)}")).status == 200
    assert (await (await front.client.get("/healthz")).json())["status"] == "ok"


async def test_every_not_found_reply_is_counted_as_an_error_whatever_its_form(front):
    assert (await front.client.get(f"/api/handles/{MISSING}", params={"trace": "true"})).status == 404
    assert (await front.client.get(f"/{MISSING}", headers=HTML)).status == 404
    assert (await front.client.get(f"/api/handles/{MISSING}")).status == 404
    assert (await front.client.get(f"/{MISSING}")).status == 404
    assert (await front.client.get("/api/handles/bad")).status == 400
    samples = scrape(await (await front.client.get("/metrics")).text())
    assert samples[("idnode_resolver_errors_total", (("code", "100"),))] == 4
    assert samples[("idnode_resolver_errors_total", (("code", "102"),))] == 1
