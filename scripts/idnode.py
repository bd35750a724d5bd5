"""``idnode``: the command line of an idnode node.

Node commands: ``init`` (data folder, database, first admin identity) and
``serve``; ``resolver`` serves a recursive node; ``demo`` runs a whole
hierarchy and a recursive node on loopback. Client commands, against any
node's REST API: ``put``, ``get``, ``delete``, ``list``, ``batch``; against a
recursive node: ``resolve``, ``flush``. ``qr``: QR codes and labels, one
(``idnode qr HANDLE``) or a batch, and reading them back.

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

from scripts import cli_backup, cli_batch, cli_client, cli_demo, cli_node, cli_qr, cli_resolver
from scripts import cli_mirror
from scripts import cli_escrow, cli_prefix
from scripts.cli_common import CliError

DEFAULT_SERVER = "http://127.0.0.1:8000"

#: The recursive node ``idnode resolve`` and ``idnode flush`` ask by default
#: (where ``idnode demo`` runs one).
DEFAULT_RESOLVER = "http://127.0.0.1:8000"


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

    demo = commands.add_parser(
        "demo", help="run a top-level, a secondary and an enterprise node and a recursive node on loopback"
    )
    demo.add_argument("--data", default="idnode-demo", help="data folder, one SQLite node per prefix (default: %(default)s)")
    demo.add_argument("--host", default="127.0.0.1", help="loopback address to serve on (default: %(default)s)")
    demo.add_argument("--port", type=int, default=8000, help="recursive node's port; the nodes take the next three")
    demo.add_argument("--samples", type=int, default=300, help="sample products to register (default: %(default)s)")
    demo.add_argument("--redis", help="Redis URL for the recursive node's second cache tier (default: none)")
    demo.add_argument("--fresh", action="store_true", help="delete the data folder first")
    demo.set_defaults(run=cli_demo.run)

    resolver = commands.add_parser("resolver", help="serve a recursive node (settings: TOML < environment < flags)")
    resolver.add_argument("--config", help="TOML settings file ([resolver] table)")
    resolver.add_argument("--bootstrap", help="top-level node URL(s), comma-separated: http://IP:PORT[,...]")
    resolver.add_argument("--host", help="listen address")
    resolver.add_argument("--port", type=int, help="listen port (default 8080)")
    resolver.add_argument("--redis", help="Redis URL for the shared cache tier")
    resolver.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    resolver.set_defaults(run=cli_resolver.serve)

    def resolver_client(name: str, help_text: str, run: Callable[..., Any]) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument(
            "--resolver", default=os.environ.get("IDNODE_RESOLVER", DEFAULT_RESOLVER),
            help="recursive node base URL (env IDNODE_RESOLVER; default %(default)s)",
        )
        sub.set_defaults(run=run)
        return sub

    resolve = resolver_client("resolve", "resolve any identifier through a recursive node", cli_resolver.resolve)
    resolve.add_argument("handle", help="identifier in any form: 88.118.2/X, hdl:88.118.2/X, https://resolver/88.118.2/X")
    resolve.add_argument("--json", action="store_true", help="print the reply's JSON")
    resolve.add_argument("--trace", action="store_true", help="walk afresh and print every hop with its timing")
    resolve.add_argument("--auth", action="store_true", help="skip the cache: ask the authoritative node")

    flush = resolver_client("flush", "forget cached entries at a recursive node", cli_resolver.flush)
    flush.add_argument("handle", nargs="?", help="the handle to forget")
    flush.add_argument("--prefix", help="forget everything under this prefix instead")
    flush.add_argument("--token", help="the resolver's admin token (env IDNODE_RESOLVER_TOKEN); not needed on loopback")

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

    cli_qr.add_parser(commands)
    cli_backup.add_parser(commands)
    cli_mirror.add_parsers(commands, DEFAULT_SERVER)
    cli_prefix.add_parser(client)
    cli_escrow.add_parser(client)
    from scripts import cli_filing  # imported here: one self-contained insertion

    cli_filing.add_parser(commands, DEFAULT_SERVER)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(cli_qr.implicit_label(sys.argv[1:] if argv is None else argv))
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
    except BrokenPipeError:
        # the reader went away (idnode ... | head): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
