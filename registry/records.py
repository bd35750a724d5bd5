"""How a handle record is kept: a compact encoding, turned into REST JSON
once per record kept in memory.

The stored form is the smallest JSON that keeps everything: one record-level
timestamp, and per value ``[index, type, kind, data]`` plus a dict of what
differs from the defaults (``t`` ttl, ``p`` permissions, ``s`` timestamp,
``r`` references). A typical product record takes a third of the bytes of
its REST JSON, which is what the database, its journal, backups and
mirrors all carry.

:class:`StoredRecord` turns that into the REST API's JSON on first use (with
the one REST encoder, :mod:`idcore.rest_json`) and keeps the result, so a
record served from the store's read cache is encoded once, not per request.
"""

from __future__ import annotations

import base64
from typing import Any, Sequence

import orjson

from idcore.rest_json import bytes_as_text, dumps, value_to_json
from idcore.site import Site
from idcore.pubkey import PublicKey
from idcore.values import (
    DEFAULT_PERMISSIONS,
    AdminPermission,
    AdminRef,
    HandleValue,
    ValueReference,
)
from idcore import limits

# Kinds of data in the stored form.
_TEXT, _BINARY, _ADMIN, _VLIST, _SITE, _KEY = "s", "b", "a", "v", "S", "k"


class StoredRecord:
    """One handle as the store keeps it: its name (as first written) and the
    compact encoding of its values. Immutable; equal when both are equal."""

    __slots__ = ("handle", "blob", "_values_json", "_public_json", "_public_answer")

    def __init__(self, handle: str, blob: bytes) -> None:
        self.handle = handle
        self.blob = blob
        self._values_json: bytes | None = None
        self._public_json: bytes | None = None
        self._public_answer: tuple[str, bytes] | None = None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StoredRecord) and other.handle == self.handle and other.blob == self.blob

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"StoredRecord({self.handle!r}, {len(self.blob)} bytes)"

    @property
    def values_json(self) -> bytes:
        """REST JSON array of every value, in record order."""
        if self._values_json is None:
            self._encode()
        return self._values_json  # type: ignore[return-value]

    @property
    def has_private_values(self) -> bool:
        """True when some value is not publicly readable."""
        return self.public_values_json is not self.values_json

    @property
    def public_values_json(self) -> bytes:
        """REST JSON array of the publicly readable values."""
        if self._public_json is None:
            self._encode()
        return self._public_json  # type: ignore[return-value]

    def public_answer(self, asked: str) -> bytes:
        """The REST API's whole answer to a plain public read of ``asked``
        (``{"responseCode":1,"handle":...,"values":[...]}``), kept for the
        next read: a hot record is answered without building anything.
        ``asked`` is echoed as the Handle server does; the record must have
        public values."""
        answer = self._public_answer
        if answer is None or answer[0] != asked:
            body = b"".join(
                (b'{"responseCode":1,"handle":', dumps(asked), b',"values":', self.public_values_json, b"}")
            )
            answer = self._public_answer = (asked, body)
        return answer[1]

    def _encode(self) -> None:
        values = self.values()
        items = [value_to_json(v) for v in values]
        everything = dumps(items)
        public = [item for item, v in zip(items, values, strict=True) if v.public_read]
        self._public_json = everything if len(public) == len(items) else dumps(public)
        self._values_json = everything

    def values(self) -> list[HandleValue]:
        """The values as objects (for writes and checks)."""
        stamp, packed = orjson.loads(self.blob)
        return [_unpack(p, stamp) for p in packed]


def encode_record(handle: str, values: Sequence[HandleValue], timestamps: Sequence[int] | None = None) -> StoredRecord:
    """The stored form of ``values``; ``timestamps`` (one per value) replace
    the values' own."""
    stamps = [v.timestamp for v in values] if timestamps is None else timestamps
    record_stamp = max(stamps, default=0)
    packed = [_pack(v, s, record_stamp) for v, s in zip(values, stamps, strict=True)]
    return StoredRecord(handle, orjson.dumps([record_stamp, packed]))


def _pack(value: HandleValue, stamp: int, record_stamp: int) -> list[Any]:
    data = value.data
    if isinstance(data, bytes):
        text = bytes_as_text(data)
        out: list[Any] = [value.index, value.type, _TEXT, text] if text is not None else [
            value.index, value.type, _BINARY, base64.b64encode(data).decode("ascii")]
    elif isinstance(data, AdminRef):
        out = [value.index, value.type, _ADMIN, [data.handle, data.index, int(data.permissions)]]
    elif isinstance(data, Site):
        out = [value.index, value.type, _SITE, data.to_json()]
    elif isinstance(data, PublicKey):
        out = [value.index, value.type, _KEY, data.to_json()]
    else:
        out = [value.index, value.type, _VLIST, [[r.handle, r.index] for r in data]]
    extra: dict[str, Any] = {}
    if value.ttl != limits.DEFAULT_TTL_SECONDS:
        extra["t"] = value.ttl
    if value.permissions != DEFAULT_PERMISSIONS:
        extra["p"] = value.permissions
    if stamp != record_stamp:
        extra["s"] = stamp
    if value.references:
        extra["r"] = [[r.handle, r.index] for r in value.references]
    if extra:
        out.append(extra)
    return out


def _unpack(packed: list[Any], record_stamp: int) -> HandleValue:
    index, value_type, kind, data = packed[0], packed[1], packed[2], packed[3]
    extra = packed[4] if len(packed) > 4 else {}
    value: Any
    if kind == _TEXT:
        value = data.encode("utf-8")
    elif kind == _BINARY:
        value = base64.b64decode(data)
    elif kind == _ADMIN:
        value = AdminRef(data[0], data[1], AdminPermission(data[2]))
    elif kind == _SITE:
        value = Site.from_json(data)
    elif kind == _KEY:
        value = PublicKey.from_json(data)
    else:
        value = tuple(ValueReference(h, i) for h, i in data)
    return HandleValue(
        index,
        value_type,
        value,
        ttl=extra.get("t", limits.DEFAULT_TTL_SECONDS),
        permissions=extra.get("p", DEFAULT_PERMISSIONS),
        timestamp=extra.get("s", record_stamp),
        references=tuple(ValueReference(h, i) for h, i in extra.get("r", ())),
    )
