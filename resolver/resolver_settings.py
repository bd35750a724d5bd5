"""Settings of a recursive node: where the hierarchy starts, the cache, limits.

Built at the edge (CLI flags, a TOML ``[resolver]`` table, environment) into
one frozen :class:`ResolverSettings` and passed down; nothing here reads the
environment by itself.

TOML layout::

    [resolver]
    host = "127.0.0.1"
    port = 8080
    # the top-level node's site(s): a list of server URLs is one site with
    # several servers; a list of such lists is several sites (mirrors)
    bootstrap = ["http://10.0.0.1:8000", "http://10.0.0.2:8000"]
    redis_url = "redis://127.0.0.1:6379/0"     # optional second tier
    admin_token = "..."                        # for cache flushes from afar
    min_ttl = 1
    max_ttl = 86400
    negative_ttl = 30
    stale_window = 3600
    memory_max_entries = 200000
    memory_max_bytes = 268435456
    # the URL phones reach this node at, which QR codes made here carry
    # (GET /qr/...); unset, it is taken from each request (scheme + Host),
    # which is wrong behind a TLS-terminating proxy: set it in production
    public_url = "https://id.example.cn"

Environment: ``IDNODE_RESOLVER_<KEY>`` for each key (``IDNODE_RESOLVER_PUBLIC_URL``).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import urlsplit

from cache.memory import DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES
from cache.policy import CachePolicy
from idcore import limits
from idcore.errors import InvalidValue
from idcore.settings import SettingsError
from idcore.site import Interface, Server, Site
from qr.payload import resolver_base

#: Port a recursive node listens on unless told otherwise.
DEFAULT_RESOLVER_PORT = 8080


def site_from_urls(urls: list[str], *, primary: bool = True) -> Site:
    """A site whose servers are the given ``http(s)://address:port`` URLs.

    Raises:
        SettingsError: a URL that is not http(s) with an IP address and port.
    """
    servers = []
    for number, url in enumerate(urls, start=1):
        parts = urlsplit(url)
        try:
            address = str(ipaddress.ip_address(parts.hostname or ""))
            port = parts.port
        except ValueError:
            raise SettingsError(f"bootstrap server {url!r} must be http(s)://<IP address>:<port>") from None
        if parts.scheme not in ("http", "https") or port is None:
            raise SettingsError(f"bootstrap server {url!r} must be http(s)://<IP address>:<port>")
        servers.append(Server(number, address, (Interface(parts.scheme.upper(), port),)))
    try:
        return Site(servers=tuple(servers), primary=primary)
    except InvalidValue as exc:
        raise SettingsError(f"bootstrap site: {exc.message}") from None


@dataclass(frozen=True, slots=True)
class ResolverSettings:
    """How one recursive node runs.

    Attributes:
        bootstrap: the top-level node's sites (primary first, then mirrors).
        host, port: where the HTTP front end listens.
        redis_url: the shared cache tier, or None for the in-process tier alone.
        admin_token: bearer token for ``POST /api/cache/flush`` from other
            hosts; without one, only loopback clients may flush.
        policy: TTL caps, negative TTL, stale window, prefetch.
        memory_max_entries, memory_max_bytes: bounds of the in-process tier.
        request_timeout, time_budget: per upstream request, per resolution.
        public_url: base URL (``http(s)://host[:port][/path]``, stored
            normalised) that the URL form of QR codes made here carries;
            None takes it from each request's scheme and Host header.
    """

    bootstrap: tuple[Site, ...]
    host: str = "127.0.0.1"
    port: int = DEFAULT_RESOLVER_PORT
    redis_url: str | None = None
    admin_token: str | None = None
    policy: CachePolicy = field(default_factory=CachePolicy)
    memory_max_entries: int = DEFAULT_MAX_ENTRIES
    memory_max_bytes: int = DEFAULT_MAX_BYTES
    request_timeout: float = limits.UPSTREAM_REQUEST_TIMEOUT_SECONDS
    time_budget: float = limits.RESOLUTION_TIME_BUDGET_SECONDS
    log_level: str = "info"
    public_url: str | None = None

    def __post_init__(self) -> None:
        if self.public_url is not None:
            try:
                object.__setattr__(self, "public_url", resolver_base(self.public_url))
            except InvalidValue as exc:
                raise SettingsError(f"public_url: {exc.message}") from None
        if not self.bootstrap:
            raise SettingsError("a recursive node needs at least one bootstrap (top-level) server")
        if not 0 < self.request_timeout <= self.time_budget:
            raise SettingsError(
                f"request_timeout {self.request_timeout} must be positive and within time_budget {self.time_budget}"
            )


_POLICY_KEYS = {f.name for f in dataclasses.fields(CachePolicy)}
_PLAIN_KEYS = {
    "host": str,
    "port": int,
    "redis_url": str,
    "admin_token": str,
    "memory_max_entries": int,
    "memory_max_bytes": int,
    "request_timeout": float,
    "time_budget": float,
    "log_level": str,
    "public_url": str,
}


def build_resolver_settings(
    toml: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> ResolverSettings:
    """Merge the ``[resolver]`` TOML table, ``IDNODE_RESOLVER_*`` variables
    and flags (later wins) into :class:`ResolverSettings`.

    ``bootstrap`` is a list of URLs (one site) or a list of such lists (one
    site each, the first primary and the rest mirrors); the environment and
    flags give it as comma-separated URLs.

    Raises:
        SettingsError: an unknown key or a bad value, naming its source.
    """
    raw: dict[str, tuple[Any, str]] = {}
    table = (toml or {}).get("resolver", {})
    if not isinstance(table, Mapping):
        raise SettingsError("config file: [resolver] must be a table")
    known = _POLICY_KEYS | set(_PLAIN_KEYS) | {"bootstrap"}
    for key, value in table.items():
        if key not in known:
            raise SettingsError(f"config file: unknown setting resolver.{key} (known: {', '.join(sorted(known))})")
        raw[key] = (value, f"config file resolver.{key}")
    for key in known:
        name = "IDNODE_RESOLVER_" + key.upper()
        if env and name in env:
            raw[key] = (env[name], f"environment {name}")
    for key, value in (flags or {}).items():
        if value is not None:
            raw[key] = (value, f"--{key.replace('_', '-')}")
    if "bootstrap" not in raw:
        raise SettingsError("no bootstrap servers: give --bootstrap URL[,URL...] or resolver.bootstrap in the config file")
    values: dict[str, Any] = {"bootstrap": _bootstrap(*raw.pop("bootstrap"))}
    policy: dict[str, Any] = {}
    for key, (value, source) in raw.items():
        if key in _POLICY_KEYS:
            policy[key] = _number(value, float if key == "prefetch_fraction" else int, source)
        elif _PLAIN_KEYS[key] is str:
            values[key] = str(value)
        else:
            values[key] = _number(value, _PLAIN_KEYS[key], source)
    try:
        values["policy"] = CachePolicy(**policy)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    return ResolverSettings(**values)


def _number(value: Any, kind: type, source: str) -> Any:
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{source}: {value!r} is not a number") from None


def _bootstrap(value: Any, source: str) -> tuple[Site, ...]:
    if isinstance(value, str):
        value = [u.strip() for u in value.split(",") if u.strip()]
    if not isinstance(value, list) or not value:
        raise SettingsError(f"{source}: bootstrap must list server URLs")
    groups = value if all(isinstance(v, list) for v in value) else [value]
    if not all(isinstance(u, str) for group in groups for u in group):
        raise SettingsError(f"{source}: bootstrap must list server URLs (text), or lists of them")
    return tuple(site_from_urls(group, primary=number == 0) for number, group in enumerate(groups))
