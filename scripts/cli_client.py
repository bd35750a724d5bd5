"""``idnode put|get|delete|list``: one REST call each, printed as JSON."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Awaitable, Callable

import orjson

from idcore.errors import IdnodeError
from idcore.rest_json import dumps, values_from_put_body, values_to_json
from resolver.rest_client import NodeClient
from scripts.cli_common import EXIT_USAGE, CliError, client_for, node_errors


def _print(obj: Any) -> None:
    sys.stdout.write(dumps(obj, pretty=True).decode("utf-8") + "\n")


def values_from_args(args: Any) -> list[dict[str, Any]]:
    """The values a ``put`` command line describes, as REST JSON (checked).

    ``--url`` takes index 1; ``--value TYPE=TEXT`` takes the next free index
    unless it names one (``2:EMAIL=ops@example.com``).
    """
    items: list[dict[str, Any]] = []
    if args.values_json:
        source = sys.stdin.buffer.read() if args.values_json == "-" else _read(args.values_json)
        try:
            items = list(orjson.loads(source)["values"] if source.lstrip().startswith(b"{") else orjson.loads(source))
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise CliError(f"{args.values_json}: not a JSON list of values or {{\"values\": [...]}}: {exc}") from None
    taken = {item.get("index") for item in items if isinstance(item, dict)}
    if args.url:
        items.append({"index": 1, "type": "URL", "data": {"format": "string", "value": args.url}})
        taken.add(1)
    next_index = 2
    for spec in args.value:
        head, eq, text = spec.partition("=")
        if not eq or not head:
            raise CliError(f"--value {spec!r} must be [INDEX:]TYPE=TEXT", EXIT_USAGE)
        index_text, colon, value_type = head.partition(":")
        if colon and index_text.isdigit():
            index = int(index_text)
        else:
            value_type = head
            while next_index in taken:
                next_index += 1
            index = next_index
        taken.add(index)
        items.append({"index": index, "type": value_type, "data": {"format": "string", "value": text}})
    try:  # check locally so a typo is reported before anything is sent
        return values_to_json(values_from_put_body(items)[0])
    except IdnodeError as exc:
        raise CliError(f"invalid values: {exc.message}") from None


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None


async def _call(args: Any, request: Callable[[NodeClient], Awaitable[dict[str, Any]]]) -> int:
    """Make one request with the command's server and credentials; print the answer."""
    with node_errors():
        async with client_for(args) as client:
            _print(await request(client))
    return 0


async def put(args: Any) -> int:
    values = values_from_args(args)

    async def request(client: NodeClient) -> dict[str, Any]:
        status, body = await client.put(args.handle, values, overwrite=not args.no_overwrite, mint=args.mint)
        return {**body, "created": status == 201}

    return await _call(args, request)


async def get(args: Any) -> int:
    return await _call(args, lambda client: client.get(args.handle, types=args.type, indexes=args.index))


async def delete(args: Any) -> int:
    return await _call(args, lambda client: client.delete(args.handle, indexes=args.index))


async def list_handles(args: Any) -> int:
    return await _call(args, lambda client: client.list_handles(args.prefix, page=args.page, page_size=args.page_size))
