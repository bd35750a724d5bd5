"""``idnode init`` and ``idnode serve``."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from idcore.errors import IdnodeError
from idcore.settings import DATABASE_NAME, NodeSettings, SettingsError, build_settings
from registry.node_setup import init_node
from resolver.serve import run_node
from scripts.cli_common import CliError, read_config, server_tls


async def init(args: Any) -> int:
    data = Path(args.data)
    if args.if_missing and (data / DATABASE_NAME).exists():
        print(f"{data} is already set up; nothing to do")
        return 0
    try:
        result = await init_node(
            data, args.prefix, site_address=args.site_address, site_port=args.site_port, secret=args.secret
        )
    except IdnodeError as exc:
        raise CliError(exc.message) from None
    print(f"node data folder: {data}")
    print(f"homed prefix:     {result.prefix}")
    print(f"admin identity:   {result.identity}")
    print(f"admin secret in:  {result.credentials_file} (readable by you only)")
    return 0


def load_settings(args: Any) -> NodeSettings:
    toml = read_config(args.config)
    flags = {
        "data_dir": args.data_dir, "host": args.host, "port": args.port, "log_level": args.log_level,
        "tls_cert": args.tls_cert, "tls_key": args.tls_key,
    }
    try:
        return build_settings(toml, os.environ, flags)
    except SettingsError as exc:
        raise CliError(str(exc)) from None


def serve(args: Any) -> int:
    settings = load_settings(args)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if not settings.database.exists():
        raise CliError(f"no node database at {settings.database}; run 'idnode init --data {settings.data_dir} --prefix ...'")
    tls = server_tls(settings.tls_cert, settings.tls_key)
    scheme = "https" if tls else "http"
    print(f"idnode serving {settings.data_dir} on {scheme}://{settings.host}:{settings.port}/ (Ctrl-C stops)", flush=True)
    try:
        run_node(
            settings.database, host=settings.host, port=settings.port, auto_admin=settings.auto_admin, tls=tls,
            resolver_url=settings.resolver_url,
        )
    except OSError as exc:
        raise CliError(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}") from None
    return 0
