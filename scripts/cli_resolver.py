"""``idnode resolver`` (serve a recursive node), ``idnode resolve`` and
``idnode flush`` (clients of one)."""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

import aiohttp
import orjson
import yarl

from idcore.errors import IdnodeError
from idcore.handle import parse
from idcore.rest_json import dumps
from idcore.settings import SettingsError
from resolver.resolver_settings import ResolverSettings, build_resolver_settings
from resolver.serve import run_resolver
from resolver.walk import api_path
from scripts.cli_common import (
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    CliError,
    read_config,
)

#: Seconds ``idnode resolve`` waits for the resolver (which has its own
#: budget per resolution, five seconds by default).
CLIENT_TIMEOUT_SECONDS = 30


def load_resolver_settings(args: Any) -> ResolverSettings:
    toml = read_config(args.config)
    flags = {
        "bootstrap": args.bootstrap, "host": args.host, "port": args.port, "redis_url": args.redis,
        "log_level": args.log_level,
    }
    try:
        return build_resolver_settings(toml, os.environ, flags)
    except SettingsError as exc:
        raise CliError(str(exc)) from None


def serve(args: Any) -> int:
    settings = load_resolver_settings(args)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    cache = "in-process" + (" + Redis" if settings.redis_url else "")
    print(f"idnode recursive node on http://{settings.host}:{settings.port}/ (cache: {cache}; Ctrl-C stops)", flush=True)
    try:
        run_resolver(settings)
    except OSError as exc:
        raise CliError(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}") from None
    return 0


async def _get(url: str | yarl.URL, **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_SECONDS)) as session:
            async with session.request(kwargs.pop("method", "GET"), url, **kwargs) as reply:
                return reply.status, dict(reply.headers), await reply.read()
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise CliError(f"cannot reach {url}: {exc or type(exc).__name__}", EXIT_UNREACHABLE) from None


def _json(status: int, body: bytes) -> dict[str, Any]:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise CliError(f"the resolver answered HTTP {status} with a body that is not JSON", EXIT_UNREACHABLE) from None
    if not isinstance(parsed, dict):
        raise CliError(f"the resolver answered HTTP {status} with JSON that is not an object", EXIT_UNREACHABLE)
    return parsed


def _print_trace(trace: list[dict[str, Any]]) -> None:
    total = 0.0
    for number, hop in enumerate(trace, start=1):
        total += hop.get("ms", 0.0)
        print(f"  {number}. {hop.get('level', '')!s:<12} {hop.get('server', '')!s:<28} {hop.get('ms', 0):8.2f} ms  {hop.get('outcome', '')}")
    print(f"  {len(trace)} request(s), {total:.2f} ms upstream")


def _print_record(body: dict[str, Any], source: str) -> None:
    print(f"{body.get('handle')}  (answered from {source or 'the resolver'}{', STALE' if body.get('stale') else ''})")
    for value in body.get("values", []):
        data = value.get("data", {})
        shown = data.get("value") if isinstance(data, dict) else data
        if not isinstance(shown, str):
            shown = dumps(shown).decode()
        print(f"  {value.get('index'):>5}  {value.get('type')!s:<18} {shown}")


async def resolve(args: Any) -> int:
    """``idnode resolve HANDLE``: ask a recursive node; with ``--trace``
    every hop of a fresh walk, with its timing."""
    try:
        handle = parse(args.handle).to_text()  # any input form: hdl:, resolver URL, scanner text
    except IdnodeError as exc:
        raise CliError(f"{args.handle!r} is not an identifier: {exc.message}", EXIT_USAGE) from None
    params = {}
    if args.trace:
        params["trace"] = "true"
    elif args.auth:
        params["auth"] = "true"
    try:
        base = yarl.URL(args.resolver)
    except ValueError:
        base = None
    if base is None or base.scheme not in ("http", "https") or not base.host:
        raise CliError(f"--resolver {args.resolver!r} is not an http(s):// URL", EXIT_USAGE)
    # the handle's path is already encoded: parsed again, its escaped dot segments would be dropped
    url = base.with_path(base.raw_path.rstrip("/") + api_path(handle), encoded=True)
    started = time.perf_counter()
    status, headers, raw = await _get(url, params=params)
    elapsed = (time.perf_counter() - started) * 1000
    body = _json(status, raw)
    code = body.get("responseCode")
    if args.json:
        sys.stdout.write(dumps(body, pretty=True).decode() + "\n")
    else:
        if args.trace:
            print(f"trace of {handle} via {args.resolver}:")
            _print_trace(body.get("trace", []))
        if code in (1, 200):
            _print_record(body, headers.get("X-Idnode-Cache", ""))
        else:
            print(f"{handle}: response code {code}: {body.get('message', '')}", file=sys.stderr)
        print(f"({elapsed:.2f} ms round trip to the resolver)")
    return 0 if code in (1, 200) else EXIT_REFUSED


async def flush(args: Any) -> int:
    """``idnode flush HANDLE`` / ``idnode flush --prefix P``."""
    if (args.handle is None) == (args.prefix is None):
        raise CliError("name a handle or --prefix, not both", EXIT_USAGE)
    params = {"handle": args.handle} if args.handle is not None else {"prefix": args.prefix}
    headers = {}
    token = args.token or os.environ.get("IDNODE_RESOLVER_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    status, _, raw = await _get(args.resolver.rstrip("/") + "/api/cache/flush", method="POST", params=params, headers=headers)
    body = _json(status, raw)
    if body.get("responseCode") != 1:
        raise CliError(f"refused, response code {body.get('responseCode')}: {body.get('message')}", EXIT_REFUSED)
    what = body.get("handle") or f"everything under {body.get('prefix')}"
    print(f"flushed {what}: {body.get('flushed')} entr{'y' if body.get('flushed') == 1 else 'ies'}")
    return 0
