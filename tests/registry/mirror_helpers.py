"""What the mirror tests share: an in-process journal feed and a snapshot
of every record a store holds."""

from __future__ import annotations

import orjson

from idcore.errors import UpstreamUnavailable
from registry.mirror import JournalPage
from registry.service import Registry
from registry.store import Store
from resolver.journal_api import journal_page


class LocalFeed:
    """The primary's ``GET /api/journal`` without HTTP (but through its JSON),
    with a switch that makes the primary unreachable."""

    def __init__(self, primary: Registry) -> None:
        self.primary = primary
        self.down = False
        self.pages = 0

    async def fetch(self, after: int, limit: int) -> JournalPage:
        if self.down:
            raise UpstreamUnavailable("cannot reach the primary: connection refused")
        self.pages += 1
        return JournalPage.from_json(orjson.loads(orjson.dumps(await journal_page(self.primary, after, limit))))


async def snapshot(store: Store) -> dict[str, tuple[str, bytes]]:
    """Every record of ``store`` (homed prefixes' handles and prefix records)
    as ``key -> (handle, blob)``, with its homed prefixes under ``"homed"``."""
    out: dict[str, tuple[str, bytes]] = {}
    for namespace in [*await store.homed_prefixes(), "0.NA"]:
        for key, _ in await store.list_handles(namespace, limit=10**7):
            record = await store.get(key)
            assert record is not None
            out[key] = (record.handle, record.blob)
    out["homed"] = (",".join(sorted(p.upper() for p in await store.homed_prefixes())), b"")
    return out
