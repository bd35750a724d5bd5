"""``idnode demo``: a whole hierarchy and a recursive node in one process.

Starts the top-level node (88), a secondary node (88.118) and an enterprise
node (88.118.2) over SQLite files in a data folder, files the delegations,
registers sample products, starts a recursive node bootstrapped at the top
node, and prints what to try. Runs until Ctrl-C (or SIGTERM).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from idcore.settings import SettingsError
from resolver.hierarchy import DEFAULT_PREFIXES, SAMPLE_URL_EVERY, LocalHierarchy, sample_handle
from resolver.recursive_app import recursive_app
from resolver.resolver_settings import build_resolver_settings
from resolver.serve import tune_garbage_collector
from scripts.cli_common import CliError

ROLES = ("top-level node", "secondary node", "enterprise node")


async def run(args: Any) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    data = Path(args.data)
    if args.fresh and data.exists():
        shutil.rmtree(data)
    ports = [args.port + 1 + i for i in range(len(DEFAULT_PREFIXES))]
    try:
        host = f"[{args.host}]" if ":" in args.host else args.host  # an IPv6 address
        resolver_url = f"http://{host}:{args.port}"  # the nodes' QR codes point to the demo's resolver
        async with LocalHierarchy(
            DEFAULT_PREFIXES, data_dir=data, host=args.host, ports=ports, resolver_url=resolver_url
        ) as hierarchy:
            await hierarchy.register_samples(args.samples)
            flags = {"bootstrap": hierarchy.top.url, "host": args.host, "port": args.port, "redis_url": args.redis}
            try:
                settings = build_resolver_settings(flags=flags)
            except SettingsError as exc:
                raise CliError(str(exc)) from None
            runner = web.AppRunner(recursive_app(settings), access_log=None)
            await runner.setup()
            try:
                await web.TCPSite(runner, args.host, args.port, reuse_address=True).start()
                _explain(hierarchy, resolver_url, args)
                tune_garbage_collector()
                await _until_stopped()
            finally:
                await runner.cleanup()
    except OSError as exc:
        raise CliError(f"cannot start the demo on {args.host} ports {args.port}..{ports[-1]}: {exc.strerror or exc}") from None
    print("demo stopped")
    return 0


async def _until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def _explain(hierarchy: LocalHierarchy, resolver: str, args: Any) -> None:
    first = sample_handle(hierarchy.enterprise.prefix, 1)
    with_url = sample_handle(hierarchy.enterprise.prefix, SAMPLE_URL_EVERY)
    cache = "in-process + Redis " + args.redis if args.redis else "in-process"
    lines = ["idnode demo: an identifier hierarchy on loopback", ""]
    for role, prefix in zip(ROLES, hierarchy.prefixes):
        node = hierarchy.nodes[prefix]
        lines.append(f"  {role:<16} {prefix:<10} {node.url}   data {Path(args.data) / prefix}")
    lines.append(f"  {'recursive node':<16} {'(any)':<10} {resolver}   cache {cache}")
    lines += [
        "",
        f"  {args.samples} sample products: {sample_handle(hierarchy.enterprise.prefix, 1)} .. "
        f"{sample_handle(hierarchy.enterprise.prefix, args.samples)}",
        "",
        "Try:",
        f"  curl -s {resolver}/api/handles/{first}",
        f"  curl -s '{resolver}/api/handles/{first}?trace=true&pretty'",
        f"  .venv/bin/idnode resolve {first} --trace --resolver {resolver}",
        f"  open {resolver}/{first} in a browser (the product page; fits a phone)",
        f"  curl -si {resolver}/{with_url}        (302 to its URL value)",
        f"  curl -s {resolver}/qr/{first}.png -o code.png   (its QR code; ?level=H&dpi=600&size=20, .svg)",
        f"  curl -s -H 'Content-Type: text/plain' --data-binary '{resolver.upper()}/{first}' {resolver}/api/scan",
        f"  curl -s {resolver}/metrics   and   curl -s {resolver}/healthz",
        "",
        "Ctrl-C stops the demo; its data stays in " + args.data + " (--fresh starts over).",
    ]
    print("\n".join(lines), flush=True)
