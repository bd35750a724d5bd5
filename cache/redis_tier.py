"""The Redis tier: cache entries shared by every resolver process.

Entries are stored as :meth:`CacheEntry.to_bytes` under
``KEY_NAMESPACE + cache key`` with Redis's own expiry, so Redis forgets an
entry once it is no longer servable even stale.

Redis is an optimisation, never a dependency (see :mod:`cache.base`): every
command has a short timeout and no retries, and the first failure opens a
circuit breaker. While it is open the tier answers misses and drops writes
at once, without touching the network; after a backoff one caller probes
Redis with its own command, and the first success closes the breaker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Self, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from cache.base import Cache, CacheUnavailable
from cache.entry import SCHEMA_VERSION, CacheEntry
from idcore.handle import PREFIX_HANDLE_PREFIX

#: Seconds one Redis command (and one connect) may take. A local Redis answers
#: in well under a millisecond; past this it is treated as down, because a
#: cache that holds a resolution longer than the upstream query it saves is
#: worse than none.
REDIS_TIMEOUT_SECONDS = 0.1

#: Prefix of every Redis key. It carries the entry schema version, so that
#: processes of different versions sharing one Redis never see each other's
#: entries (and a version change needs no flush).
KEY_NAMESPACE = f"idnode:v{SCHEMA_VERSION}:"

#: Keys asked for per SCAN step and removed per UNLINK by :meth:`RedisCache.delete_prefix`:
#: large enough to flush a big prefix in few round trips, small enough that
#: no single command blocks Redis (or runs into the timeout) for long.
SCAN_BATCH = 500

#: Wait before the first probe of a Redis found down, and the longest wait
#: between probes; it doubles with each failed probe in between. Short at
#: first because a restart takes a second; capped so a repaired Redis is used
#: again within seconds.
PROBE_BACKOFF_BASE_SECONDS = 0.25
PROBE_BACKOFF_CAP_SECONDS = 10.0

#: What an outage looks like from redis-py: its own errors (connection,
#: timeout, a server refusing commands) and socket errors it lets through.
#: OSError covers TimeoutError, which asyncio's is since Python 3.11.
_OUTAGE_ERRORS = (RedisError, OSError)

_T = TypeVar("_T")


class _Skipped:
    """Marker: the breaker is open, the command was not sent."""


_SKIPPED = _Skipped()


class RedisCache(Cache):
    """A :class:`~cache.base.Cache` over one Redis server (or proxy).

    ``get``/``get_many`` answer None and ``put``/``delete`` do nothing while
    Redis is down; none of them raise for an outage. ``delete_prefix`` raises
    :class:`CacheUnavailable` instead, because a flush that silently did
    nothing would mislead the operator who asked for it.
    """

    name = "redis"

    def __init__(
        self, url: str, *, timeout: float = REDIS_TIMEOUT_SECONDS, logger: logging.Logger | None = None
    ) -> None:
        """Connect lazily to ``url`` (``redis://``, ``rediss://`` or ``unix://``).

        ``timeout`` bounds each command and each connect, in seconds.
        """
        self._shown_url = redact_url(url)
        self._log = logger or logging.getLogger(__name__)
        # retry=None: this class decides what to do after a failure; redis-py
        # retrying on its own would multiply the time a request waits.
        self._client = redis.asyncio.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=None)
        self._backoff = ExponentialBackoff(cap=PROBE_BACKOFF_CAP_SECONDS, base=PROBE_BACKOFF_BASE_SECONDS)
        self._down_since: float | None = None  # wall-clock time, for health()
        self._error = ""
        self._failed_probes = 0
        self._probe_at = 0.0  # time.monotonic() after which one caller may probe
        self._probing = False

    async def get(self, key: str) -> CacheEntry | None:
        raw = await self._call(lambda: self._client.get(KEY_NAMESPACE + key))
        if raw is _SKIPPED or raw is None:
            return None
        return (await self._parse_or_drop([key], [raw]))[0]

    async def get_many(self, keys: Sequence[str]) -> list[CacheEntry | None]:
        """Entries for ``keys`` in one MGET; all None while Redis is down."""
        if not keys:
            return []
        raws = await self._call(lambda: self._client.mget([KEY_NAMESPACE + key for key in keys]))
        if raws is _SKIPPED:
            return [None] * len(keys)
        return await self._parse_or_drop(list(keys), raws)

    async def put(self, key: str, entry: CacheEntry, keep_seconds: float) -> None:
        """Store ``entry`` with a Redis expiry of ``keep_seconds`` (whole
        milliseconds, at least one); ``keep_seconds <= 0`` stores nothing."""
        if keep_seconds <= 0:
            return
        keep_ms = max(1, round(keep_seconds * 1000))
        await self._call(lambda: self._client.set(KEY_NAMESPACE + key, entry.to_bytes(), px=keep_ms))

    async def delete(self, key: str) -> int:
        """Forget ``key``; 0 when it was absent or Redis is down."""
        removed = await self._call(lambda: self._client.unlink(KEY_NAMESPACE + key))
        return 0 if removed is _SKIPPED else int(removed)

    async def delete_prefix(self, prefix: str) -> int:
        """Forget the answers of handles under ``prefix`` or its sub-prefixes,
        their delegations and the ``0.NA/`` handles naming those prefixes.

        Returns:
            How many entries were removed.

        Raises:
            CacheUnavailable: Redis is down, or failed during the flush (which
                may then have removed part of the entries).
        """
        removed = await self._call(lambda: self._unlink_matching(prefix_patterns(prefix)))
        if removed is _SKIPPED:
            raise CacheUnavailable(
                f"Redis at {self._shown_url} is unavailable, cache not flushed: {self._error}",
                url=self._shown_url,
                error=self._error,
            )
        return removed

    def health(self) -> dict[str, Any]:
        """``{"state", "url"}``, plus ``"since"`` (wall-clock seconds) and
        ``"error"`` while Redis is down."""
        if self._down_since is None:
            return {"state": "up", "url": self._shown_url}
        return {"state": "down", "url": self._shown_url, "since": self._down_since, "error": self._error}

    async def close(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _unlink_matching(self, patterns: list[str]) -> int:
        removed = 0
        batch: list[str | bytes] = []
        for pattern in patterns:
            async for key in self._client.scan_iter(match=pattern, count=SCAN_BATCH):
                batch.append(key)
                if len(batch) >= SCAN_BATCH:
                    removed += await self._client.unlink(*batch)
                    batch.clear()
        if batch:
            removed += await self._client.unlink(*batch)
        return removed

    async def _parse_or_drop(self, keys: list[str], raws: list[bytes | None]) -> list[CacheEntry | None]:
        # An unparseable payload (another writer, a corrupted value) would be
        # a miss on every read until it expires; removing it lets the next
        # put replace it at once.
        entries: list[CacheEntry | None] = []
        bad: list[str] = []
        for key, raw in zip(keys, raws, strict=True):
            entry = None
            if raw is not None:
                try:
                    entry = CacheEntry.from_bytes(raw)
                except ValueError as exc:
                    self._log.debug("dropping unreadable Redis entry %s: %s", key, exc)
                    bad.append(KEY_NAMESPACE + key)
            entries.append(entry)
        if bad:
            await self._call(lambda: self._client.unlink(*bad))
        return entries

    async def _call(self, command: Callable[[], Awaitable[_T]]) -> _T | _Skipped:
        """Run one Redis operation through the breaker.

        Returns the operation's result, or ``_SKIPPED`` when the breaker is
        open or the operation failed (which opens it).
        """
        if self._down_since is None:
            try:
                return await command()
            except _OUTAGE_ERRORS as exc:
                self._mark_down(exc)
                return _SKIPPED
        if self._probing or time.monotonic() < self._probe_at:
            return _SKIPPED
        self._probing = True
        try:
            result = await command()
        except _OUTAGE_ERRORS as exc:
            self._failed_probes += 1
            self._error = _describe(exc)
            self._probe_at = time.monotonic() + self._backoff.compute(self._failed_probes)
            self._log.debug("Redis at %s still unavailable: %s", self._shown_url, self._error)
            return _SKIPPED
        finally:
            self._probing = False
        self._down_since = None
        self._failed_probes = 0
        self._log.info("Redis at %s is back", self._shown_url)
        return result

    def _mark_down(self, exc: BaseException) -> None:
        # Commands already in flight when Redis went down fail one by one;
        # only the first opens the breaker and warns.
        if self._down_since is not None:
            return
        self._down_since = time.time()
        self._error = _describe(exc)
        self._failed_probes = 0
        self._probe_at = time.monotonic() + self._backoff.compute(0)
        self._log.warning("Redis at %s is unavailable, caching without it: %s", self._shown_url, self._error)


def prefix_patterns(prefix: str) -> list[str]:
    """SCAN MATCH patterns of the keys :meth:`RedisCache.delete_prefix` removes.

    ``88.118`` gives patterns for ``h:88.118/*``, ``h:88.118.*``,
    ``d:88.118``, ``d:88.118.*``, ``h:0.NA/88.118`` and ``h:0.NA/88.118.*``
    (namespaced); never ``88.1180``, since a sub-prefix starts after a dot.
    """
    p = _glob_escape(prefix.upper())
    na = _glob_escape(PREFIX_HANDLE_PREFIX)
    bodies = [f"h:{p}/*", f"h:{p}.*", f"d:{p}", f"d:{p}.*", f"h:{na}/{p}", f"h:{na}/{p}.*"]
    return [_glob_escape(KEY_NAMESPACE) + body for body in bodies]


def redact_url(url: str) -> str:
    """``url`` with any password (in the user part or a ``password=`` query
    parameter) replaced by ``***``, fit for logs and health output."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = user.partition(":")[0] + ":***@" + host
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k == "password" else v) for k, v in pairs], safe="*")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _glob_escape(text: str) -> str:
    # Redis MATCH globs treat * ? [ ] and \ specially; a backslash quotes one.
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
