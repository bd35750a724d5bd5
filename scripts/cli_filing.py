"""``idnode filing``: file a child node's registrations and statistics with
its parent (``run``), see the parent's record of them (``status``,
``list``), and let a child file (``grant``).

``idnode filing run --data DIR --parent URL`` is its own process next to
``idnode serve`` on the child's host: it reads the child's database (SQLite
allows a second reader), the admin identity in ``admin.json``, the node key
``node_key.pem`` and the resolution counters the node saves, and keeps its
cursor in ``filing.json``. The node never waits for it or for the parent.
"""

from __future__ import annotations

import datetime
import logging
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from idcore.errors import IdnodeError
from idcore.handle import prefix_handle
from idcore.settings import ADMIN_CREDENTIALS_NAME, DATABASE_NAME
from idcore.values import ValueReference
from registry.filing import DEFAULT_BATCH, DEFAULT_POLL_SECONDS, FILING_STATE_NAME, Filer, filing_grant_values
from registry.mirror import Backoff
from registry.node_key import node_key
from registry.read_cache import RecordCache
from registry.resolution_stats import STATS_NAME
from registry.sqlite_store import SqliteStore
from resolver.filing_api import HttpParent
from resolver.rest_client import basic_auth_header
from scripts.cli_common import EXIT_REFUSED, EXIT_UNREACHABLE, CliError, client_for, credentials, node_errors


def _child_identity(data: Path) -> tuple[str, str, str]:
    """The child's admin identity, secret and prefix from ``admin.json``."""
    path = data / ADMIN_CREDENTIALS_NAME
    try:
        stored = orjson.loads(path.read_bytes())
        identity, secret = stored["identity"], stored["secret"]
        handle = ValueReference.from_text(identity).handle
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, IdnodeError) as exc:
        raise CliError(f"cannot read the child's identity from {path}: {exc}") from None
    if not handle.upper().startswith("0.NA/"):
        raise CliError(f"{identity} in {path} is not a prefix identity 300:0.NA/<prefix>")
    return identity, secret, handle.split("/", 1)[1]


async def run(args: Any) -> int:
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    data, parent_url = Path(args.data), args.parent.rstrip("/")
    if not (data / DATABASE_NAME).exists():
        raise CliError(f"no node database at {data / DATABASE_NAME}; run 'idnode init' first")
    identity, secret, prefix = _child_identity(data)
    try:
        key = node_key(data)
        async with SqliteStore(data / DATABASE_NAME, cache=RecordCache(0)) as store, HttpParent(
            parent_url, identity, secret, key
        ) as parent:  # no read cache: the node process writes to this database
            filer = Filer(store, parent, data / FILING_STATE_NAME, parent_url, prefix, stats_path=data / STATS_NAME,
                          batch=args.batch, backoff=Backoff(maximum=args.max_backoff))
            if args.once:
                filed = await filer.catch_up()
                report = await filer.file_statistics() if args.statistics else None
                print(f"filed {filed} journal entries of {prefix} with {parent_url}, up to sequence {filer.filed_seq}")
                if report is not None:
                    print(f"filed statistics of {report['day']}: {orjson.dumps(report['resolution']).decode()}")
                return 0
            print(f"idnode filing: {prefix} ({data}) files with {parent_url} (Ctrl-C stops)", flush=True)
            if args.statistics:
                await filer.file_statistics()
            await filer.run(poll_seconds=args.poll)
    except IdnodeError as exc:
        raise CliError(exc.message, EXIT_UNREACHABLE if "cannot reach" in exc.message else EXIT_REFUSED) from None
    return 0


async def _get(args: Any, path: str, params: dict[str, str]) -> dict[str, Any]:
    identity, secret = credentials(args)
    headers = {"Authorization": basic_auth_header(identity, secret)} if identity and secret else {}
    url = args.server.rstrip("/") + path
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            async with session.get(url, params=params, headers=headers) as reply:
                status, body = reply.status, await reply.read()
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise CliError(f"cannot reach {args.server}: {exc or type(exc).__name__}", EXIT_UNREACHABLE) from None
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise CliError(f"{url} answered HTTP {status} with a body that is not JSON", EXIT_REFUSED) from None
    if status != 200:
        raise CliError(f"refused (HTTP {status}): {obj.get('message') if isinstance(obj, dict) else obj}", EXIT_REFUSED)
    return obj


async def status(args: Any) -> int:
    """``idnode filing status``: the parent's lag table."""
    params = {"child": args.child} if args.child else {}
    children = (await _get(args, "/api/filings/lag", params))["children"]
    if args.json:
        print(orjson.dumps(children, option=orjson.OPT_INDENT_2).decode())
        return 0
    print(f"{'child':<20} {'filed seq':>10} {'child seq':>10} {'lag':>8} {'entries':>9}  last filing (UTC)")
    for row in children:
        at = row["lastFilingMs"]
        when = "-" if at is None else _iso(at)
        print(f"{row['child']:<20} {row['filedSeq']:>10} {row['childLastSeq']:>10} {row['lagEntries']:>8}"
              f" {row['entriesFiled']:>9}  {when}")
    return 0


async def list_filed(args: Any) -> int:
    """``idnode filing list``: which identifiers a child filed, and when."""
    params = {"child": args.child}
    if args.handle:
        params["handle"] = args.handle
    for entry in (await _get(args, "/api/filings", params))["entries"]:
        print(f"{entry['seq']:>10} {_iso(entry['at_ms'])} {entry['op']:<6} {entry['handle']}"
              f"  filed {_iso(entry['filed_ms'])}  {','.join(entry['types'] or [])}")
    return 0


async def grant(args: Any) -> int:
    """``idnode filing grant``: add the child's secret and node key to the
    delegation record ``0.NA/<child>`` at the parent (``--server``)."""
    data = Path(args.child_data)
    _, secret, prefix = _child_identity(data)
    try:
        public = node_key(data).public_key()
    except IdnodeError as exc:
        raise CliError(exc.message) from None
    record = prefix_handle(prefix).to_text()
    with node_errors():
        async with client_for(args) as client:
            await client.add_values(record, filing_grant_values(secret, public), overwrite=True)
    print(f"{record} at {args.server}: {prefix} may now file (its secret at 300, its node key at 301)")
    return 0


def _iso(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def add_parser(commands: Any, default_server: str) -> None:
    """``idnode filing run | status | list | grant``."""
    filing = commands.add_parser("filing", help="file registrations and statistics with the parent node (备案)")
    actions = filing.add_subparsers(dest="filing_command", required=True, metavar="ACTION")

    run_p = actions.add_parser("run", help="file this node's journal with its parent, continuously")
    run_p.add_argument("--data", required=True, help="the child node's data folder")
    run_p.add_argument("--parent", required=True, help="the parent node's base URL, http://IP:PORT")
    run_p.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="journal entries per filing (default: %(default)s)")
    run_p.add_argument("--poll", type=float, default=DEFAULT_POLL_SECONDS,
                       help="seconds between journal reads once caught up (default: %(default)s)")
    run_p.add_argument("--max-backoff", type=float, default=30.0,
                       help="longest wait between attempts while the parent is down (default: %(default)s)")
    run_p.add_argument("--once", action="store_true", help="catch up once and exit")
    run_p.add_argument("--statistics", action="store_true", help="also file today's statistics so far, now")
    run_p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    run_p.set_defaults(run=run)

    def parent_client(name: str, help_text: str, handler: Any) -> Any:
        sub = actions.add_parser(name, help=help_text)
        sub.add_argument("--server", default=os.environ.get("IDNODE_SERVER", default_server),
                         help="the parent node's base URL (env IDNODE_SERVER; default %(default)s)")
        sub.add_argument("--id", dest="identity", help="identity index:handle (env IDNODE_ID)")
        sub.add_argument("--secret-file", help="file holding the secret (env IDNODE_SECRET / IDNODE_SECRET_FILE)")
        sub.add_argument("--credentials", help="admin.json from 'idnode init' (default: idnode-data/admin.json if present)")
        sub.add_argument("--cacert", help="PEM certificate(s) to trust for an https:// node (env IDNODE_CACERT)")
        sub.set_defaults(run=handler)
        return sub

    status_p = parent_client("status", "per child: last filed sequence, the child's own, lag, last filing", status)
    status_p.add_argument("--child", help="only this child prefix")
    status_p.add_argument("--json", action="store_true", help="print the reply's JSON")

    list_p = parent_client("list", "which identifiers a child filed, and when", list_filed)
    list_p.add_argument("--child", required=True, help="the child prefix")
    list_p.add_argument("--handle", help="only this identifier")

    grant_p = parent_client("grant", "let a child file: add its secret and node key to 0.NA/CHILD at --server", grant)
    grant_p.add_argument("--child-data", required=True, help="the child node's data folder (admin.json, node_key.pem)")

