"""``idnode``: the command line of an idnode node.

Node commands: ``init`` (data folder, database, first admin identity) and
``serve``. Client commands, against any node's REST API: ``put``, ``get``,
``delete``, ``list``, ``batch``.

Exit codes: 0 done; 1 the node refused (its message is printed); 2 bad
usage; 3 the node could not be reached; 4 bad local input (a file, a
setting, a value).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any, Callable, Sequence

from scripts import cli_batch, cli_client, cli_node
from scripts.cli_common import CliError

DEFAULT_SERVER = "http://127.0.0.1:8000"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="idnode", description="Industrial-internet identifier node (Handle REST API).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init = commands.add_parser("init", help="create a node's data folder, database and first admin identity")
    init.add_argument("--data", default="idnode-data", help="data folder (default: %(default)s)")
    init.add_argument("--prefix", required=True, help="prefix this node homes, e.g. 88.118.2")
    init.add_argument("--site-address", default="127.0.0.1", help="IP address published in the node's HS_SITE")
    init.add_argument("--site-port", type=int, default=8000, help="HTTP port published in the node's HS_SITE")
    init.add_argument("--secret", help="admin secret (default: generate one)")
    init.add_argument("--if-missing", action="store_true", help="do nothing (exit 0) if the folder is already set up")
    init.set_defaults(run=cli_node.init)

    serve = commands.add_parser("serve", help="serve the node (settings: TOML file < environment < flags)")
    serve.add_argument("--config", help="TOML settings file ([node] table)")
    serve.add_argument("--data", dest="data_dir", help="data folder")
    serve.add_argument("--host", help="listen address")
    serve.add_argument("--port", type=int, help="listen port")
    serve.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    serve.add_argument("--tls-cert", help="PEM certificate chain: serve HTTPS (with --tls-key)")
    serve.add_argument("--tls-key", help="PEM private key of --tls-cert")
    serve.set_defaults(run=cli_node.serve)

    def client(name: str, help_text: str, run: Callable[..., Any]) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument(
            "--server", default=os.environ.get("IDNODE_SERVER", DEFAULT_SERVER),
            help="node base URL (env IDNODE_SERVER; default %(default)s)",
        )
        sub.add_argument("--id", dest="identity", help="identity index:handle (env IDNODE_ID)")
        sub.add_argument("--secret-file", help="file holding the secret (env IDNODE_SECRET / IDNODE_SECRET_FILE)")
        sub.add_argument(
            "--credentials", help="admin.json from 'idnode init' (default: idnode-data/admin.json if present)"
        )
        sub.add_argument("--cacert", help="PEM certificate(s) to trust for an https:// node (env IDNODE_CACERT)")
        sub.set_defaults(run=run)
        return sub

    put = client("put", "create or replace a handle", cli_client.put)
    put.add_argument("handle", help="handle (or prefix with --mint)")
    put.add_argument("--url", help="URL value (index 1)")
    put.add_argument("--value", action="append", default=[], metavar="[INDEX:]TYPE=TEXT", help="a string value; repeatable")
    put.add_argument("--values-json", metavar="FILE", help="values as REST JSON (list or {\"values\": [...]}); - for stdin")
    put.add_argument("--no-overwrite", action="store_true", help="fail if the handle exists")
    put.add_argument("--mint", action="store_true", help="mint a new suffix under HANDLE")

    get = client("get", "show a handle's record", cli_client.get)
    get.add_argument("handle")
    get.add_argument("--type", action="append", default=[], help="only values of this type (TYPE. for subtypes)")
    get.add_argument("--index", action="append", type=int, default=[], help="only the value at this index")

    delete = client("delete", "delete a handle, or some of its values", cli_client.delete)
    delete.add_argument("handle")
    delete.add_argument("--index", action="append", type=int, default=[], help="delete only this value; repeatable")

    listing = client("list", "list the handles under a prefix", cli_client.list_handles)
    listing.add_argument("prefix")
    listing.add_argument("--page", type=int)
    listing.add_argument("--page-size", type=int)

    batch = client("batch", "register a file of NDJSON operations", cli_batch.run)
    batch.add_argument("file", help="NDJSON file, one operation per line; - for stdin")
    batch.add_argument("--errors", metavar="FILE", help="write every refused line's result here")
    batch.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        outcome = args.run(args)
        if asyncio.iscoroutine(outcome):
            outcome = asyncio.run(outcome)
        return int(outcome or 0)
    except CliError as exc:
        print(f"idnode {args.command}: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"idnode {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
