"""One digest over all of a node's records, to compare a restored node
with its source: SHA-256 over every record in key order, each as its key,
handle and blob, length-prefixed (so no two record sets collide by
re-splitting)."""

from __future__ import annotations

import hashlib
import struct

from registry.store import Store

#: Records read at once.
DIGEST_BATCH = 10_000

_LEN = struct.Struct(">I")


async def records_digest(store: Store) -> tuple[str, int]:
    """``("sha256:<hex>", number of records)`` over every record."""
    sha = hashlib.sha256()
    count = 0
    after = ""
    while rows := await store.scan_records(after=after, limit=DIGEST_BATCH):
        for key, handle, blob in rows:
            k, h = key.encode(), handle.encode()
            sha.update(b"".join((_LEN.pack(len(k)), k, _LEN.pack(len(h)), h, _LEN.pack(len(blob)), blob)))
        count += len(rows)
        after = rows[-1][0]
    return "sha256:" + sha.hexdigest(), count
