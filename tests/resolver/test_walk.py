"""The resolution state machine, driven by hand: no sockets, no event loop.

Every reply is built here as bytes, every failure is a reason string, and
time is a fake clock the test moves. The hash rule that picks a site's first
server is recomputed independently of :mod:`idcore.site`.
"""

from __future__ import annotations

import hashlib
import struct
import subprocess
import sys
from typing import Callable

import orjson
import pytest

from idcore import limits
from idcore.errors import (
    ReferralDepthExceeded,
    ReferralLoop,
    ResolutionTimeout,
    UpstreamUnavailable,
)
from idcore.handle import Handle
from idcore.site import HashOption, Interface, Server, Site
from resolver.walk import BOOTSTRAP, Query, Start, Walk, server_order

HANDLE = "88.118.2/PRD-1"
RECORD = [{"index": 2001, "type": "PRODUCT_NAME", "data": {"format": "string", "value": "RV-40"}, "ttl": 600}]


class Clock:
    """Monotonic seconds the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def site(*hosts: int, primary: bool = True, hash_option: int = HashOption.BY_ALL, port: int = 8000) -> Site:
    """A site whose servers are 10.0.<host>.1 .. in the order given."""
    servers = tuple(
        Server(number, f"10.0.{host}.1", (Interface("HTTP", port),)) for number, host in enumerate(hosts, start=1)
    )
    return Site(servers=servers, primary=primary, hash_option=hash_option)


def url(host: int, port: int = 8000) -> str:
    return f"http://10.0.{host}.1:{port}"


def site_value(*sites: Site, ttl: int = 3600) -> list[dict]:
    return [
        {"index": number, "type": "HS_SITE", "data": {"format": "site", "value": s.to_json()}, "ttl": ttl}
        for number, s in enumerate(sites, start=1)
    ]


def answer(handle: str = HANDLE, values: list | None = None) -> bytes:
    return orjson.dumps({"responseCode": 1, "handle": handle, "values": RECORD if values is None else values})


def referral(prefix: str | None, *sites: Site, handle: str = HANDLE, **extra: object) -> bytes:
    body: dict = {"responseCode": 303, "values": site_value(*sites), "handle": handle}
    if prefix is not None:
        body["referralHandle"] = f"0.NA/{prefix}"
    body.update(extra)
    return orjson.dumps(body)


def not_found(handle: str = HANDLE) -> bytes:
    return orjson.dumps({"responseCode": 100, "message": "Handle Not Found", "handle": handle})


class Fail(Exception):
    """Raised by a responder: the request got no reply (refused, timed out)."""


Responder = Callable[[Query], tuple[int, bytes]]


def drive(walk: Walk, respond: Responder, clock: Clock | None = None, step: float = 0.0) -> list[Query]:
    """Run ``walk`` to its end the way the async driver does; the queries sent."""
    sent = []
    while (query := walk.next_query()) is not None:
        sent.append(query)
        if clock is not None:
            clock.now += step
        try:
            status, body = respond(query)
        except Fail as exc:
            walk.on_failure(query, str(exc))
        else:
            walk.on_reply(query, status, body)
    return sent


def always_fail(query: Query) -> tuple[int, bytes]:
    raise Fail("down")


def by_server(table: dict[str, Callable[[Query], tuple[int, bytes]] | tuple[int, bytes] | str]) -> Responder:
    """A responder answering per server URL: a (status, body) pair, a
    callable, or a string meaning "fails with this reason"."""

    def respond(query: Query) -> tuple[int, bytes]:
        action = table[query.server]
        if isinstance(action, str):
            raise Fail(action)
        if callable(action):
            return action(query)
        return action

    return respond


def new_walk(handle: str = HANDLE, starts: list[Start] | None = None, **kwargs) -> Walk:
    kwargs.setdefault("clock", Clock())
    return Walk(Handle.from_text(handle), starts or [Start(BOOTSTRAP, (site(1),))], **kwargs)


# --- server order ----------------------------------------------------------------


def md5_choice(handle: str, hash_option: int, count: int) -> int:
    """Handle's rule, from its specification: MD5 of the upper-cased part,
    last four digest bytes as a signed big-endian int, absolute, modulo."""
    prefix, _, suffix = handle.partition("/")
    part = {HashOption.BY_PREFIX: prefix, HashOption.BY_SUFFIX: suffix, HashOption.BY_ALL: handle}[hash_option]
    (number,) = struct.unpack(">i", hashlib.md5(part.upper().encode("ascii")).digest()[-4:])
    return abs(number) % count


HASHED_HANDLES = [f"88.{p}/prd-{n}" for p in range(1, 9) for n in range(6)]


@pytest.mark.parametrize("hash_option", [HashOption.BY_PREFIX, HashOption.BY_SUFFIX, HashOption.BY_ALL])
def test_first_server_asked_is_the_one_handles_hash_rule_picks(hash_option):
    hosts = (11, 12, 13, 14, 15)
    bootstrap = site(*hosts, hash_option=hash_option)
    chosen_positions = set()
    for handle in HASHED_HANDLES:
        expected = md5_choice(handle, hash_option, len(hosts))
        chosen_positions.add(expected)
        walk = new_walk(handle, [Start(BOOTSTRAP, (bootstrap,))])
        first = walk.next_query()
        assert first is not None
        assert first.server == url(hosts[expected]), handle
        assert first.url == url(hosts[expected]) + "/api/handles/" + handle
        rest = [url(h) for h in hosts if h != hosts[expected]]
        assert server_order((bootstrap,), handle) == [url(hosts[expected]), *rest]
    # the rule spreads these handles; a constant choice would pass by luck
    assert len(chosen_positions) > 1


def test_hash_is_case_insensitive_for_ascii_letters():
    bootstrap = site(11, 12, 13, 14, 15, 16, 17)
    for handle in HASHED_HANDLES:
        assert server_order((bootstrap,), handle) == server_order((bootstrap,), handle.upper())


def test_only_ascii_letters_are_upper_cased_before_hashing():
    bootstrap = site(*range(11, 18))
    hosts = list(range(11, 18))
    spread = set()
    for number in range(40):
        handle = f"88.118.2/pièce-é{number}"
        # bytes.upper() leaves é alone; str.upper() would hash "PIÈCE-É..." instead
        digest = hashlib.md5(handle.encode("utf-8").upper()).digest()
        expected = abs(struct.unpack(">i", digest[-4:])[0]) % len(hosts)
        spread.add(expected)
        assert server_order((bootstrap,), handle)[0] == url(hosts[expected]), handle
    assert len(spread) > 1


def test_primary_sites_come_before_mirrors_whatever_the_listed_order():
    mirror = site(21, 22, primary=False)
    primary = site(11, 12)
    order = server_order((mirror, primary), HANDLE)
    assert set(order[:2]) == {url(11), url(12)}
    assert set(order[2:]) == {url(21), url(22)}
    assert order[0] == url((11, 12)[md5_choice(HANDLE, HashOption.BY_ALL, 2)])
    assert order[2] == url((21, 22)[md5_choice(HANDLE, HashOption.BY_ALL, 2)])


def test_servers_without_an_http_query_interface_are_left_out():
    tcp_only = Server(1, "10.0.1.1", (Interface("TCP", 2641),))
    admin_only = Server(2, "10.0.2.1", (Interface("HTTP", 8000, query=False, admin=True),))
    https = Server(3, "10.0.3.1", (Interface("TCP", 2641), Interface("HTTPS", 8443)))
    v6 = Server(4, "::1", (Interface("HTTP", 8001),))
    order = server_order((Site(servers=(tcp_only, admin_only, https, v6)),), HANDLE)
    assert sorted(order) == ["http://[::1]:8001", "https://10.0.3.1:8443"]


# --- failover ----------------------------------------------------------------------


def test_timeout_and_refusal_move_to_the_next_server_then_to_the_mirror():
    primary, mirror = site(11, 12), site(21, primary=False)
    first = url((11, 12)[md5_choice(HANDLE, HashOption.BY_ALL, 2)])
    second = url(11) if first == url(12) else url(12)
    walk = new_walk(starts=[Start(BOOTSTRAP, (primary, mirror))])
    respond = by_server(
        {first: "no reply within 1 s", second: "cannot connect: Connection refused", url(21): (200, answer())}
    )
    sent = drive(walk, respond)
    assert [q.server for q in sent] == [first, second, url(21)]
    assert walk.error is None
    assert walk.answer is not None and walk.answer.found
    assert orjson.loads(walk.answer.values_json)[0]["data"]["value"] == "RV-40"
    assert walk.answer.value_ttls == (600,)
    assert [h.outcome for h in walk.hops] == [
        "no reply within 1 s",
        "cannot connect: Connection refused",
        "answer (1 values)",
    ]
    assert walk.delegations == []


def test_all_servers_failing_is_upstream_unavailable_naming_each_failure():
    walk = new_walk(starts=[Start(BOOTSTRAP, (site(11, 12),))])
    sent = drive(walk, by_server({url(11): "no reply within 1 s", url(12): "cannot connect: Connection refused"}))
    assert len(sent) == 2
    assert isinstance(walk.error, UpstreamUnavailable)
    assert walk.answer is None
    assert "bootstrap" in walk.error.message
    assert "no reply within 1 s" in walk.error.message and "Connection refused" in walk.error.message
    assert walk.next_query() is None


def test_recently_failed_servers_are_asked_last():
    bootstrap = site(11, 12, 13)
    natural = server_order((bootstrap,), HANDLE)
    walk = new_walk(starts=[Start(BOOTSTRAP, (bootstrap,))], avoid=frozenset({natural[0]}))
    sent = drive(walk, always_fail)
    assert [q.server for q in sent] == [*natural[1:], natural[0]]


# --- referrals ---------------------------------------------------------------------


def test_referrals_are_followed_down_and_each_delegation_is_recorded_with_its_prefix():
    top, secondary, enterprise = site(1), site(2), site(3)
    walk = new_walk(starts=[Start(BOOTSTRAP, (top,))])
    sent = drive(
        walk,
        by_server(
            {
                url(1): (300, referral("88.118", secondary)),
                url(2): (300, referral("88.118.2", enterprise)),
                url(3): (200, answer()),
            }
        ),
    )
    assert [(q.level, q.server) for q in sent] == [(BOOTSTRAP, url(1)), ("88.118", url(2)), ("88.118.2", url(3))]
    assert all(q.url.endswith("/api/handles/88.118.2/PRD-1") for q in sent)
    assert [d.prefix for d in walk.delegations] == ["88.118", "88.118.2"]
    learned = [orjson.loads(d.values_json)[0]["data"]["value"]["servers"][0]["address"] for d in walk.delegations]
    assert learned == ["10.0.2.1", "10.0.3.1"]
    assert [d.value_ttls for d in walk.delegations] == [(3600,), (3600,)]
    assert walk.depth == 2
    assert walk.answer is not None and walk.answer.found and walk.answer.handle == HANDLE
    assert [h.outcome for h in walk.hops] == ["referral to 88.118", "referral to 88.118.2", "answer (1 values)"]


@pytest.mark.parametrize("hash_option", [HashOption.BY_PREFIX, HashOption.BY_SUFFIX, HashOption.BY_ALL])
def test_the_hash_option_of_a_site_learned_by_referral_is_honoured(hash_option):
    hosts = (31, 32, 33, 34, 35)
    enterprise = site(*hosts, hash_option=hash_option)
    for handle in HASHED_HANDLES[:12]:
        walk = new_walk(handle, [Start(BOOTSTRAP, (site(1),))])
        first = walk.next_query()
        assert first is not None
        walk.on_reply(first, 300, referral(None, enterprise, handle=handle))
        following = walk.next_query()
        assert following is not None
        assert following.server == url(hosts[md5_choice(handle, hash_option, len(hosts))]), handle


def test_referral_without_referral_handle_is_taken_for_the_handles_own_prefix():
    walk = new_walk(starts=[Start(BOOTSTRAP, (site(1),))])
    drive(walk, by_server({url(1): (300, referral(None, site(3))), url(3): (200, answer())}))
    assert [d.prefix for d in walk.delegations] == ["88.118.2"]
    assert walk.answer is not None and walk.answer.found


def test_referral_back_to_the_server_itself_is_a_loop():
    top = site(1)
    walk = new_walk(starts=[Start(BOOTSTRAP, (top,))])
    sent = drive(walk, by_server({url(1): (300, referral("88.118", top))}))
    assert len(sent) == 1
    assert isinstance(walk.error, ReferralLoop)
    assert "already asked" in walk.error.message
    assert walk.answer is None and walk.delegations == []


def test_two_nodes_referring_to_each_other_is_a_loop_and_nothing_is_learned():
    top, secondary = site(1), site(2)
    walk = new_walk(starts=[Start(BOOTSTRAP, (top,))])
    sent = drive(
        walk, by_server({url(1): (300, referral("88.118", secondary)), url(2): (300, referral("88.118.2", top))})
    )
    assert [q.server for q in sent] == [url(1), url(2)]
    assert isinstance(walk.error, ReferralLoop)
    # The chain looped: which of its referrals lied cannot be known, so none is kept.
    assert walk.delegations == []
    assert walk.answer is None


def test_referral_up_the_hierarchy_is_a_loop():
    top, secondary, other = site(1), site(2), site(9)
    walk = new_walk(starts=[Start(BOOTSTRAP, (top,))])
    sent = drive(walk, by_server({url(1): (300, referral("88.118", secondary)), url(2): (300, referral("88", other))}))
    assert [q.server for q in sent] == [url(1), url(2)]
    assert isinstance(walk.error, ReferralLoop)
    assert "leads up" in walk.error.message
    assert walk.delegations == []


def test_a_server_referring_in_circles_is_a_failure_of_that_server_and_the_next_is_asked():
    for layout in ("same site", "mirror"):
        sites = (site(11, 12),) if layout == "same site" else (site(11), site(12, primary=False))
        first, second = server_order(sites, HANDLE)
        looping = site(11) if first == url(11) else site(12)
        walk = new_walk(starts=[Start(BOOTSTRAP, sites)])
        sent = drive(walk, by_server({first: (300, referral("88.118", looping)), second: (200, answer())}))
        # the loop is seen at once (the referral names only servers already asked), not after asking again
        assert [q.server for q in sent] == [first, second], layout
        assert "leads back to a node already asked" in walk.hops[0].outcome
        assert walk.error is None and walk.answer is not None and walk.answer.found
        assert walk.delegations == []


def test_an_up_referral_from_a_cached_start_falls_back_to_the_next_start():
    starts = [Start("88.118", (site(2),)), Start(BOOTSTRAP, (site(1),))]
    walk = new_walk(starts=starts)
    sent = drive(walk, by_server({url(2): (300, referral("88", site(9))), url(1): (200, answer())}))
    assert [q.server for q in sent] == [url(2), url(1)]
    assert walk.bad_starts == ["88.118"]
    assert walk.answer is not None and walk.answer.found


def test_referral_to_a_sibling_or_unrelated_prefix_is_a_bad_reply_of_that_server():
    for prefix in ("88.119", "99", "88.118.2.7"):
        walk = new_walk(starts=[Start(BOOTSTRAP, (site(1), site(5, primary=False)))])
        sent = drive(walk, by_server({url(1): (300, referral(prefix, site(9))), url(5): (200, answer())}))
        assert [q.server for q in sent] == [url(1), url(5)], prefix
        assert "does not lead toward 88.118.2" in walk.hops[0].outcome
        assert walk.delegations == [] and walk.answer is not None and walk.answer.found


@pytest.mark.parametrize("max_depth", [1, 3])
def test_more_referrals_than_the_depth_limit_fail_the_walk(max_depth):
    hosts = iter(range(100, 200))

    def always_refer(query: Query) -> tuple[int, bytes]:
        return 300, referral("88.118.2", site(next(hosts)))

    walk = new_walk(starts=[Start(BOOTSTRAP, (site(1),))], max_depth=max_depth)
    sent = drive(walk, always_refer)
    assert len(sent) == max_depth + 1
    assert isinstance(walk.error, ReferralDepthExceeded)
    assert f"more than {max_depth} referrals" in walk.error.message


def test_the_default_depth_limit_is_max_referral_depth():
    hosts = iter(range(100, 200))
    walk = new_walk(starts=[Start(BOOTSTRAP, (site(1),))])
    sent = drive(walk, lambda q: (300, referral("88.118.2", site(next(hosts)))))
    assert len(sent) == limits.MAX_REFERRAL_DEPTH + 1
    assert isinstance(walk.error, ReferralDepthExceeded)
    assert walk.delegations == []


def test_a_walk_sends_at_most_max_queries_per_resolution():
    many = site(*range(1, limits.MAX_SITE_SERVERS + 1))
    walk = new_walk(starts=[Start(BOOTSTRAP, (many,))])
    sent = drive(walk, always_fail)
    assert len(sent) == limits.MAX_QUERIES_PER_RESOLUTION
    assert isinstance(walk.error, UpstreamUnavailable)
    assert "MAX_QUERIES_PER_RESOLUTION" in walk.error.message


# --- time --------------------------------------------------------------------------


def test_requests_get_the_smaller_of_their_timeout_and_the_time_left_then_the_budget_ends_the_walk():
    clock = Clock()
    walk = new_walk(starts=[Start(BOOTSTRAP, (site(11, 12, 13),))], clock=clock, budget=1.5, request_timeout=1.0)
    first = walk.next_query()
    assert first is not None and first.timeout == pytest.approx(1.0)
    clock.now += 1.0
    walk.on_failure(first, "no reply within 1 s")
    second = walk.next_query()
    assert second is not None and second.timeout == pytest.approx(0.5)
    clock.now += 0.5
    walk.on_failure(second, "no reply within 0.5 s")
    assert walk.next_query() is None
    assert isinstance(walk.error, ResolutionTimeout)
    assert walk.error.status == 504
    assert [round(h.milliseconds) for h in walk.hops] == [1000, 500]


def test_a_slow_answer_within_the_budget_is_still_the_answer():
    clock = Clock()
    walk = new_walk(clock=clock, budget=2.0)
    sent = drive(walk, lambda q: (200, answer()), clock=clock, step=1.9)
    assert len(sent) == 1 and walk.answer is not None and walk.error is None


# --- replies that are failures of their server ----------------------------------------

MALFORMED = {
    "not JSON": (200, b"<html>502 Bad Gateway</html>", "not JSON"),
    "JSON but not an object": (200, b"[1, 2]", "no Handle responseCode"),
    "no responseCode": (200, orjson.dumps({"handle": HANDLE, "values": RECORD}), "no Handle responseCode"),
    "responseCode as text": (
        200,
        orjson.dumps({"responseCode": "1", "handle": HANDLE, "values": []}),
        "no Handle responseCode",
    ),
    "another handle": (200, answer("88.118.2/PRD-2"), "not '88.118.2/PRD-1'"),
    "suffix in another case": (200, answer("88.118.2/prd-1"), "not '88.118.2/PRD-1'"),
    "no handle named": (200, orjson.dumps({"responseCode": 1, "values": RECORD}), "names no handle"),
    "not-found about another handle": (404, not_found("88.118.2/OTHER"), "not '88.118.2/PRD-1'"),
    "invalid value": (200, answer(values=[{"index": "x", "type": "URL", "data": "u"}]), "invalid value"),
    "duplicate indexes": (200, answer(values=RECORD + RECORD), "invalid value"),
    "invalid site": (
        300,
        orjson.dumps(
            {
                "responseCode": 303,
                "handle": HANDLE,
                "referralHandle": "0.NA/88.118",
                "values": [{"index": 1, "type": "HS_SITE", "data": {"format": "site", "value": {"servers": []}}}],
            }
        ),
        "invalid value",
    ),
    "oversized": (200, answer() + b" " * limits.MAX_UPSTREAM_REPLY_BYTES, "exceeds MAX_UPSTREAM_REPLY_BYTES"),
    "referral without HS_SITE": (
        300,
        orjson.dumps({"responseCode": 303, "handle": HANDLE, "referralHandle": "0.NA/88.118", "values": RECORD}),
        "without HS_SITE",
    ),
    "referralHandle not a prefix handle": (
        300,
        referral(None, site(9), referralHandle="88.118/X"),
        "not a prefix handle",
    ),
    "referralHandle not text": (300, referral(None, site(9), referralHandle=7), "not a prefix handle"),
    "referralHandle off the path": (300, referral("88.999", site(9)), "does not lead toward 88.118.2"),
    "server error code": (500, orjson.dumps({"responseCode": 2, "message": "disk full"}), "response code 2: disk full"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_reply_is_a_failure_of_its_server_and_the_next_server_is_asked(case):
    status, body, named = MALFORMED[case]
    bootstrap = site(11, 12)
    first, second = server_order((bootstrap,), HANDLE)
    walk = new_walk(starts=[Start(BOOTSTRAP, (bootstrap,))])
    query = walk.next_query()
    assert query is not None and query.server == first
    assert walk.on_reply(query, status, body) is False
    assert named in walk.hops[-1].outcome
    assert walk.answer is None and walk.error is None and walk.delegations == []
    following = walk.next_query()
    assert following is not None and following.server == second and following.level == BOOTSTRAP
    assert walk.on_reply(following, 200, answer()) is True
    assert walk.answer is not None and walk.answer.found
    assert walk.next_query() is None


def test_malformed_replies_from_every_server_fail_the_walk_naming_the_problems():
    walk = new_walk(starts=[Start(BOOTSTRAP, (site(11, 12),))])
    drive(walk, by_server({url(11): (200, b"not json"), url(12): (200, answer("88.118.2/EVIL"))}))
    assert isinstance(walk.error, UpstreamUnavailable)
    assert walk.error.status == 502
    assert "not JSON" in walk.error.message and "'88.118.2/EVIL'" in walk.error.message


def test_server_not_responsible_at_the_bootstrap_level_means_not_found():
    walk = new_walk(starts=[Start(BOOTSTRAP, (site(1),))])
    sent = drive(
        walk,
        by_server({url(1): (400, orjson.dumps({"responseCode": 301, "message": "That prefix doesn't live here"}))}),
    )
    assert len(sent) == 1
    assert walk.answer is not None and not walk.answer.found
    assert walk.answer.handle == HANDLE and walk.answer.values_json == b"[]"
    assert "not delegated" in walk.hops[0].outcome


def test_server_not_responsible_below_the_bootstrap_is_a_failure_of_that_server():
    walk = new_walk(starts=[Start(BOOTSTRAP, (site(1),))])
    sent = drive(
        walk,
        by_server(
            {
                url(1): (300, referral("88.118", site(2), site(3, primary=False))),
                url(2): (400, orjson.dumps({"responseCode": 301})),
                url(3): (200, answer()),
            }
        ),
    )
    assert [q.server for q in sent] == [url(1), url(2), url(3)]
    assert "response code 301" in walk.hops[1].outcome
    assert walk.answer is not None and walk.answer.found


def test_handle_not_found_from_the_authoritative_node_is_an_answer():
    walk = new_walk(starts=[Start(BOOTSTRAP, (site(1),))])
    drive(walk, by_server({url(1): (300, referral("88.118.2", site(3))), url(3): (404, not_found())}))
    assert walk.error is None
    assert walk.answer is not None and not walk.answer.found
    assert [d.prefix for d in walk.delegations] == ["88.118.2"]


def test_values_not_found_is_an_existing_handle_without_values():
    walk = new_walk()
    drive(walk, lambda q: (200, orjson.dumps({"responseCode": 200, "handle": HANDLE, "values": []})))
    assert walk.answer is not None and walk.answer.found and walk.answer.values_json == b"[]"


def test_prefixes_compare_without_case_and_the_answer_keeps_the_authoritative_spelling():
    walk = new_walk("88.abc/PRD-1")
    drive(walk, lambda q: (200, answer("88.ABC/PRD-1")))
    assert walk.answer is not None and walk.answer.found and walk.answer.handle == "88.ABC/PRD-1"
    prefix_handle = new_walk("0.na/88.118.2")
    drive(prefix_handle, lambda q: (200, answer("0.NA/88.118.2")))
    assert prefix_handle.answer is not None and prefix_handle.answer.handle == "0.NA/88.118.2"


# --- start points ------------------------------------------------------------------


def test_a_cached_start_whose_servers_all_fail_falls_back_to_the_next_start():
    cached_enterprise, cached_secondary, top = site(3, 4), site(2), site(1)
    moved_enterprise = site(7)
    starts = [Start("88.118.2", (cached_enterprise,)), Start("88.118", (cached_secondary,)), Start(BOOTSTRAP, (top,))]
    walk = new_walk(starts=starts)
    sent = drive(
        walk,
        by_server(
            {
                url(3): "cannot connect: Connection refused",
                url(4): "no reply within 1 s",
                url(2): (300, referral("88.118.2", moved_enterprise)),
                url(7): (200, answer()),
            }
        ),
    )
    assert [q.level for q in sent] == ["88.118.2", "88.118.2", "88.118", "88.118.2"]
    assert sent[-1].server == url(7)
    assert walk.bad_starts == ["88.118.2"]
    assert walk.answer is not None and walk.answer.found
    assert [d.prefix for d in walk.delegations] == ["88.118.2"]


def test_every_failed_cached_start_is_listed_but_never_the_bootstrap():
    starts = [Start("88.118.2", (site(3),)), Start("88.118", (site(2),)), Start(BOOTSTRAP, (site(1),))]
    walk = new_walk(starts=starts)
    sent = drive(walk, always_fail)
    assert [q.level for q in sent] == ["88.118.2", "88.118", BOOTSTRAP]
    assert walk.bad_starts == ["88.118.2", "88.118"]
    assert isinstance(walk.error, UpstreamUnavailable)


def test_a_referral_back_to_a_failed_start_reports_that_node_down_not_a_loop():
    enterprise = site(3)
    starts = [Start("88.118.2", (enterprise,)), Start("88.118", (site(2),)), Start(BOOTSTRAP, (site(1),))]
    walk = new_walk(starts=starts)
    sent = drive(walk, by_server({url(3): "no reply within 1 s", url(2): (300, referral("88.118.2", enterprise))}))
    assert [q.server for q in sent] == [url(3), url(2)]  # the dead node is not asked twice
    assert isinstance(walk.error, UpstreamUnavailable)
    assert "the node of 88.118.2" in walk.error.message and "no reply within 1 s" in walk.error.message
    assert walk.bad_starts == ["88.118.2"]


def test_a_level_reached_by_referral_does_not_fall_back():
    starts = [Start("88.118", (site(2),)), Start(BOOTSTRAP, (site(1),))]
    walk = new_walk(starts=starts)
    sent = drive(
        walk, by_server({url(2): (300, referral("88.118.2", site(3))), url(3): "down", url(1): (200, answer())})
    )
    assert [q.server for q in sent] == [url(2), url(3)]
    assert isinstance(walk.error, UpstreamUnavailable)
    assert "the node of 88.118.2" in walk.error.message
    assert walk.bad_starts == []


def test_dot_segments_of_a_suffix_are_sent_escaped_not_collapsed():
    for handle, path in [
        ("88.118.2/a/../b", "/api/handles/88.118.2/a/%2E%2E/b"),
        ("88.118.2/./x", "/api/handles/88.118.2/%2E/x"),
        ("88.118.2/..", "/api/handles/88.118.2/%2E%2E"),
        ("88.118.2/a.b/.../c.", "/api/handles/88.118.2/a.b/.../c."),
        ("88.118.2/零件 #7?", "/api/handles/88.118.2/%E9%9B%B6%E4%BB%B6%20%237%3F"),
    ]:
        query = new_walk(handle).next_query()
        assert query is not None and query.url == url(1) + path, handle


def test_a_walk_needs_a_start():
    with pytest.raises(ValueError):
        Walk(Handle.from_text(HANDLE), [])


# --- prefix handles ----------------------------------------------------------------


def test_prefix_handles_are_resolved_through_the_namespace_they_name():
    walk = new_walk("0.NA/88.118.2", [Start(BOOTSTRAP, (site(1),))])
    assert walk.namespace == "88.118.2"
    record = site_value(site(3))
    sent = drive(
        walk,
        by_server(
            {
                url(1): (300, referral("88.118", site(2), handle="0.NA/88.118.2")),
                url(2): (200, answer("0.NA/88.118.2", record)),
            }
        ),
    )
    assert [q.url for q in sent] == [url(1) + "/api/handles/0.NA/88.118.2", url(2) + "/api/handles/0.NA/88.118.2"]
    assert [d.prefix for d in walk.delegations] == ["88.118"]
    assert walk.answer is not None and walk.answer.found and walk.answer.handle == "0.NA/88.118.2"


def test_a_prefix_handle_referral_toward_0na_itself_is_refused():
    walk = new_walk("0.NA/88.118.2", [Start(BOOTSTRAP, (site(1), site(5, primary=False)))])
    drive(
        walk,
        by_server(
            {
                url(1): (300, referral("0.NA", site(2), handle="0.NA/88.118.2")),
                url(5): (200, answer("0.NA/88.118.2", site_value(site(3)))),
            }
        ),
    )
    assert "does not lead toward 88.118.2" in walk.hops[0].outcome
    assert walk.delegations == [] and walk.answer is not None and walk.answer.found


# --- purity --------------------------------------------------------------------------


def test_the_state_machine_imports_no_networking_or_event_loop():
    code = (
        "import sys, resolver.walk\n"
        "print(','.join(m for m in ('asyncio', 'socket', 'ssl', 'aiohttp', 'redis') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
