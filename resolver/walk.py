"""One recursive resolution, as a state machine with no I/O.

A :class:`Walk` decides which server to ask next and digests each reply, in
the manner of dnspython's ``_Resolution``; the async driver
(:mod:`resolver.recursive`) only sends the requests::

    walk = Walk(handle, starts)
    while (query := walk.next_query()) is not None:
        try:
            status, body = await transport.fetch(query)
        except UpstreamFailure as exc:
            walk.on_failure(query, str(exc))
        else:
            walk.on_reply(query, status, body)
    walk.answer or walk.error

The walk starts at the closest known delegation (``starts``: for
``88.118.2/X`` the cached site of ``88.118.2``, then ``88.118``, then
``88``, then the bootstrap sites) and follows prefix referrals (response
code 303 with HS_SITE values) down the hierarchy. Within a level it asks the
server Handle's hash rule picks, then the site's other servers, then mirror
sites; a level whose servers all fail falls back to the next start point.
That is also how a node that is down is answered for by its parent in
escrow takeover: the cached delegation's servers fail, the parent (the next
start) answers from its escrow copy, and the answer says ``escrow``.
Every reply is checked before it is believed: malformed, oversized, about
another handle, or a referral that goes nowhere new is a failure of that
server, never an answer, and nothing from it is cached.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

import orjson

from idcore import limits
from idcore.errors import (
    BadUpstreamReply,
    IdnodeError,
    InvalidHandle,
    ReferralDepthExceeded,
    ReferralLoop,
    ResolutionTimeout,
    ResponseCode,
    UpstreamUnavailable,
)
from idcore.handle import Handle, prefix_ancestors, url_path
from idcore.rest_json import dumps, values_from_json, values_to_json
from idcore.site import Site
from idcore.values import HandleValue, ValueType, type_is

#: The bootstrap level's name in traces and starts: the sites configured as
#: the top of the hierarchy, which serve every prefix.
BOOTSTRAP = ""


class Start(NamedTuple):
    """A place to start: the sites serving ``prefix`` (BOOTSTRAP for the
    configured top-level sites), best first."""

    prefix: str
    sites: tuple[Site, ...]


class Delegation(NamedTuple):
    """A referral learned on the way: ``prefix`` is served by ``sites``."""

    prefix: str
    values_json: bytes  #: the HS_SITE values as JSON, for the cache
    value_ttls: tuple[int, ...]


class Answer(NamedTuple):
    """The authoritative result: the record, or "not found"."""

    found: bool
    handle: str  #: as the authoritative node wrote it (or as asked, when not found)
    values_json: bytes
    value_ttls: tuple[int, ...]
    #: a parent answered from its escrow copy of the node that is down
    #: (the reply said ``"escrow": true``)
    escrow: bool = False


@dataclass(frozen=True, slots=True)
class Query:
    """One request to send: ``GET url`` within ``timeout`` seconds."""

    url: str
    server: str  #: scheme://address:port, for traces and health
    level: str  #: the prefix whose node is asked (BOOTSTRAP at the top)
    timeout: float
    sent_at: float = field(compare=False)


class Hop(NamedTuple):
    """One request of the walk, for ``--trace``."""

    server: str
    level: str
    outcome: str
    milliseconds: float


def api_path(handle_text: str) -> str:
    """The REST API path of a handle (see :func:`idcore.handle.url_path`)."""
    return "/api/handles/" + url_path(handle_text)


def site_from_value(value: HandleValue) -> Site | None:
    """The site an HS_SITE value holds (None for other values)."""
    return value.data if isinstance(value.data, Site) else None


def server_order(sites: tuple[Site, ...], handle_text: str) -> list[str]:
    """Base URLs to try for ``handle_text``, best first: primary sites before
    mirrors; within a site the server Handle's hash rule picks, then the
    others in their listed order. Servers without an HTTP(S) query
    interface are left out."""
    ordered = sorted(sites, key=lambda site: not site.primary)  # stable: listed order otherwise
    urls: list[str] = []
    for site in ordered:
        chosen = site.server_for(handle_text)
        for server in (chosen, *(s for s in site.servers if s is not chosen)):
            iface = server.interface("HTTPS", "HTTP")
            if iface is None:
                continue
            host = f"[{server.address}]" if ":" in server.address else server.address
            url = f"{iface.protocol.lower()}://{host}:{iface.port}"
            if url not in urls:
                urls.append(url)
    return urls


class Walk:
    """One resolution of ``handle``.

    Args:
        handle: what to resolve.
        starts: start points, closest delegation first, bootstrap last.
        clock: monotonic seconds (injectable for tests).
        budget: seconds the whole walk may take.
        request_timeout: seconds one request may take.
        max_depth: most referrals followed.
        avoid: servers (base URLs) that failed lately; tried after the others.
    """

    def __init__(
        self,
        handle: Handle,
        starts: list[Start],
        *,
        clock: Callable[[], float] = time.monotonic,
        budget: float = limits.RESOLUTION_TIME_BUDGET_SECONDS,
        request_timeout: float = limits.UPSTREAM_REQUEST_TIMEOUT_SECONDS,
        max_depth: int = limits.MAX_REFERRAL_DEPTH,
        avoid: frozenset[str] = frozenset(),
    ) -> None:
        if not starts:
            raise ValueError("a walk needs at least one start point (the bootstrap sites)")
        self.handle = handle
        self.asked = handle.to_text()
        self.path = api_path(self.asked)
        # For a prefix handle 0.NA/P the namespace walked is P itself.
        self.namespace = handle.suffix if handle.is_prefix_handle else handle.prefix
        self._ancestors = {p.upper() for p in prefix_ancestors(self.namespace)}
        self._starts = list(starts)
        self._clock = clock
        self._deadline = clock() + budget
        self._request_timeout = request_timeout
        self._max_depth = max_depth
        self._avoid = avoid
        self.depth = 0
        self.queries = 0
        self.hops: list[Hop] = []
        self.delegations: list[Delegation] = []
        #: start prefixes whose cached delegation turned out useless
        self.bad_starts: list[str] = []
        self.answer: Answer | None = None
        self.error: IdnodeError | None = None
        self._failures: list[str] = []
        #: servers (base URLs) asked in this walk, and those of them that failed:
        #: one server asked the same question again would answer the same
        self._asked: set[str] = set()
        self._failed: set[str] = set()
        self._loop: ReferralLoop | None = None  # a server of the current level referred in circles
        self._enter_start()

    @property
    def done(self) -> bool:
        return self.answer is not None or self.error is not None

    # --- levels ------------------------------------------------------------------

    def _enter_start(self) -> None:
        start = self._starts.pop(0)
        self._from_start = True
        self._enter_level(start.prefix, start.sites)

    def _enter_level(self, prefix: str, sites: tuple[Site, ...]) -> None:
        self.level = prefix
        self._loop = None
        order = [url for url in server_order(sites, self.asked) if url not in self._asked]
        if self._avoid:
            order.sort(key=lambda url: url in self._avoid)  # stable: failed servers last
        self._candidates = order

    def _level_exhausted(self) -> None:
        if self._from_start and self._starts:
            if self.level != BOOTSTRAP:
                self.bad_starts.append(self.level)
            self._enter_start()
            return
        if self._loop is not None:
            self._fail(self._loop)
            return
        where = f"the node of {self.level}" if self.level else "the bootstrap (top-level) sites"
        self._fail(UpstreamUnavailable(f"no server of {where} answered: {'; '.join(self._failures)}", handle=self.asked))

    def _fail(self, error: IdnodeError) -> None:
        if isinstance(error, (ReferralLoop, ReferralDepthExceeded)):
            # Some referral of this chain lied and which one is unknown:
            # caching any of them would send later walks into it again.
            self.delegations.clear()
        self.error = error

    # --- the driver's side -------------------------------------------------------

    def next_query(self) -> Query | None:
        """The next request to send, or None when the walk is done."""
        while not self.done:
            now = self._clock()
            if now >= self._deadline:
                self._fail(ResolutionTimeout(f"resolving {self.asked} took longer than its time budget", handle=self.asked))
                break
            if self.queries >= limits.MAX_QUERIES_PER_RESOLUTION:
                self._fail(
                    UpstreamUnavailable(
                        f"no answer after {self.queries} requests (MAX_QUERIES_PER_RESOLUTION): "
                        + "; ".join(self._failures),
                        handle=self.asked,
                    )
                )
                break
            if not self._candidates:
                self._level_exhausted()
                continue
            server = self._candidates.pop(0)
            self._asked.add(server)
            self.queries += 1
            timeout = min(self._request_timeout, self._deadline - now)
            return Query(server + self.path, server, self.level, timeout, now)
        return None

    def on_failure(self, query: Query, reason: str) -> None:
        """``query`` got no usable reply (refused, timed out, broke off)."""
        self._note(query, reason)
        self._failed.add(query.server)
        self._failures.append(f"{query.server}: {reason}")

    def on_reply(self, query: Query, status: int, body: bytes) -> bool:
        """Digest the reply to ``query`` (HTTP ``status`` and body).

        Returns whether the reply was usable (False: the server misbehaved).
        """
        try:
            outcome = self._digest(query, status, body)
        except BadUpstreamReply as exc:
            self.on_failure(query, exc.message)
            return False
        except ReferralLoop as exc:
            # a failure of this server: another of its level may still answer
            self._loop = exc
            self.on_failure(query, exc.message)
            return False
        except ReferralDepthExceeded as exc:
            self._note(query, exc.message)
            self._fail(exc)
            return False
        self._note(query, outcome)
        return True

    def _note(self, query: Query, outcome: str) -> None:
        self.hops.append(Hop(query.server, query.level, outcome, (self._clock() - query.sent_at) * 1000))

    # --- replies -----------------------------------------------------------------

    def _digest(self, query: Query, status: int, body: bytes) -> str:
        if len(body) > limits.MAX_UPSTREAM_REPLY_BYTES:
            raise BadUpstreamReply(f"reply of {len(body)} bytes exceeds MAX_UPSTREAM_REPLY_BYTES")
        try:
            reply = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise BadUpstreamReply(f"HTTP {status} reply is not JSON") from None
        if not isinstance(reply, dict) or type(reply.get("responseCode")) is not int:
            raise BadUpstreamReply(f"HTTP {status} reply has no Handle responseCode")
        code = reply["responseCode"]
        # Only a literal true counts: the marker shortens the cache time and
        # warns the client, so a malformed one is not guessed at.
        escrow = reply.get("escrow") is True
        from_escrow = ", from escrow" if escrow else ""
        if code in (ResponseCode.SUCCESS, ResponseCode.VALUES_NOT_FOUND):
            name = self._same_handle(reply)
            values = self._values(reply)
            self.answer = Answer(True, name, dumps(values_to_json(values)), tuple(v.ttl for v in values), escrow)
            return f"answer ({len(values)} values{from_escrow})"
        if code == ResponseCode.HANDLE_NOT_FOUND:
            if "handle" in reply:
                self._same_handle(reply)
            self.answer = Answer(False, self.asked, b"[]", (), escrow)
            return f"handle not found{from_escrow}"
        if code == ResponseCode.PREFIX_REFERRAL:
            return self._follow(reply)
        if code == ResponseCode.SERVER_NOT_RESPONSIBLE and self.level == BOOTSTRAP:
            # The top of the hierarchy neither homes nor delegates the prefix:
            # no node anywhere can hold the handle.
            self.answer = Answer(False, self.asked, b"[]", ())
            return f"prefix {self.namespace} is not delegated"
        message = reply.get("message")
        detail = f": {message}" if isinstance(message, str) else ""
        raise BadUpstreamReply(f"response code {code}{detail}")

    def _same_handle(self, reply: dict[str, Any]) -> str:
        name = reply.get("handle")
        if not isinstance(name, str):
            raise BadUpstreamReply("reply names no handle")
        try:
            same = Handle.from_text(name) == self.handle
        except InvalidHandle:
            same = False
        if not same:
            raise BadUpstreamReply(f"reply is about {name[:300]!r}, not {self.asked!r}")
        return name

    @staticmethod
    def _values(reply: dict[str, Any]) -> list[HandleValue]:
        try:
            return values_from_json(reply.get("values", []))
        except IdnodeError as exc:  # InvalidValue, InvalidHandle, ValueAlreadyExists (duplicate index) ...
            raise BadUpstreamReply(f"reply holds an invalid value: {exc.message}") from None

    def _follow(self, reply: dict[str, Any]) -> str:
        values = [v for v in self._values(reply) if type_is(v.type, ValueType.HS_SITE)]
        sites = tuple(site for site in map(site_from_value, values) if site is not None)
        if not sites:
            raise BadUpstreamReply("referral without HS_SITE values")
        prefix = self._referral_prefix(reply)
        servers = set(server_order(sites, self.asked))
        if servers and servers <= self._asked and not servers <= self._failed:
            raise ReferralLoop(f"referral for {prefix} leads back to a node already asked", handle=self.asked)
        if self.depth >= self._max_depth:
            raise ReferralDepthExceeded(
                f"more than {self._max_depth} referrals (MAX_REFERRAL_DEPTH) resolving {self.asked}", handle=self.asked
            )
        self.depth += 1
        self.delegations.append(Delegation(prefix, dumps(values_to_json(values)), tuple(v.ttl for v in values)))
        self._from_start = False
        self._enter_level(prefix, sites)
        return f"referral to {prefix}"

    def _referral_prefix(self, reply: dict[str, Any]) -> str:
        """The prefix a referral is for, checked to lead down toward the handle.

        idnode nodes name it (``referralHandle``: ``0.NA/<prefix>``); for a
        server that does not, the handle's own namespace is assumed, which
        caches the delegation no wider than this handle's prefix.
        """
        referral = reply.get("referralHandle")
        if referral is None:
            return self.namespace
        prefix = None
        if isinstance(referral, str):
            try:
                named = Handle.from_text(referral)
            except InvalidHandle:
                named = None
            if named is not None and named.is_prefix_handle:
                prefix = named.suffix
        if prefix is None:
            raise BadUpstreamReply(f"referralHandle {str(referral)[:300]!r} is not a prefix handle 0.NA/<prefix>")
        upper = prefix.upper()
        if upper not in self._ancestors:
            raise BadUpstreamReply(f"referral for {prefix} does not lead toward {self.namespace}")
        current = self.level.upper()
        if current and upper != current and not upper.startswith(current + "."):
            raise ReferralLoop(f"referral for {prefix} from the node of {self.level} leads up, not down", handle=self.asked)
        return prefix
