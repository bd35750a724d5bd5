"""The recursive resolver: cache first, then a walk down the hierarchy.

:class:`RecursiveResolver` answers a handle from the cache when it can and
otherwise drives a :class:`~resolver.walk.Walk` over the network. Around
that it does what caching resolvers do:

- TTL from the answer's values, clamped by the policy; "not found" cached
  with its own short cap; delegations cached per prefix;
- request coalescing: concurrent lookups of one missing handle share one
  upstream walk (which runs as its own task, so a client that hangs up does
  not cancel it for the others);
- prefetch: a hit in the last part of an entry's TTL refreshes it in the
  background;
- serve-stale: when the walk fails, an expired entry still kept is served
  (marked stale), and that handle is retried upstream only after a backoff
  that doubles with each failure, not on every request;
- escrow: an answer a parent gave from its escrow copy of a node that is
  down is cached marked as such, for at most ESCROW_MAX_TTL_SECONDS.

Only answers from the authoritative node are cached; a failure never is, so
a failure can never hide a good answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import lru_cache
from typing import Any, Callable, NamedTuple

import orjson

from cache.base import CacheUnavailable
from cache.entry import CacheEntry, EntryKind, answer_key, delegation_key
from cache.layered import LayeredCache
from cache.policy import CachePolicy, stale_retry_delay
from idcore.errors import IdnodeError, UpstreamError
from idcore.handle import Handle, prefix_ancestors
from idcore.rest_json import values_from_json
from idcore.site import Site
from resolver.metrics import ResolverMetrics
from resolver.upstream import HttpTransport, UpstreamFailure, UpstreamHealth
from resolver.walk import BOOTSTRAP, Answer, Hop, Start, Walk, site_from_value

log = logging.getLogger("idnode.resolver")

#: Handles remembered as "served stale, retry later" at once; beyond this
#: the oldest are forgotten (their next request goes upstream once more).
MAX_STALE_BACKOFFS = 100_000

#: Longest time an answer from a parent's escrow copy stays fresh, whatever
#: its values or the policy's min_ttl say: the copy is as old as the last
#: backup, and asking again within a minute finds the node itself soon
#: after it is back (its parent then refers to it again).
ESCROW_MAX_TTL_SECONDS = 60


class Result(NamedTuple):
    """A resolver's answer.

    Attributes:
        entry: ANSWER or NOT_FOUND.
        source: "memory", "redis", "upstream" or "stale".
        hops: the walk's requests, when one ran for this lookup.
    """

    entry: CacheEntry
    source: str
    hops: tuple[Hop, ...] = ()


@lru_cache(maxsize=4096)
def sites_from_values_json(values_json: bytes) -> tuple[Site, ...]:
    """The sites in a cached delegation's values (parsed once per distinct value)."""
    values = values_from_json(orjson.loads(values_json))
    return tuple(site for site in map(site_from_value, values) if site is not None)


class RecursiveResolver:
    """Resolves any handle by walking from ``bootstrap``.

    Args:
        bootstrap: the top-level node's sites.
        cache: the tiers (in-process, optionally Redis).
        transport: sends upstream requests.
        policy: TTL caps and expiry behaviour.
        metrics: where to count.
        request_timeout, time_budget: per request, per resolution (seconds).
    """

    def __init__(
        self,
        bootstrap: tuple[Site, ...],
        cache: LayeredCache,
        transport: HttpTransport,
        *,
        policy: CachePolicy,
        metrics: ResolverMetrics,
        request_timeout: float,
        time_budget: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bootstrap = bootstrap
        self.cache = cache
        self.memory = cache.local
        self.transport = transport
        self.policy = policy
        self.metrics = metrics
        self.health = UpstreamHealth()
        self.request_timeout = request_timeout
        self.time_budget = time_budget
        self._clock = clock
        self._inflight: dict[str, asyncio.Task[Result]] = {}
        self._stale_backoff: dict[str, tuple[int, float]] = {}  # key -> (failures, retry at, monotonic)

    async def close(self) -> None:
        """Cancel background refreshes and lookups still running."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- lookups -------------------------------------------------------------------

    def fresh_hit(self, handle_key: str) -> CacheEntry | None:
        """A fresh in-process entry for the handle, or None: the hot path,
        without awaiting anything. Schedules a prefetch near expiry."""
        key = "h:" + handle_key
        entry = self.memory.peek(key)
        if entry is None:
            return None
        now = self._clock()
        remaining = entry.stored_at + entry.ttl - now
        if remaining <= 0:
            return None
        if remaining < entry.ttl * self.policy.prefetch_fraction:
            self._prefetch(key, entry)
        return entry

    async def resolve(self, handle: Handle, *, authoritative: bool = False, trace: bool = False) -> Result:
        """Answer ``handle``.

        Args:
            authoritative: skip the cached answer and ask the authoritative
                node (the fresh answer replaces the cached one).
            trace: like ``authoritative``, with this lookup's own walk from
                the bootstrap sites, whose hops the result carries.

        Raises:
            UpstreamError: no answer could be had and nothing stale is kept
                (or ``authoritative``/``trace`` was asked).
        """
        key = answer_key(handle.key)
        stale = None
        if not (authoritative or trace):
            entry, tier = await self.cache.lookup(key)
            if entry is not None:
                now = self._clock()
                remaining = entry.remaining(now)
                if remaining > 0:
                    if self.policy.wants_prefetch(entry.ttl, remaining):
                        self._prefetch(key, entry)
                    return Result(entry, tier)
                stale = entry
                if self._backing_off(key):
                    return Result(stale, "stale")
        try:
            if trace:
                return await self._walk(handle, key, from_top=True)
            return await self._shared_walk(handle, key)
        except UpstreamError:
            if stale is None:
                raise
            self._note_stale(key)
            return Result(stale, "stale")

    # --- coalescing and prefetch ---------------------------------------------------

    async def _shared_walk(self, handle: Handle, key: str) -> Result:
        task = self._inflight.get(key)
        if task is None:
            task = self._start_walk(handle, key)
        else:
            self.metrics.coalesced.inc()
        # shield: a client hanging up cancels its wait, not the shared walk
        return await asyncio.shield(task)

    def _start_walk(self, handle: Handle, key: str) -> asyncio.Task[Result]:
        task = asyncio.get_running_loop().create_task(self._walk(handle, key))
        self._inflight[key] = task

        def finished(done: asyncio.Task[Result]) -> None:
            self._inflight.pop(key, None)
            if not done.cancelled():
                done.exception()  # retrieved here: every waiter may have gone

        task.add_done_callback(finished)
        return task

    def _prefetch(self, key: str, entry: CacheEntry) -> None:
        if key in self._inflight:
            return
        try:
            handle = Handle.from_text(entry.name)
        except IdnodeError:
            return
        self.metrics.prefetches.inc()
        self._start_walk(handle, key)

    def _backing_off(self, key: str) -> bool:
        state = self._stale_backoff.get(key)
        return state is not None and time.monotonic() < state[1]

    def _note_stale(self, key: str) -> None:
        failures = self._stale_backoff.get(key, (0, 0.0))[0] + 1
        if len(self._stale_backoff) >= MAX_STALE_BACKOFFS:
            self._stale_backoff.pop(next(iter(self._stale_backoff)))
        self._stale_backoff[key] = (failures, time.monotonic() + stale_retry_delay(failures))

    # --- the walk ------------------------------------------------------------------

    async def _starts(self, handle: Handle, *, from_top: bool = False) -> list[Start]:
        """Start points, closest cached delegation first; only the bootstrap
        sites when ``from_top`` (a trace shows the whole walk)."""
        if from_top:
            return [Start(BOOTSTRAP, self.bootstrap)]
        namespace = handle.suffix if handle.is_prefix_handle else handle.prefix
        prefixes = prefix_ancestors(namespace)
        entries = await self.cache.get_many([delegation_key(p) for p in prefixes])
        now = self._clock()
        starts = []
        for prefix, entry in zip(prefixes, entries):
            if entry is not None and entry.kind is EntryKind.DELEGATION and entry.is_fresh(now):
                try:
                    sites = sites_from_values_json(entry.values_json)
                except (IdnodeError, ValueError):
                    continue
                if sites:
                    starts.append(Start(entry.name, sites))
        starts.append(Start(BOOTSTRAP, self.bootstrap))
        return starts

    async def _walk(self, handle: Handle, key: str, *, from_top: bool = False) -> Result:
        walk = Walk(
            handle,
            await self._starts(handle, from_top=from_top),
            budget=self.time_budget,
            request_timeout=self.request_timeout,
            avoid=self.health.backing_off(),
        )
        fetch = self.transport.fetch
        latency = self.metrics.upstream_latency
        while (query := walk.next_query()) is not None:
            started = time.perf_counter()
            try:
                status, body = await fetch(query.url, query.timeout)
            except UpstreamFailure as exc:
                self.health.failed(query.server, str(exc))
                self.metrics.upstream_failures.inc()
                walk.on_failure(query, str(exc))
            else:
                if walk.on_reply(query, status, body):
                    self.health.succeeded(query.server)
                else:
                    self.health.failed(query.server, walk.hops[-1].outcome)
                    self.metrics.upstream_failures.inc()
            latency.observe(time.perf_counter() - started)
        await self._learn(walk)
        if walk.error is not None:
            walk.error.details["hops"] = tuple(walk.hops)
            raise walk.error
        answer = walk.answer
        assert answer is not None
        entry = self._answer_entry(answer)
        await self.cache.put(key, entry, self.policy.keep_seconds(entry.ttl))
        self._stale_backoff.pop(key, None)
        return Result(entry, "upstream", tuple(walk.hops))

    def _answer_entry(self, answer: Answer) -> CacheEntry:
        """The cache entry of a walk's answer: TTL by the policy, and at most
        ESCROW_MAX_TTL_SECONDS for an answer from escrow."""
        if answer.found:
            kind, values_json, ttl = EntryKind.ANSWER, answer.values_json, self.policy.answer_ttl(answer.value_ttls)
        else:
            kind, values_json, ttl = EntryKind.NOT_FOUND, b"[]", self.policy.not_found_ttl()
        if answer.escrow:
            ttl = min(ttl, ESCROW_MAX_TTL_SECONDS)
        return CacheEntry(kind, answer.handle, values_json, ttl, self._clock(), answer.escrow)

    async def _learn(self, walk: Walk) -> None:
        """Cache the delegations a walk was given; forget those that failed it."""
        # Forget first: a failed start's prefix is often re-learned in the
        # same walk (the parent refers to where the node has moved), and
        # that new delegation must survive.
        for prefix in walk.bad_starts:
            await self.cache.delete(delegation_key(prefix))
        now = self._clock()
        for delegation in walk.delegations:
            ttl = self.policy.delegation_ttl(delegation.value_ttls)
            entry = CacheEntry(EntryKind.DELEGATION, delegation.prefix, delegation.values_json, ttl, now)
            await self.cache.put(delegation_key(delegation.prefix), entry, ttl)

    # --- administration ------------------------------------------------------------

    async def flush(self, *, handle: Handle | None = None, prefix: str | None = None) -> int:
        """Forget the cached answer for ``handle``, or everything under
        ``prefix`` (its handles, sub-prefixes and delegations); returns how
        many entries were dropped.

        Raises:
            CacheUnavailable: the shared tier is down, so the entries may
                still be there (the in-process ones are gone).
        """
        if handle is not None:
            key = answer_key(handle.key)
            self._stale_backoff.pop(key, None)
            count = await self.cache.delete(key)
            shared = self.cache.shared
            if shared is not None and self.cache.degraded:
                # A shared tier that is down drops deletes without raising (it
                # must not fail resolutions); a flush must not claim success.
                state = shared.health()
                raise CacheUnavailable(
                    f"the {shared.name} cache tier at {state.get('url', '?')} is unavailable, "
                    f"{handle} not flushed there: {state.get('error', '')}",
                    url=state.get("url"),
                    error=state.get("error"),
                )
            return count
        assert prefix is not None
        self._stale_backoff.clear()
        return await self.cache.delete_prefix(prefix)

    def health_report(self) -> dict[str, Any]:
        """State of the cache tiers and upstream servers, for ``/healthz``."""
        upstreams = self.health.to_json()
        degraded = self.cache.degraded or any(s["state"] != "up" for s in upstreams.values())
        return {"status": "degraded" if degraded else "ok", "cache": self.cache.health(), "upstreams": upstreams}
