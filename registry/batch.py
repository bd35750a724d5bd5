"""Batch registration: NDJSON operations in, one result per line out.

Each input line is one JSON object::

    {"op": "create", "handle": "88.118.2/PRD-1", "values": [...]}
    {"op": "put",    "handle": "...", "values": [...]}     create or replace
    {"op": "update", "handle": "...", "values": [...]}     add/replace these indexes
    {"op": "delete", "handle": "..."}                      the whole handle
    {"op": "delete", "handle": "...", "index": [2, 3]}     just these values

``op`` defaults to ``create``. A ``create`` of a handle that already holds
the same values succeeds with status ``unchanged``, so a batch can be sent
again after an interruption. Each result line is
``{"line": N, "responseCode": 1, "handle": ..., "status": ...}`` or, for a
refused line, ``{"line": N, "responseCode": C, "message": ..., "handle": ...}``;
one bad line never stops the others.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from idcore import handle as handle_syntax
from idcore import limits
from idcore.errors import IdnodeError, MalformedRequest, RequestTooLarge
from idcore.handle import Handle
from idcore.rest_json import values_from_json
from idcore.values import HandleValue
from registry import writes
from registry.store import Txn
from registry.writes import WriteContext

OPS = ("create", "put", "update", "delete")


class BatchOp(NamedTuple):
    """One parsed input line."""

    line: int
    op: str
    handle: Handle
    values: list[HandleValue]
    indexes: list[int]


class BatchLineError(NamedTuple):
    """An input line refused before it reached the store."""

    line: int
    error: IdnodeError
    handle: str | None


def parse_line(line: int, raw: bytes) -> BatchOp | BatchLineError:
    """Parse input line number ``line`` (1-based); never raises."""
    handle_text = None
    try:
        if len(raw) > limits.MAX_BATCH_LINE_BYTES:
            raise RequestTooLarge(f"line is {len(raw)} bytes; the limit is {limits.MAX_BATCH_LINE_BYTES}")
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise MalformedRequest(f"line is not valid JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise MalformedRequest("line must be a JSON object with 'op' and 'handle'")
        handle_text = obj.get("handle")
        if not isinstance(handle_text, str):
            raise MalformedRequest("line needs a 'handle' string")
        op = obj.get("op", "create")
        if op not in OPS:
            raise MalformedRequest(f"'op' must be one of {', '.join(OPS)}, not {op!r}")
        handle = handle_syntax.parse(handle_text)
        values: list[HandleValue] = []
        indexes: list[int] = []
        if op == "delete":
            if "index" in obj:  # only these values; present but empty must not mean "everything"
                indexes = obj["index"]
                if (
                    not isinstance(indexes, list)
                    or not indexes
                    or not all(type(i) is int and 0 < i <= limits.MAX_VALUE_INDEX for i in indexes)
                ):
                    raise MalformedRequest("'index' must be a non-empty list of value indexes")
        else:
            if "values" not in obj:
                raise MalformedRequest(f"'{op}' needs 'values'")
            values = values_from_json(obj["values"])
        return BatchOp(line, op, handle, values, indexes)
    except IdnodeError as exc:
        return BatchLineError(line, exc, handle_text if isinstance(handle_text, str) else None)
    except Exception as exc:  # a parser we rely on refused in its own way; the line is still only malformed
        error = MalformedRequest(f"line cannot be read: {exc}")
        return BatchLineError(line, error, handle_text if isinstance(handle_text, str) else None)


def apply(txn: Txn, ctx: WriteContext, items: list[BatchOp | BatchLineError]) -> list[dict[str, Any]]:
    """Apply parsed lines in order inside one transaction; one result each.

    A refused operation writes nothing and does not affect the others.
    """
    txn.prefetch(item.handle.key for item in items if isinstance(item, BatchOp))
    results = []
    for item in items:
        if isinstance(item, BatchLineError):
            results.append(_error(item.line, item.error, item.handle))
            continue
        try:
            outcome = _run(txn, ctx, item)
        except IdnodeError as exc:
            results.append(_error(item.line, exc, item.handle.to_text()))
            continue
        results.append({"line": item.line, "responseCode": 1, "handle": outcome.handle, "status": outcome.status})
    return results


def _run(txn: Txn, ctx: WriteContext, item: BatchOp) -> writes.WriteResult:
    if item.op == "create":
        return writes.create(txn, ctx, item.handle, item.values, idempotent=True)
    if item.op == "put":
        return writes.put(txn, ctx, item.handle, item.values)
    if item.op == "update":
        return writes.add_values(txn, ctx, item.handle, item.values, overwrite=True)
    if item.indexes:
        return writes.remove_values(txn, ctx, item.handle, item.indexes)
    return writes.delete(txn, ctx, item.handle)


def _error(line: int, error: IdnodeError, handle: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"line": line, "responseCode": error.response_code, "message": error.message}
    if handle is not None:
        out["handle"] = handle
    return out
