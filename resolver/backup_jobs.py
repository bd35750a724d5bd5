"""The one backup job (create, restore or escrow) a node runs at a time,
for its HTTP API (:mod:`resolver.backup_api`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from idcore.errors import IdnodeError, RequestError, ResponseCode
from registry.backup.folder import BACKUPS_DIR
from registry.node_key import node_key
from registry.read_cache import RecordCache
from registry.sqlite_store import SqliteStore
from registry.store import Store

T = TypeVar("T")
log = logging.getLogger(__name__)


class BackupInProgress(RequestError):
    """Another backup job of this node is running."""

    response_code = ResponseCode.ERROR
    http_status = 409


class NodeBackups:
    """A node's backups: its data folder, database and backups folder, and
    the one backup job it runs at a time.

    Args:
        database: the node's SQLite file; its folder is the data folder.
    """

    def __init__(self, database: Path) -> None:
        self.database = Path(database)
        self.data_dir = self.database.parent
        self.folder = self.data_dir / BACKUPS_DIR
        self._job: tuple[str, asyncio.Task[Any]] | None = None
        self._public: Ed25519PublicKey | None = None

    def node_public(self) -> Ed25519PublicKey:
        """The node's signing key (made on first use, as ``create`` does)."""
        if self._public is None:
            self._public = node_key(self.data_dir).public_key()
        return self._public

    def run(self, what: str, work: Callable[[], Awaitable[T]]) -> Awaitable[T]:
        """Start ``work`` as the node's backup job, described as ``what``;
        await the result. The job runs to its end even when the awaiting
        request is cancelled (a half-written backup or restore helps no one).

        Raises:
            BackupInProgress: another job is running (naming it).
        """
        if self._job is not None:
            raise BackupInProgress(f"{self._job[0]} is in progress; try again once it is done")
        started = time.strftime("%H:%M:%SZ", time.gmtime())
        task = asyncio.ensure_future(work())
        self._job = (f"{what} (started {started})", task)
        task.add_done_callback(self._finished)
        return asyncio.shield(task)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        what = self._job[0] if self._job else "a backup job"
        self._job = None
        if task.cancelled():
            return
        error = task.exception()  # also marks it retrieved when its request went away
        if isinstance(error, IdnodeError):
            log.warning("%s failed: %s", what, error.message)
        elif error is not None:
            log.error("%s failed", what, exc_info=error)

    async def wait(self) -> None:
        """Wait for the running job, if any, to end."""
        if self._job is not None:
            await asyncio.gather(self._job[1], return_exceptions=True)

    async def in_own_store(self, work: Callable[[Store], Awaitable[T]]) -> T:
        """Run ``work`` over a store of its own on the node's database, in a
        thread with its own event loop.

        An archive is encrypted, written and synced part by part right in
        the coroutine that makes it (the library drives it that way for the
        CLI), which would stall this node's requests for as long; its own
        connections read committed data beside the node's, as the CLI does
        from another process. The archive reads each record once, so its
        store caches none.
        """

        async def run() -> T:
            async with SqliteStore(self.database, cache=RecordCache(max_entries=0)) as store:
                return await work(store)

        return await asyncio.to_thread(lambda: asyncio.run(run()))
