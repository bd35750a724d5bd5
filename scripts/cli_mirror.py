"""``idnode mirror`` (serve a mirror of a primary node) and ``idnode site
add-mirror`` (list a mirror in a prefix record's HS_SITE values)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from idcore.errors import IdnodeError
from idcore.handle import prefix_handle
from registry.mirror import DEFAULT_BATCH, STATE_NAME, read_state
from registry.node_setup import mirror_site_for, next_site_index
from resolver.mirror_app import mirror_app
from resolver.serve import tune_garbage_collector
from scripts.cli_common import CliError, client_for, client_tls, explicit_credentials, node_errors, server_tls


def _feed_credentials(args: Any) -> tuple[str | None, str | None]:
    identity, secret = explicit_credentials(args)
    if (identity is None) != (secret is None):
        raise CliError("give both --id and --secret-file (or neither, for a primary on this host)")
    return identity, secret


def serve(args: Any) -> int:
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    data = Path(args.data)
    primary = args.primary.rstrip("/")
    try:
        state = read_state(data / STATE_NAME)
    except IdnodeError as exc:
        raise CliError(exc.message) from None
    if state and state.get("primary") not in (None, primary):
        raise CliError(f"{data} mirrors {state['primary']}, not {primary}; use a new folder")
    identity, secret = _feed_credentials(args)
    serving_tls = server_tls(args.tls_cert, args.tls_key)
    app = mirror_app(data, primary, identity=identity, secret=secret, tls=client_tls(args), batch=args.batch,
                     poll_seconds=args.poll)
    scheme = "https" if serving_tls else "http"
    print(
        f"idnode mirror of {primary}: {data} served read-only on {scheme}://{args.host}:{args.port}/ (Ctrl-C stops)",
        flush=True,
    )
    tune_garbage_collector()
    try:
        web.run_app(app, host=args.host, port=args.port, ssl_context=serving_tls, access_log=None, print=None)
    except OSError as exc:
        raise CliError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    return 0


async def add_mirror(args: Any) -> int:
    """Add a mirror site to ``0.NA/<prefix>`` at ``--server`` (the primary,
    or the parent holding the delegation)."""
    record = prefix_handle(args.prefix).to_text()
    try:
        site = mirror_site_for(args.address, args.port)
    except IdnodeError as exc:
        raise CliError(exc.message) from None
    with node_errors():
        async with client_for(args) as client:
            current = await client.get(record)
            index = next_site_index(v["index"] for v in current.get("values", []))
            value = {"index": index, "type": "HS_SITE", "data": {"format": "site", "value": site.to_json()}}
            await client.add_values(record, [value])
    print(f"{record}: mirror site {args.address}:{args.port} added at index {index} on {args.server}")
    return 0


def add_parsers(commands: Any, default_server: str) -> None:
    """``idnode mirror`` and ``idnode site add-mirror``."""
    mirror = commands.add_parser("mirror", help="serve a read-only mirror of a primary node, following its journal")
    mirror.add_argument("--primary", required=True, help="the primary node's base URL, http://IP:PORT")
    mirror.add_argument("--data", required=True, help="the mirror's data folder (created if missing)")
    mirror.add_argument("--host", default="127.0.0.1", help="listen address (default: %(default)s)")
    mirror.add_argument("--port", type=int, default=8001, help="listen port (default: %(default)s)")
    mirror.add_argument("--id", dest="identity", help="identity for the primary's journal feed (env IDNODE_ID)")
    mirror.add_argument("--secret-file", help="file holding its secret (env IDNODE_SECRET / IDNODE_SECRET_FILE)")
    mirror.add_argument("--cacert", help="PEM certificate(s) to trust for an https:// primary (env IDNODE_CACERT)")
    mirror.add_argument("--tls-cert", help="PEM certificate chain to serve the mirror over HTTPS with")
    mirror.add_argument("--tls-key", help="PEM private key of --tls-cert")
    mirror.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="journal entries per pull (default: %(default)s)")
    mirror.add_argument("--poll", type=float, default=1.0, help="seconds between pulls once caught up (default: %(default)s)")
    mirror.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    mirror.set_defaults(run=serve)

    site = commands.add_parser("site", help="manage the HS_SITE values of a prefix record")
    actions = site.add_subparsers(dest="site_command", required=True, metavar="ACTION")
    add = actions.add_parser("add-mirror", help="list a mirror site (primarySite false) in 0.NA/PREFIX at --server")
    add.add_argument("--prefix", required=True, help="the prefix the mirror serves")
    add.add_argument("--address", required=True, help="the mirror's IP address")
    add.add_argument("--port", type=int, required=True, help="the mirror's HTTP port")
    add.add_argument(
        "--server", default=os.environ.get("IDNODE_SERVER", default_server),
        help="node holding 0.NA/PREFIX: the primary, or the parent's delegation (env IDNODE_SERVER; default %(default)s)",
    )
    add.add_argument("--id", dest="identity", help="identity index:handle (env IDNODE_ID)")
    add.add_argument("--secret-file", help="file holding the secret (env IDNODE_SECRET / IDNODE_SECRET_FILE)")
    add.add_argument("--credentials", help="admin.json from 'idnode init' (default: idnode-data/admin.json if present)")
    add.add_argument("--cacert", help="PEM certificate(s) to trust for an https:// node (env IDNODE_CACERT)")
    add.set_defaults(run=add_mirror)
