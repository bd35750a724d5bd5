"""Escrow at a parent node: the backups its children upload, kept, checked
and listed per child, and answered from in takeover mode (issue 5, part 3).

Children encrypt escrow backups for the parent's own recipient key
(:meth:`Escrow.recipient_key`, created on first use in the data folder), so
the parent can check every part on receipt and, when a child is
unreachable, restore the child's latest FULL and the DIFFs after it into a
store of its own (``escrow/<child>/takeover.sqlite3``) and answer for the
child's prefix from it.

Layout under ``<data>/escrow/<child>/``: one folder per archive, as
``idnode backup create`` writes it, plus ``escrow.json`` (what the parent
recorded on receipt: time, size, status and why); ``<archive>.upload`` and
``<archive>.partial`` while an upload is received. An archive folder appears
under its final name only once it is whole and its status is recorded, and
is listed only while ``escrow.json`` is in it (removed first when it is
deleted), so a crash at any point leaves nothing half-listed; whatever a
crash left over is removed when the escrow is next opened.

Retention: after each upload, only the newest :data:`KEEP_FULL_BACKUPS`
intact FULLs are kept (newest by when the child made them, not by
watermark: a child rebuilt from scratch starts its journal again), with the
DIFFs made after the oldest of them; and at most :data:`KEEP_BAD_ARCHIVES`
archives that failed their checks (the newest, for the operator to look
at). The archive just received is never deleted.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tarfile
import threading
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from idcore.errors import IdnodeError, InvalidHandle, RequestError
from idcore.handle import Handle, check_prefix, prefix_handle
from idcore.values import HandleValue, ValueReference, ValueType
from registry.backup.archive import MANIFEST_NAME, SIGNATURE_NAME, read_manifest
from registry.backup.errors import BackupError
from registry.backup.manifest import DIFF, FULL, Manifest
from registry.backup.restore import restore_archives
from registry.backup.verify import verify_archive
from registry.node_key import (
    KeyFileError,
    load_recipient_private,
    private_pem,
    write_private,
)
from registry.service import Registry, Resolution
from registry.sqlite_store import SqliteStore

log = logging.getLogger(__name__)

#: Folder of the data folder escrowed archives live in.
ESCROW_DIR = "escrow"

#: The parent's escrow recipient key (X25519, PKCS#8 PEM, mode 0600), in its
#: data folder beside ``node_key.pem``.
RECIPIENT_KEY_NAME = "escrow_recipient_key.pem"

#: What the parent records per archive, inside the archive's folder.
STATUS_NAME = "escrow.json"

#: Children in takeover mode, kept across restarts.
TAKEOVER_NAME = "takeover.json"

#: The store a taken-over child's records are restored into.
TAKEOVER_STORE_NAME = "takeover.sqlite3"

#: Largest upload accepted (bytes of the tar stream): an archive is its
#: records' size plus a little, so this bounds the disk one upload can take;
#: a child with more data raises it in the parent's settings.
MAX_UPLOAD_BYTES = 8 * 1024**3

#: Part files an archive may hold: more would be a 64 TiB archive at the
#: default volume size, so a larger count is an attack on the file table.
MAX_ARCHIVE_FILES = 10_000

#: Intact FULL backups kept per child (each with the DIFFs that follow it):
#: the newest restores the child; older ones are for a child whose newest
#: data turned out wrong. Older FULLs and their DIFFs are deleted.
KEEP_FULL_BACKUPS = 3

#: Archives that failed their checks kept per child, newest first: enough
#: to see what the child keeps sending, bounded so a broken child cannot
#: fill the parent's disk with them.
KEEP_BAD_ARCHIVES = 5

#: Archive names: what ``create_backup`` makes, and anything else as plain
#: (no path, no hidden files, bounded length).
_ARCHIVE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_PART_NAME = re.compile(r"records-[0-9]{4,}\.ndjson\.enc")
_WORK_SUFFIXES = (".upload", ".partial")

OK = "ok"
BAD = "bad"


class EscrowConflict(RequestError):
    """An archive of that name is already escrowed (with other contents),
    or is being received right now."""

    http_status = 409


@dataclass(frozen=True, slots=True)
class EscrowEntry:
    """One escrowed archive as the parent recorded it on receipt.

    ``kind`` and the counts are None when the manifest could not be read
    (a ``bad`` archive); ``reason`` says why an archive is ``bad``.
    """

    child: str
    archive: str
    status: str
    received: str
    size: int
    reason: str | None = None
    kind: str | None = None
    watermark_from: int | None = None
    watermark_to: int | None = None
    records: int | None = None
    deleted: int | None = None
    parts: int | None = None
    prefixes: tuple[str, ...] = ()
    created: str | None = None
    node_key: str | None = None

    def to_json(self) -> dict[str, Any]:
        watermark = None if self.watermark_from is None else {"from": self.watermark_from, "to": self.watermark_to}
        return {
            "child": self.child, "archive": self.archive, "kind": self.kind.upper() if self.kind else None,
            "watermark": watermark, "counts": {"records": self.records, "deleted": self.deleted, "parts": self.parts},
            "prefixes": list(self.prefixes), "created": self.created, "received": self.received, "size": self.size,
            "status": self.status, "reason": self.reason, "nodeKey": self.node_key,
        }

    @classmethod
    def from_json(cls, child: str, archive: str, body: dict[str, Any]) -> EscrowEntry:
        fields = {k: body.get(k) for k in ("reason", "kind", "watermark_from", "watermark_to", "records", "deleted",
                                            "parts", "created", "node_key")}
        return cls(child, archive, body["status"], body["received"], int(body["size"]),
                   prefixes=tuple(body.get("prefixes") or ()), **fields)

    def status_bytes(self) -> bytes:
        body = {k: getattr(self, k) for k in self.__slots__ if k not in ("child", "archive")}
        return orjson.dumps(body, option=orjson.OPT_INDENT_2) + b"\n"


def check_child(child: str) -> str:
    """``child`` as a prefix (``0.NA/`` allowed), or InvalidHandle."""
    prefix = child.split("/", 1)[1] if child.upper().startswith("0.NA/") else child
    check_prefix(prefix)
    return prefix


def check_archive_name(name: str) -> str:
    if not _ARCHIVE_NAME.fullmatch(name) or name.endswith(_WORK_SUFFIXES) or name in (TAKEOVER_STORE_NAME,):
        raise InvalidHandle(f"archive name {name!r} is not a plain name (letters, digits, . _ -, at most 200)")
    return name


def under(prefix: str, ancestor: str) -> bool:
    """Whether ``prefix`` is ``ancestor`` or lies below it."""
    p, a = prefix.upper(), ancestor.upper()
    return p == a or p.startswith(a + ".")


def child_identity(child: str, index: int = 300) -> ValueReference:
    """The identity a child authenticates with at its parent: a key in the
    parent's delegation record ``0.NA/<child>``."""
    return ValueReference(prefix_handle(child).to_text(), index)


async def grant_child_identity(
    registry: Registry, child: str, secret: bytes, admin: ValueReference, *, index: int = 300
) -> ValueReference:
    """Put an HS_SECKEY at ``index`` of the parent's delegation record for
    ``child`` (written as ``admin``), so the child can authenticate as
    ``index:0.NA/<child>``; returns that identity."""
    value = HandleValue(index, ValueType.HS_SECKEY, secret)
    await registry.add_values(prefix_handle(child), [value], admin)
    return child_identity(child, index)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Escrow:
    """The escrow of one parent node, over ``<data_dir>/escrow``.

    Args:
        data_dir: the parent's data folder (its recipient key is kept there).
        max_upload_bytes: largest upload accepted.
    """

    def __init__(self, data_dir: Path, *, max_upload_bytes: int = MAX_UPLOAD_BYTES) -> None:
        self.data_dir = Path(data_dir)
        self.folder = self.data_dir / ESCROW_DIR
        self.max_upload_bytes = max_upload_bytes
        self._recipient: X25519PrivateKey | None = None
        self._receiving: set[tuple[str, str]] = set()
        self._takeover: dict[str, Registry | None] = {p.upper(): None for p in self._load_takeover()}
        self._takeover_display: dict[str, str] = {p.upper(): p for p in self._load_takeover()}
        self._stacks: dict[str, AsyncExitStack] = {}
        # receive() runs in worker threads, one per upload: pruning one
        # child's archives must not interleave with another's
        self._prune_lock = threading.Lock()
        self._remove_leftovers()

    # --- the recipient key ---------------------------------------------------

    def recipient_key(self) -> X25519PrivateKey:
        """The parent's escrow recipient key, created on first use."""
        if self._recipient is None:
            path = self.data_dir / RECIPIENT_KEY_NAME
            if not path.exists():
                self.data_dir.mkdir(parents=True, exist_ok=True)
                try:
                    write_private(path, private_pem(X25519PrivateKey.generate()), exclusive=True)
                except KeyFileError:
                    pass  # another process made it first: use that one
            self._recipient = load_recipient_private(path)
        return self._recipient

    # --- receiving -----------------------------------------------------------

    def child_folder(self, child: str) -> Path:
        return self.folder / check_child(child).upper()

    def begin(self, child: str, archive: str) -> Path:
        """Reserve ``archive`` of ``child`` for an upload; the path to write
        the tar stream to. Call :meth:`receive` or :meth:`abandon` after.

        Raises:
            EscrowConflict: it is being received now.
        """
        key = (check_child(child).upper(), check_archive_name(archive))
        if key in self._receiving:
            raise EscrowConflict(f"{archive} of {child} is being uploaded right now")
        self._receiving.add(key)
        folder = self.child_folder(child)
        folder.mkdir(parents=True, exist_ok=True)
        return folder / (archive + ".upload")

    def abandon(self, child: str, archive: str) -> None:
        key = (check_child(child).upper(), archive)
        self._receiving.discard(key)
        (self.child_folder(child) / (archive + ".upload")).unlink(missing_ok=True)
        shutil.rmtree(self.child_folder(child) / (archive + ".partial"), ignore_errors=True)

    def receive(self, child: str, archive: str, size: int) -> tuple[EscrowEntry, bool]:
        """Unpack the uploaded tar, check the archive and record its status
        (blocking: run it in a thread). Returns the entry and whether it is
        new (False: the same archive was escrowed before).

        Raises:
            EscrowConflict: another archive of that name is escrowed.
        """
        try:
            folder = self.child_folder(child)
            upload, partial, final = (folder / (archive + s) for s in (".upload", ".partial", ""))
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir()
            reason = _unpack(upload, partial)
            if final.exists():
                if reason is None and _same(partial, final):
                    return self._entry(check_child(child), final), False
                raise EscrowConflict(f"{archive} of {child} is already escrowed with other contents")
            entry = self._check(check_child(child), archive, partial, size, reason)
            (partial / STATUS_NAME).write_bytes(entry.status_bytes())
            os.replace(partial, final)
        finally:
            self.abandon(child, archive)
        self.prune(child, keep=archive)
        return entry, True

    def _check(self, child: str, archive: str, folder: Path, size: int, reason: str | None) -> EscrowEntry:
        manifest: Manifest | None = None
        if reason is None:
            try:
                manifest = read_manifest(folder)
                verify_archive(folder, self.recipient_key())
                strays = [p for p in manifest.prefixes if not under(p, child)]
                if strays:
                    reason = f"the archive claims prefixes outside {child}: {', '.join(strays)}"
            except BackupError as exc:
                reason = exc.message
        status = OK if reason is None else BAD
        if manifest is None:
            return EscrowEntry(child, archive, status, _now(), size, reason)
        return EscrowEntry(
            child, archive, status, _now(), size, reason, manifest.kind, manifest.watermark_from,
            manifest.watermark_to, manifest.records, manifest.deleted, len(manifest.parts), manifest.prefixes,
            manifest.created, manifest.node_fingerprint,
        )

    # --- retention -----------------------------------------------------------

    def prune(self, child: str, *, keep: str | None = None) -> list[str]:
        """Apply the retention rules to ``child``'s archives (blocking);
        the names of the archives deleted. ``keep`` (the archive just
        received) is never deleted.

        Kept: the newest :data:`KEEP_FULL_BACKUPS` intact FULLs, every
        intact DIFF made at or after the oldest of them, and the newest
        :data:`KEEP_BAD_ARCHIVES` bad archives.
        """
        with self._prune_lock:
            entries = self.entries(child)
            fulls = sorted((e for e in entries if e.status == OK and e.kind == FULL), key=_newest_first, reverse=True)
            doomed: list[EscrowEntry] = []
            if len(fulls) > KEEP_FULL_BACKUPS:
                oldest_kept = _newest_first(fulls[KEEP_FULL_BACKUPS - 1])
                doomed += fulls[KEEP_FULL_BACKUPS:]
                # a DIFF made before the oldest kept FULL follows none of them
                doomed += [e for e in entries if e.status == OK and e.kind == DIFF and _newest_first(e) < oldest_kept]
            bad = sorted((e for e in entries if e.status != OK), key=lambda e: (e.received, e.archive), reverse=True)
            doomed += bad[KEEP_BAD_ARCHIVES:]
            doomed = [e for e in doomed if e.archive != keep]
            folder = self.child_folder(child)
            for entry in doomed:
                _delete_archive(folder / entry.archive)
        if doomed:
            log.info("escrow: deleted %d old archive(s) of %s: %s", len(doomed), child,
                     ", ".join(e.archive for e in doomed))
        return [e.archive for e in doomed]

    def _remove_leftovers(self) -> None:
        """Delete what a crash left: uploads and unpacked archives never
        recorded, archives whose deletion stopped part way."""
        if not self.folder.exists():
            return
        for child in self.folder.iterdir():
            if not child.is_dir():
                continue
            for path in child.iterdir():
                if path.name.endswith(_WORK_SUFFIXES) or (path.is_dir() and not (path / STATUS_NAME).exists()):
                    log.info("escrow: removing %s, left by an interrupted upload or deletion", path)
                    if path.is_dir():
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        path.unlink(missing_ok=True)

    # --- listing -------------------------------------------------------------

    def children(self) -> list[str]:
        if not self.folder.exists():
            return []
        return sorted(p.name for p in self.folder.iterdir() if p.is_dir())

    def entries(self, child: str) -> list[EscrowEntry]:
        """Every archive escrowed for ``child``, in watermark order."""
        prefix = check_child(child)
        folder = self.child_folder(prefix)
        if not folder.exists():
            return []
        out = []
        for path in folder.iterdir():
            try:
                out.append(self._entry(prefix, path))
            except (FileNotFoundError, NotADirectoryError):
                continue  # not an archive, not yet recorded, or being deleted right now
        return sorted(out, key=lambda e: (e.watermark_from or 0, e.watermark_to or 0, e.kind != FULL, e.archive))

    def _entry(self, child: str, folder: Path) -> EscrowEntry:
        return EscrowEntry.from_json(child, folder.name, orjson.loads((folder / STATUS_NAME).read_bytes()))

    def restore_chain(self, child: str) -> list[Path]:
        """The newest ``ok`` FULL of ``child`` and the unbroken run of ``ok``
        DIFFs after it (each step the one reaching furthest).

        Raises:
            EscrowUnavailable: no ``ok`` FULL is escrowed.
        """
        good = [e for e in self.entries(child) if e.status == OK]
        fulls = [e for e in good if e.kind == FULL]
        if not fulls:
            raise EscrowUnavailable(f"no intact FULL backup of {child} is escrowed here", handle=child)
        full = max(fulls, key=_newest_first)
        chain, mark = [full], full.watermark_to
        while True:
            nexts = [e for e in good if e.kind == DIFF and e.watermark_from == mark and e.watermark_to > mark]
            if not nexts:
                break
            step = max(nexts, key=lambda e: e.watermark_to)
            chain.append(step)
            mark = step.watermark_to
        folder = self.child_folder(child)
        return [folder / e.archive for e in chain]

    # --- takeover ------------------------------------------------------------

    @property
    def takeover(self) -> tuple[str, ...]:
        """The children this node answers for from escrow."""
        return tuple(sorted(self._takeover_display.values()))

    @property
    def active(self) -> bool:
        return bool(self._takeover)

    async def set_takeover(self, child: str, on: bool) -> list[Manifest]:
        """Turn takeover of ``child`` on (restoring its escrowed chain afresh)
        or off. Returns the manifests restored.

        Raises:
            EscrowUnavailable: on, but nothing intact to restore.
            BackupError: the chain fails its checks while restored.
        """
        prefix = check_child(child)
        key = prefix.upper()
        await self._close_child(key)
        applied: list[Manifest] = []
        if on:
            applied = await self._open_child(prefix)
            self._takeover_display[key] = prefix
        else:
            self._takeover.pop(key, None)
            self._takeover_display.pop(key, None)
        self._save_takeover()
        return applied

    def taken_over(self, handle: Handle) -> str | None:
        """The taken-over child whose namespace ``handle`` lies in, if any."""
        if not self._takeover:
            return None
        namespace = handle.suffix if handle.is_prefix_handle else handle.prefix
        for key in self._takeover:
            if under(namespace, key):
                return key
        return None

    async def resolve(self, handle: Handle, child_key: str) -> Resolution:
        """Resolve ``handle`` from the escrowed records of the taken-over
        child (restored on first use after a restart)."""
        registry = self._takeover.get(child_key)
        if registry is None:
            await self._open_child(self._takeover_display[child_key])
            registry = self._takeover[child_key]
            assert registry is not None
        return await registry.resolve(handle)

    async def _open_child(self, prefix: str) -> list[Manifest]:
        key = prefix.upper()
        chain = self.restore_chain(prefix)
        path = self.child_folder(prefix) / TAKEOVER_STORE_NAME
        for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            stale.unlink(missing_ok=True)
        stack = AsyncExitStack()
        try:
            # rebuilt from escrow whenever takeover starts: durability buys nothing here
            store = await stack.enter_async_context(SqliteStore(path, synchronous="NORMAL"))
            applied = await restore_archives(store, chain, self.recipient_key())
            registry = Registry(store)
            await registry.open()
        except BaseException:
            await stack.aclose()
            raise
        self._stacks[key] = stack
        self._takeover[key] = registry
        return applied

    async def _close_child(self, key: str) -> None:
        stack = self._stacks.pop(key, None)
        if key in self._takeover:
            self._takeover[key] = None
        if stack is not None:
            await stack.aclose()

    async def close(self) -> None:
        for key in list(self._stacks):
            await self._close_child(key)

    def _load_takeover(self) -> list[str]:
        try:
            return list(orjson.loads((self.folder / TAKEOVER_NAME).read_bytes()))
        except FileNotFoundError:
            return []

    def _save_takeover(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = self.folder / (TAKEOVER_NAME + ".partial")
        partial.write_bytes(orjson.dumps(sorted(self._takeover_display.values())))
        os.replace(partial, self.folder / TAKEOVER_NAME)


class EscrowUnavailable(IdnodeError):
    """Nothing intact is escrowed to answer from."""

    http_status = 409


def _unpack(upload: Path, folder: Path) -> str | None:
    """Extract the tar ``upload`` into ``folder``: only the archive's plain
    files. Returns why it is not an archive, or None."""
    seen: set[str] = set()
    try:
        with tarfile.open(upload, "r:") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if not member.isfile() or "/" in name or name in seen or not (
                    name in (MANIFEST_NAME, SIGNATURE_NAME) or _PART_NAME.fullmatch(name)
                ):
                    return f"the upload holds {member.name!r}, which is not a file of a backup archive"
                seen.add(name)
                if len(seen) > MAX_ARCHIVE_FILES:
                    return f"the upload holds more than {MAX_ARCHIVE_FILES} files"
                source = tar.extractfile(member)
                assert source is not None
                with source, open(folder / name, "wb") as out:
                    shutil.copyfileobj(source, out, 1024 * 1024)
    except (tarfile.TarError, EOFError) as exc:
        return f"the upload is not a readable tar stream: {exc}"
    if MANIFEST_NAME not in seen or SIGNATURE_NAME not in seen:
        return f"the upload lacks {MANIFEST_NAME} or {SIGNATURE_NAME}"
    return None


def _newest_first(entry: EscrowEntry) -> tuple[str, str, int]:
    """Sort key of archives by when the child made them (then received,
    then watermark): a child rebuilt from scratch starts its journal again,
    so a lower watermark can be the newer state."""
    return (entry.created or "", entry.received, entry.watermark_to or 0)


def _delete_archive(folder: Path) -> None:
    """Delete an archive folder: its status first, so it is never listed
    while half deleted (what a crash leaves is removed on the next start)."""
    (folder / STATUS_NAME).unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)


def _same(a: Path, b: Path) -> bool:
    try:
        return (a / MANIFEST_NAME).read_bytes() == (b / MANIFEST_NAME).read_bytes()
    except OSError:
        return False
