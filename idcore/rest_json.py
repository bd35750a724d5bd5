"""The Handle.Net REST API JSON codec, both ways.

Output follows the CNRI server byte for byte: compact JSON, members in the
server's order (``index``, ``type``, ``data``, ``permissions`` when not
"1110", ``ttl``, ``timestamp`` when known, ``references`` when any), no
HTML escaping, U+2028/U+2029 escaped, timestamps ``YYYY-MM-DDTHH:MM:SSZ``.
The data format on output is chosen by the value's type, as the CNRI server
does: ``admin``, ``vlist``, ``site``, ``key``, else ``string`` for text and
``base64`` for binary data. Input accepts every format Handle clients send,
including ``hex``.
"""

from __future__ import annotations

import base64
import calendar
import datetime
import re
import time
from typing import Any, Iterable

import orjson

from idcore import limits
from idcore.errors import InvalidValue, MalformedRequest
from idcore.pubkey import PublicKey
from idcore.site import Site
from idcore.values import (
    DEFAULT_PERMISSIONS,
    AdminRef,
    HandleValue,
    ValueReference,
    check_record,
    data_class_for,
    json_int,
    type_in_filter,
)

_TIMESTAMP_RE = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.\d+)?Z")

# Bytes that make data "binary" for the CNRI server (Util.looksLikeBinary):
# control characters other than 0x09..0x13, and DEL.
_BINARY_BYTES_RE = re.compile(rb"[\x00-\x08\x14-\x1f\x7f]")


def format_timestamp(seconds: int) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` in UTC, seconds precision."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def parse_timestamp(text: Any) -> int:
    """Seconds since the epoch of a REST timestamp.

    Raises:
        InvalidValue: not of the form ``YYYY-MM-DDTHH:MM:SS[.fff]Z``.
    """
    match = _TIMESTAMP_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidValue(f"timestamp {text!r} is not of the form YYYY-MM-DDTHH:MM:SSZ")
    fields = tuple(int(g) for g in match.groups())
    try:
        datetime.datetime(*fields)  # refuses month 13, day 32, hour 25 ...
    except ValueError as exc:
        raise InvalidValue(f"timestamp {text!r} is not a real time: {exc}") from None
    return calendar.timegm(fields + (0, 0, 0))


def bytes_as_text(data: bytes) -> str | None:
    """``data`` as text when the Handle server would show it as a string
    (valid UTF-8 without binary control bytes), else None (shown as base64)."""
    if _BINARY_BYTES_RE.search(data) is not None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def data_to_json(value: HandleValue) -> dict[str, Any]:
    """The ``data`` member of a value, format chosen by type."""
    data = value.data
    if isinstance(data, bytes):
        text = bytes_as_text(data)
        if text is not None:
            return {"format": "string", "value": text}
        return {"format": "base64", "value": base64.b64encode(data).decode("ascii")}
    if isinstance(data, AdminRef):
        return {"format": "admin", "value": data.to_json()}
    if isinstance(data, Site):
        return {"format": "site", "value": data.to_json()}
    if isinstance(data, PublicKey):
        return {"format": "key", "value": data.to_json()}
    return {"format": "vlist", "value": [ref.to_json() for ref in data]}


def value_to_json(value: HandleValue) -> dict[str, Any]:
    """One value as the REST API shows it."""
    out: dict[str, Any] = {"index": value.index, "type": value.type, "data": data_to_json(value)}
    if value.permissions != DEFAULT_PERMISSIONS:
        out["permissions"] = value.permissions
    out["ttl"] = value.ttl
    if value.timestamp:
        out["timestamp"] = format_timestamp(value.timestamp)
    if value.references:
        out["references"] = [ref.to_json() for ref in value.references]
    return out


def values_to_json(values: Iterable[HandleValue]) -> list[dict[str, Any]]:
    return [value_to_json(v) for v in values]


def filter_values_json(values_json: bytes, types: Iterable[str], indexes: Iterable[int]) -> bytes:
    """Keep the values matching any of ``types`` (REST ``type=`` rules, see
    :func:`~idcore.values.type_in_filter`) or any of ``indexes``: the union,
    as the Handle server filters."""
    types, wanted_indexes = list(types), set(indexes)
    kept = [
        item
        for item in orjson.loads(values_json)
        if item["index"] in wanted_indexes or (types and type_in_filter(item["type"], types))
    ]
    return dumps(kept)


def dumps(obj: Any, *, pretty: bool = False) -> bytes:
    """Serialise like the CNRI server's Gson: compact (or 2-space pretty),
    UTF-8 raw, U+2028/U+2029 escaped."""
    out = orjson.dumps(obj, option=orjson.OPT_INDENT_2) if pretty else orjson.dumps(obj)
    if b"\xe2\x80\xa8" in out or b"\xe2\x80\xa9" in out:
        out = out.replace(b"\xe2\x80\xa8", b"\\u2028").replace(b"\xe2\x80\xa9", b"\\u2029")
    return out


def loads(body: bytes | str, *, what: str = "request body") -> Any:
    """Parse JSON, turning a syntax error into a MalformedRequest that says where."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest(f"{what} is not valid JSON: {exc}") from None


def value_from_json(obj: Any) -> HandleValue:
    """Parse one value as a Handle client sends or a node answers it.

    Raises:
        InvalidValue: naming the value's index and the member that is wrong.
    """
    if type(obj) is not dict:
        raise InvalidValue(f"a handle value must be an object, not {_json_kind(obj)}")
    index = obj.get("index")
    if type(index) is not int:
        index = json_int(index)
        if type(index) is not int:
            raise InvalidValue(f"value index {index!r} must be an integer", index=index)
    value_type = obj.get("type")
    if type(value_type) is not str:
        raise InvalidValue(f"value {index}: 'type' must be text", index=index)
    data = obj.get("data", _MISSING)
    if type(data) is str and data_class_for(value_type) is bytes:
        payload: Any = data.encode("utf-8")  # the common case: plain text
    elif data is _MISSING:
        raise InvalidValue(f"value {index}: 'data' is missing", index=index)
    else:
        payload = _data_from_json(index, value_type, data)
    ttl = obj.get("ttl", limits.DEFAULT_TTL_SECONDS)
    if type(ttl) is not int:
        ttl = json_int(ttl)
        if type(ttl) is not int:
            raise InvalidValue(f"value {index}: ttl {ttl!r} must be whole seconds (absolute TTLs are not supported)", index=index)
    permissions = obj.get("permissions", DEFAULT_PERMISSIONS)
    if type(permissions) is not str:
        raise InvalidValue(f"value {index}: permissions must be a string such as \"1110\"", index=index)
    timestamp = obj.get("timestamp")
    seconds = 0 if timestamp is None else parse_timestamp(timestamp)
    references = obj.get("references") or ()
    if references:
        if type(references) is not list:
            raise InvalidValue(f"value {index}: 'references' must be a list", index=index)
        references = tuple(ValueReference.from_json(r, what=f"value {index} reference") for r in references)
    return HandleValue(
        index, value_type, payload, ttl=ttl, permissions=permissions, timestamp=seconds, references=references
    )


_MISSING = object()


def values_from_json(items: Any) -> list[HandleValue]:
    """Parse a list of values and check the record rules (unique indexes, count)."""
    if not isinstance(items, list):
        raise InvalidValue(f"'values' must be a list, not {_json_kind(items)}")
    if len(items) > limits.MAX_VALUES_PER_HANDLE:
        raise InvalidValue(
            f"{len(items)} values; the limit is {limits.MAX_VALUES_PER_HANDLE} per handle",
            limit="MAX_VALUES_PER_HANDLE",
        )
    values = [value_from_json(item) for item in items]
    check_record(values)
    return values


def values_from_put_body(body: Any) -> tuple[list[HandleValue], str | None]:
    """The values of a PUT body and the handle it names, if it names one.

    Accepts the three shapes Handle clients send: ``{"values": [...]}``
    (optionally with ``"handle"``), a bare list of values, or one value.

    Raises:
        MalformedRequest: none of those shapes.
        InvalidValue: a value is malformed.
    """
    if isinstance(body, list):
        return values_from_json(body), None
    if isinstance(body, dict):
        if "values" in body:
            handle = body.get("handle")
            if handle is not None and not isinstance(handle, str):
                raise MalformedRequest("'handle' in the body must be text")
            return values_from_json(body["values"]), handle
        if {"index", "type", "data"} <= body.keys():
            return values_from_json([body]), None
    raise MalformedRequest(
        "body must be {\"values\": [...]}, a list of values, or one value with index, type and data"
    )


def _data_from_json(index: int, value_type: str, data: Any) -> Any:
    if isinstance(data, str):
        fmt, raw = "string", data
    elif isinstance(data, dict) and isinstance(data.get("format"), str) and "value" in data:
        fmt, raw = data["format"].lower(), data["value"]
    else:
        raise InvalidValue(
            f"value {index}: 'data' must be text or {{\"format\": ..., \"value\": ...}}", index=index
        )
    structured = _structured_format(value_type)
    if structured is not None:
        if fmt != structured:
            raise InvalidValue(f"value {index}: {value_type} data must have format '{structured}', not '{fmt}'", index=index)
        if fmt == "admin":
            return AdminRef.from_json(raw)
        if fmt == "site":
            return Site.from_json(raw)
        if fmt == "key":
            return PublicKey.from_json(raw)
        if not isinstance(raw, list):
            raise InvalidValue(f"value {index}: HS_VLIST data must be a list of references", index=index)
        return tuple(ValueReference.from_json(r, what=f"value {index} list entry") for r in raw)
    return _generic_data(index, value_type, fmt, raw)


_STRUCTURED_FORMATS = {AdminRef: "admin", tuple: "vlist", Site: "site", PublicKey: "key"}


def _structured_format(value_type: str) -> str | None:
    return _STRUCTURED_FORMATS.get(data_class_for(value_type))


def _generic_data(index: int, value_type: str, fmt: str, raw: Any) -> bytes:
    if fmt not in _GENERIC_FORMATS:
        raise InvalidValue(
            f"value {index}: format '{fmt}' is not one of string, base64, hex"
            f" (admin, vlist, site and key belong to their HS_ types)",
            index=index,
        )
    if not isinstance(raw, str):
        raise InvalidValue(f"value {index}: data value for format '{fmt}' must be text", index=index)
    if fmt == "string":
        return raw.encode("utf-8")
    if fmt == "base64":
        try:
            return base64.b64decode(raw, validate=True)
        except ValueError:  # binascii.Error, or non-ASCII text
            raise InvalidValue(f"value {index}: data is not valid base64", index=index) from None
    try:
        return bytes.fromhex(raw)
    except ValueError:
        raise InvalidValue(f"value {index}: data is not valid hex", index=index) from None


_GENERIC_FORMATS = ("string", "base64", "hex")


def _json_kind(obj: Any) -> str:
    return {dict: "an object", list: "a list", str: "text", bool: "a boolean", type(None): "null"}.get(
        type(obj), "a number"
    )
