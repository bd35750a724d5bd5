"""``idnode escrow``: at a parent node, list the backups its children
escrowed there and switch takeover of a child on or off, through its
``/api/escrow`` API. (A child uploads with ``idnode backup escrow``.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from scripts.cli_common import client_for, node_errors


async def list_escrow(args: Any) -> int:
    params = {"child": args.child} if args.child else {}
    with node_errors():
        async with client_for(args) as client:
            reply = await client.call("GET", "/api/escrow", params=params)
    if args.json:
        print(orjson.dumps(reply["children"], option=orjson.OPT_INDENT_2).decode())
        return 0
    if not any(child["archives"] for child in reply["children"]):
        print(f"{args.child} has escrowed no backup here" if args.child else "no child has escrowed a backup here")
        return 0
    for child in reply["children"]:
        print(f"{child['child']}{'  (taken over)' if child['takeover'] else ''}")
        for archive in child["archives"]:
            mark = archive["watermark"] or {}
            counts = archive["counts"]
            line = (f"  {archive['archive']}  {archive['kind'] or '?':<4} {mark.get('from', '?')}..{mark.get('to', '?')}"
                    f"  {counts['records'] if counts['records'] is not None else '?'} records"
                    f"  received {archive['received']}  {archive['status']}")
            if archive["reason"]:
                line += f": {archive['reason']}"
            print(line)
    return 0


async def takeover(args: Any) -> int:
    with node_errors():
        async with client_for(args) as client:
            reply = await client.call("POST", f"/api/escrow/{args.child}/takeover", json={"takeover": args.on})
    if reply["takeover"]:
        restored = reply["restored"] or {}
        print(f"{reply['child']}: taken over, answered from {restored.get('archives', 0)} escrowed archive(s)"
              f" up to watermark {restored.get('watermark')}")
    else:
        print(f"{reply['child']}: takeover off; resolution refers to the child again")
    return 0


def add_parser(client: Callable[..., Any]) -> None:
    """``idnode escrow list|takeover``; ``client(name, help, run)`` (from
    :mod:`scripts.idnode`) makes a command with the common client options."""
    escrow = client("escrow", "at a parent node: list children's escrowed backups; take over a child", None)
    actions = escrow.add_subparsers(dest="escrow_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="the archives escrowed per child, with watermarks and status")
    listing.add_argument("--child", help="only this child prefix")
    listing.add_argument("--json", action="store_true", help="print the reply's JSON")
    listing.set_defaults(run=list_escrow)
    take = actions.add_parser("takeover", help="answer a child's prefix from its escrowed data, or stop")
    take.add_argument("child", help="the child prefix, e.g. 88.118.2")
    switch = take.add_mutually_exclusive_group(required=True)
    switch.add_argument("--on", dest="on", action="store_true", help="restore the newest chain and answer from it")
    switch.add_argument("--off", dest="on", action="store_false", help="refer to the child again")
    take.set_defaults(run=takeover)
