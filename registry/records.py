"""How a handle record is kept: ready-to-serve JSON, encoded once per write.

A stored record holds the handle as first written and its values as the
REST API's JSON array, twice where it matters: every value (for
administrators) and only the publicly readable ones (for everyone else).
Reads then cost no encoding at all; writes pay for it once.
"""

from __future__ import annotations

from typing import NamedTuple

import orjson

from idcore.rest_json import dumps, value_from_json, value_to_json
from idcore.values import HandleValue


class StoredRecord(NamedTuple):
    """One handle as the store keeps it.

    Attributes:
        handle: the handle text as it was created (prefix case as written).
        values_json: JSON array of every value, in record order.
        public_json: JSON array of the publicly readable values, or None when
            that is every value (the common case, stored once).
    """

    handle: str
    values_json: bytes
    public_json: bytes | None

    @property
    def public_values_json(self) -> bytes:
        return self.values_json if self.public_json is None else self.public_json


def encode_record(handle: str, values: list[HandleValue]) -> StoredRecord:
    """Encode ``values`` for storage."""
    items = [value_to_json(v) for v in values]
    everything = dumps(items)
    if all(v.public_read for v in values):
        return StoredRecord(handle, everything, None)
    public = dumps([item for item, v in zip(items, values) if v.public_read])
    return StoredRecord(handle, everything, public)


def decode_values(record: StoredRecord) -> list[HandleValue]:
    """The values of a stored record as objects (for writes and checks)."""
    return [value_from_json(item) for item in orjson.loads(record.values_json)]
