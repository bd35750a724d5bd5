"""What the resolver caches: answers, "not found" answers and delegations.

A :class:`CacheEntry` is one upstream result as it was received, with the
wall-clock time it was stored and the number of seconds it stays fresh.
Wall-clock time (not a monotonic clock) because entries are shared through
Redis between processes. An entry past its freshness may still be served
stale for a while (see :class:`~cache.policy.CachePolicy`), so tiers keep
it until ``expires_at + stale window`` and leave the decision to the
resolver.

Keys: ``h:<handle key>`` for answers and not-found entries of a handle,
``d:<PREFIX>`` for the delegation (the sites of the node serving) a prefix.
The handle key is :attr:`idcore.handle.Handle.key` (prefix upper-cased), so
two spellings of one handle share an entry.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import orjson

#: Version of the serialised form; bumped when it changes, so that processes
#: of different versions sharing one Redis never read each other's entries.
#: 2: the ``escrow`` flag. Version 1 readers would ignore it and serve an
#: escrow copy as the child's own answer, and a version 1 entry cannot vouch
#: that it is not one, so the versions must not share entries.
SCHEMA_VERSION = 2

#: Bytes an entry costs besides its values and reply body, for the
#: in-process byte bound: the entry object, its key and name strings, the
#: memo dictionary and the LRU slot, measured with tracemalloc on CPython
#: 3.11 at about 500 (``scripts/bench_resolver.py`` prints it).
ENTRY_OVERHEAD_BYTES = 512


class EntryKind(enum.IntEnum):
    """What an entry says."""

    ANSWER = 1  #: the record's values (response code 1)
    NOT_FOUND = 2  #: the authoritative node said the handle does not exist (100)
    DELEGATION = 3  #: the sites (HS_SITE values) of the node serving a prefix


def answer_key(handle_key: str) -> str:
    """Cache key of the answer (or not-found entry) for a handle key."""
    return "h:" + handle_key


def delegation_key(prefix: str) -> str:
    """Cache key of the delegation of ``prefix`` (any case)."""
    return "d:" + prefix.upper()


@dataclass(slots=True, eq=False)
class CacheEntry:
    """One cached upstream result.

    Attributes:
        kind: what it says.
        name: the handle as the authoritative node wrote it (ANSWER), as
            asked (NOT_FOUND), or the delegated prefix (DELEGATION).
        values_json: the JSON array of values (``b"[]"`` for NOT_FOUND).
        ttl: seconds the entry is fresh, already clamped by the policy.
        stored_at: wall-clock seconds (``time.time()``) when it was fetched.
        escrow: the answer came from the parent's escrow copy of a node that
            is down (the authoritative reply said ``"escrow": true``), so it
            may be as old as the last backup the parent holds.
        memo: per-process ready-made reply bodies (never serialised).
    """

    kind: EntryKind
    name: str
    values_json: bytes
    ttl: int
    stored_at: float
    escrow: bool = False
    memo: dict[str, bytes] = field(default_factory=dict, repr=False)

    @property
    def expires_at(self) -> float:
        return self.stored_at + self.ttl

    def is_fresh(self, now: float) -> bool:
        return now < self.stored_at + self.ttl

    def remaining(self, now: float) -> float:
        """Seconds of freshness left (negative once expired)."""
        return self.stored_at + self.ttl - now

    @property
    def size(self) -> int:
        """Approximate bytes the entry holds in memory once it has been
        served: its values, and the ready-made reply body (the values again,
        with the handle) the front end keeps in ``memo``."""
        return ENTRY_OVERHEAD_BYTES + 2 * len(self.values_json) + 3 * len(self.name)

    def to_bytes(self) -> bytes:
        """The entry as orjson bytes, for a shared tier. ``escrow`` is
        written only when set (absent means false): nearly every entry is
        not an escrow copy, and a shared tier holds millions of them."""
        obj = {
            "v": SCHEMA_VERSION,
            "kind": int(self.kind),
            "name": self.name,
            "ttl": self.ttl,
            "stored_at": self.stored_at,
            "values": orjson.Fragment(self.values_json),
        }
        if self.escrow:
            obj["escrow"] = True
        return orjson.dumps(obj)

    @classmethod
    def from_bytes(cls, raw: bytes) -> CacheEntry:
        """Parse :meth:`to_bytes` output.

        Raises:
            ValueError: not an entry of this schema version (the caller
                treats it as a miss).
        """
        try:
            obj = orjson.loads(raw)
            if obj["v"] != SCHEMA_VERSION:
                raise ValueError(f"cache entry of schema {obj['v']}, expected {SCHEMA_VERSION}")
            values = obj["values"]
            if not isinstance(values, list):
                raise ValueError("cache entry values must be a list")
            escrow = obj.get("escrow", False)
            if type(escrow) is not bool:
                raise ValueError("cache entry escrow flag must be true or false")
            return cls(
                EntryKind(obj["kind"]),
                str(obj["name"]),
                orjson.dumps(values),
                int(obj["ttl"]),
                float(obj["stored_at"]),
                escrow,
            )
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"not a cache entry: {exc}") from None
