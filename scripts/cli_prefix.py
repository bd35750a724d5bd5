"""``idnode prefix``: apply for a child prefix at a parent node, and review
applications there (list, show, approve, reject, disable, enable,
request-deletion, delete) through its ``/api/prefix-applications`` API."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from registry.prefix_admin import ACTIONS
from resolver.rest_client import NodeClient
from scripts.cli_common import CliError, client_tls, credentials, node_errors, read_secret

APPLICATIONS = "/api/prefix-applications"


class PrefixAdminClient(NodeClient):
    """A node client that also speaks the prefix administration API."""

    async def apply(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.call("POST", APPLICATIONS, json=body)

    async def applications(self, state: str | None) -> dict[str, Any]:
        params = {"state": state} if state else {}
        return await self.call("GET", APPLICATIONS, params=params)

    async def application(self, app_id: str) -> dict[str, Any]:
        return await self.call("GET", f"{APPLICATIONS}/{app_id}")

    async def act(self, app_id: str, action: str, reason: str | None) -> dict[str, Any]:
        body = {"reason": reason} if reason else {}
        return await self.call("POST", f"{APPLICATIONS}/{app_id}/{action}", json=body)


def _client(args: Any) -> PrefixAdminClient:
    """A client with the credentials and CA of every client command (none
    are needed to apply)."""
    identity, secret = credentials(args)
    return PrefixAdminClient(args.server, identity=identity, secret=secret, tls=client_tls(args))


def _read_application(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_bytes()
        body = orjson.loads(text)
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise CliError(f"{path} is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise CliError(f"{path} must hold one JSON object (the application)")
    return body


def _print(reply: dict[str, Any]) -> None:
    reply.pop("responseCode", None)
    print(orjson.dumps(reply, option=orjson.OPT_INDENT_2).decode())


async def apply(args: Any) -> int:
    body = _read_application(args.file)
    secret = read_secret(args.child_secret_file, "IDNODE_CHILD_SECRET")
    if secret:
        body["secret"] = secret
    with node_errors():
        async with _client(args) as client:
            reply = await client.apply(body)
    print(f"application {reply['id']} for {reply['prefix']}: {reply['state']}")
    return 0


async def list_applications(args: Any) -> int:
    with node_errors():
        async with _client(args) as client:
            reply = await client.applications(args.state)
    for row in reply["applications"]:
        organisation = row["application"]["organisation"]["name"]
        print(f"{row['id']}  {row['prefix']:<20} {row['state']:<17} {organisation}")
    return 0


async def show(args: Any) -> int:
    with node_errors():
        async with _client(args) as client:
            _print(await client.application(args.id))
    return 0


async def act(args: Any) -> int:
    with node_errors():
        async with _client(args) as client:
            reply = await client.act(args.id, args.action, args.reason)
    print(f"application {reply['id']} for {reply['prefix']}: {reply['state']}")
    return 0


def add_parser(client: Callable[..., Any]) -> None:
    """``idnode prefix ACTION ...``; ``client(name, help, run)`` (from
    :mod:`scripts.idnode`) makes a command with the common client options
    (--server, --id, --secret-file, --credentials, --cacert)."""
    prefix = client("prefix", "apply for a child prefix at a parent node, or review applications there", None)
    actions = prefix.add_subparsers(dest="prefix_command", required=True, metavar="ACTION")

    def sub(name: str, help_text: str, run: Any) -> Any:
        parser = actions.add_parser(name, help=help_text)
        parser.set_defaults(run=run)
        return parser

    applying = sub("apply", "send an application (no identity needed)", apply)
    applying.add_argument("file", help="the application as JSON (prefix, organisation, contact, site, publicKey)")
    applying.add_argument(
        "--child-secret-file",
        help="secret of the child's identity 300:0.NA/<prefix> at the parent (env IDNODE_CHILD_SECRET)",
    )
    listing = sub("list", "list the applications you review", list_applications)
    listing.add_argument("--state", help="only applications in this state (pending_review, approved ...)")
    sub("show", "show one application and its history", show).add_argument("id")
    for action in ACTIONS:
        acting = sub(action, f"reviewers: {action} (see registry.prefix_admin for the lifecycle)", act)
        acting.add_argument("id")
        acting.add_argument("--reason", help="why; recorded in the application's history")
        acting.set_defaults(action=action)
