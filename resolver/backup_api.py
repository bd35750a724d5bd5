"""The authoritative node's backups over HTTP: what ``idnode backup`` does
from the command line, for the node that is running (issue 5, part 3).

- ``POST /api/backups`` ``{"kind": "full"|"diff", "recipient": "<X25519
  public key PEM>", "volumeBytes": n}``: write an archive into
  ``<data>/backups/``; 201 with its description. A DIFF follows the last
  backup the CLI or this API made of the node (they share
  ``backup-state.json``).
- ``GET /api/backups``: every archive there, each manifest's signature
  checked against the node's own key; one that fails is listed with its
  ``error``, not left out.
- ``GET /api/backups/{name}``: the archive as a tar (``application/x-tar``)
  in the escrow upload format: unpack it into a folder to verify or restore
  it, or upload it to a parent's escrow as it is.
- ``POST /api/backups/{name}/verify``: check it (see :func:`post_verify`).
- ``POST /api/backups/restore`` ``{"archives": [names], "recipientKey":
  PEM, "signerPub": PEM}``: restore a FULL and its DIFFs from the backups
  folder into this node, which must be empty.
- ``POST /api/backups/escrow`` ``{"parent": URL, "secret": ..., "kind",
  "prefix", "identity", "volumeBytes"}``: back up for the parent's escrow
  key and upload it there, as ``idnode backup escrow`` does.

Access: an archive holds every record of the node, as the journal feed
does, so every endpoint is authorised like the feed
(:func:`~resolver.journal_api.check_feed_access`: an administrator of a
homed prefix with list and read rights, or any caller on loopback). An
empty node has no administrator, so only loopback can restore into it.
A request carrying a private key or secret (``recipientKey``, the escrow
``secret``) is refused with 403 over plain HTTP from another machine: send
it over TLS, or from the node's own machine.

One backup job (create, restore or escrow) runs at a time; another asked
for meanwhile gets 409 naming the one in progress. The jobs run to the end
even when the client goes away, and the node waits for them on shutdown.

Errors of the backup library get their HTTP status here (:data:`ERROR_STATUS`);
their message is the library's, e.g. naming the first bad part.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from idcore.errors import AuthenticationNeeded, IdnodeError, MalformedRequest, ResponseCode
from idcore.handle import check_prefix
from registry.backup.archive import MANIFEST_NAME
from registry.backup.errors import (
    ArchiveInvalid,
    BackupError,
    NoBaseBackup,
    RestoreRefused,
    WrongRecipientKey,
)
from registry.backup.folder import (
    BACKUPS_DIR,
    archive_folder,
    archive_size,
    backup_node,
    check_part_hashes,
    list_archives,
    own_prefix,
    remove_unfinished,
    restore_node,
    tar_into,
)
from registry.backup.manifest import Manifest
from registry.backup.verify import verify_archive
from registry.escrow import child_identity
from registry.store import Store
from resolver.backup_jobs import NodeBackups
from resolver.backup_requests import (
    backup_kind,
    pem_key,
    read_fields,
    refuse_in_the_clear,
    text_field,
    volume_bytes,
)
from resolver.escrow_client import EscrowRefused, escrow_backup
from resolver.http_common import (
    add_endpoint,
    api_endpoint,
    app_feature,
    json_object_reply,
    start_stream,
)
from resolver.journal_api import check_feed_access, is_loopback
from resolver.node_api import REGISTRY

log = logging.getLogger(__name__)

#: Bytes of tar handed to the client at once: large enough that the hop from
#: the tar thread to the event loop costs little per byte.
TAR_CHUNK_BYTES = 256 * 1024

#: HTTP status of each error of the backup library these endpoints pass on,
#: first match first (subclasses before their base). The library's errors
#: carry no HTTP status of their own: they are not request errors, and the
#: CLI raises them as well.
ERROR_STATUS: tuple[tuple[type[IdnodeError], int], ...] = (
    (NoBaseBackup, 409),  # the node's state: no backup to follow yet
    (RestoreRefused, 409),  # the node is not empty, or the archives do not chain
    (WrongRecipientKey, 400),  # the key sent does not open the archive
    (ArchiveInvalid, 422),  # the archive is damaged or its signature fails
    (EscrowRefused, 502),  # the parent refused the upload
    (BackupError, 500),
)


class BackupFailed(IdnodeError):
    """An error of the backup library, answered with its status from
    :data:`ERROR_STATUS`; the body adds ``error`` (the library's error
    class) and its details (``part`` and ``name`` of a bad part)."""

    response_code = ResponseCode.ERROR

    def __init__(self, error: IdnodeError) -> None:
        super().__init__(error.message, handle=error.handle, **error.details)
        self.http_status = next(status for kind, status in ERROR_STATUS if isinstance(error, kind))
        self.error = type(error).__name__

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "error": self.error, **self.details}


BACKUPS = web.AppKey("backups", NodeBackups)


def enable_backups(app: web.Application, database: Path) -> None:
    """Serve the backups of the node whose database is ``database``; a
    running job is waited for on shutdown, before the store closes."""
    app[BACKUPS] = NodeBackups(database)

    async def sweep(app: web.Application) -> None:
        # no job runs yet: a .partial folder is what a crash left mid-archive
        removed = await asyncio.to_thread(remove_unfinished, app[BACKUPS].folder)
        if removed:
            log.info("removed %d unfinished backup folder(s) left by a crash: %s", len(removed), ", ".join(removed))

    async def wait(app: web.Application) -> None:
        await app[BACKUPS].wait()

    app.on_startup.append(sweep)
    app.on_shutdown.append(wait)


def add_backup_routes(router: web.UrlDispatcher) -> None:
    add_endpoint(router, "/api/backups", GET=list_backups, POST=post_backup)
    # before /api/backups/{name}, which would take these names otherwise
    add_endpoint(router, "/api/backups/restore", POST=post_restore)
    add_endpoint(router, "/api/backups/escrow", POST=post_escrow)
    add_endpoint(router, "/api/backups/{name}", GET=get_backup)
    add_endpoint(router, "/api/backups/{name}/verify", POST=post_verify)


def backup_endpoint(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Any:
    """:func:`~resolver.http_common.api_endpoint`, with the backup library's
    errors answered as :data:`ERROR_STATUS` says."""

    @functools.wraps(handler)
    async def translated(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except (BackupError, EscrowRefused) as exc:
            raise BackupFailed(exc) from None

    return api_endpoint(translated)


async def _authorised(request: web.Request) -> NodeBackups:
    backups = app_feature(request, BACKUPS, "this node keeps no backups (it has no data folder)")
    if "Authorization" not in request.headers and not is_loopback(request):
        # check_feed_access refuses this too, but names the journal feed
        raise AuthenticationNeeded("the node's backups need an administrator's credentials (HTTP Basic)")
    await check_feed_access(request, request.app[REGISTRY])
    return backups


@backup_endpoint
async def post_backup(request: web.Request) -> web.StreamResponse:
    backups = await _authorised(request)
    body = await read_fields(request, ("kind", "recipient", "volumeBytes"))
    kind = backup_kind(body)
    if kind is None:
        raise MalformedRequest('kind is missing: send "full" or "diff"')
    recipient = pem_key(body, "recipient", X25519PublicKey, "an X25519 public key")
    volume = volume_bytes(body)

    async def create(store: Store) -> tuple[str, Manifest, int]:
        result = await backup_node(
            store, backups.data_dir, kind=kind, out_dir=backups.folder, recipient=recipient, volume_bytes=volume
        )
        return result.folder.name, result.manifest, archive_size(result.folder)

    name, manifest, size = await backups.run(f"a {kind} backup", lambda: backups.in_own_store(create))
    return json_object_reply({"responseCode": 1, "archive": archive_json(name, manifest, size)}, 201)


@backup_endpoint
async def list_backups(request: web.Request) -> web.StreamResponse:
    backups = await _authorised(request)
    listing = await asyncio.to_thread(list_archives, backups.folder, backups.node_public())
    out = []
    for entry in listing:
        if entry.manifest is None:
            out.append({"archive": entry.name, "size": entry.size, "error": entry.error})
        else:
            out.append(archive_json(entry.name, entry.manifest, entry.size))
    return json_object_reply({"responseCode": 1, "folder": BACKUPS_DIR, "archives": out})


@backup_endpoint
async def get_backup(request: web.Request) -> web.StreamResponse:
    backups = await _authorised(request)
    folder = archive_folder(backups.folder, request.match_info["name"])
    response = web.StreamResponse(headers={
        "Content-Type": "application/x-tar",
        "Content-Disposition": f'attachment; filename="{folder.name}.tar"',
    })
    await start_stream(request, response)
    sink = _ResponseSink(response, asyncio.get_running_loop())
    await asyncio.to_thread(tar_into, folder, sink)  # type: ignore[arg-type]
    await response.write(sink.rest())
    await response.write_eof()
    return response


@backup_endpoint
async def post_verify(request: web.Request) -> web.StreamResponse:
    """``POST /api/backups/{name}/verify``, with an optional body
    ``{"recipientKey": PEM, "signerPub": PEM}``.

    Without ``recipientKey`` it checks what needs no key: the manifest's
    signature and every part's size and SHA-256 (the manifest hashes the
    encrypted parts). With it, everything ``idnode backup verify`` checks:
    each part also decrypted, every line a record or tombstone, and the
    counts. The signature is checked against ``signerPub`` when given (an
    archive of another node, brought here to restore), else against this
    node's key.

    Returns:
        200 once the check ran: ``{"ok": true, "checked": "hashes"|"full",
        "archive": {...}}``, or ``{"ok": false, "checked": ..., "archive":
        name, "error": {"error": class, "message", "part", "name"}}`` naming
        the first bad part as the library does (a wrong recipient key is a
        failed check too). A 4xx means the check did not run: a bad name
        (400), no such archive (404), a malformed body or key (400), a key
        over plain HTTP from another machine (403), no access (401/403).
    """
    backups = await _authorised(request)
    folder = archive_folder(backups.folder, request.match_info["name"])
    body = await read_fields(request, ("recipientKey", "signerPub"), required=False)
    refuse_in_the_clear(request, body, "recipientKey")
    recipient = pem_key(body, "recipientKey", X25519PrivateKey, "an X25519 private key", private=True,
                         required=False)
    signer = pem_key(body, "signerPub", Ed25519PublicKey, "an Ed25519 public key", required=False)
    signer = signer or backups.node_public()
    checked = "hashes" if recipient is None else "full"
    try:
        if recipient is None:
            manifest = await asyncio.to_thread(check_part_hashes, folder, signer)
        else:
            manifest = await asyncio.to_thread(verify_archive, folder, recipient, signer)
    except (ArchiveInvalid, WrongRecipientKey) as exc:
        error = {"error": type(exc).__name__, "message": exc.message, **exc.details}
        return json_object_reply({"responseCode": 1, "ok": False, "checked": checked, "archive": folder.name,
                                  "error": error})
    size = await asyncio.to_thread(archive_size, folder)
    return json_object_reply({"responseCode": 1, "ok": True, "checked": checked,
                              "archive": archive_json(folder.name, manifest, size)})


@backup_endpoint
async def post_restore(request: web.Request) -> web.StreamResponse:
    """Restore archives of the backups folder into this (empty) node; the
    reply names the archives in the order applied and the records digest,
    the one ``idnode backup digest`` prints for the source.

    The registry learns the restored prefixes only once the whole chain is
    in: until then, and after a restore stopped by a damaged part, the node
    answers for nothing rather than from part of its records.
    """
    backups = await _authorised(request)
    body = await read_fields(request, ("archives", "recipientKey", "signerPub"))
    refuse_in_the_clear(request, body, "recipientKey")
    names = body.get("archives")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise MalformedRequest("archives must be a list of archive names from GET /api/backups (a FULL and its DIFFs)")
    folders = [archive_folder(backups.folder, name) for name in names]
    recipient = pem_key(body, "recipientKey", X25519PrivateKey, "an X25519 private key", private=True)
    signer = pem_key(body, "signerPub", Ed25519PublicKey, "an Ed25519 public key", required=False)
    registry = request.app[REGISTRY]
    remedy = f"stop the node, delete {backups.database} (and its -wal and -shm files) and start it again, empty"

    async def restore() -> Any:
        # On the node's own store, so its read cache stays coherent; the node
        # is empty and answers for nothing meanwhile.
        result = await restore_node(registry.store, folders, recipient, signer, remedy=remedy)
        await registry.open()  # the prefixes it homes now
        return result

    result = await backups.run(f"a restore of {len(folders)} archive(s)", restore)
    applied = await asyncio.to_thread(_names_in_order, result.applied, folders)
    return json_object_reply({
        "responseCode": 1,
        "applied": [archive_json(name, m) for name, m in zip(applied, result.applied, strict=True)],
        "digest": result.digest,
        "records": result.records,
        "prefixes": list(registry.homed_prefixes),
    })


@backup_endpoint
async def post_escrow(request: web.Request) -> web.StreamResponse:
    backups = await _authorised(request)
    body = await read_fields(request, ("parent", "kind", "prefix", "identity", "secret", "volumeBytes"))
    refuse_in_the_clear(request, body, "secret")
    parent = text_field(body, "parent", "the parent node's base URL")
    parts = urlsplit(parent)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise MalformedRequest(f"parent {parent!r} must be the parent node's base URL, http(s)://host[:port]")
    secret = text_field(body, "secret", "the secret of this node's identity at the parent")
    kind = backup_kind(body)
    prefix = text_field(body, "prefix", "this node's prefix", required=False)
    if prefix is not None:
        check_prefix(prefix)
    identity = text_field(body, "identity", "an index:handle identity at the parent", required=False)
    volume = volume_bytes(body)

    async def escrow(store: Store) -> Any:
        child = await own_prefix(store, prefix, option="prefix")
        return await escrow_backup(
            store, backups.data_dir, parent, child=child, identity=identity or child_identity(child).to_text(),
            secret=secret, kind=kind, volume_bytes=volume,
        )

    result = await backups.run(f"an escrow backup to {parent}", lambda: backups.in_own_store(escrow))
    return json_object_reply({
        "responseCode": 1,
        "parent": parent,
        "parentStatus": result.http_status,
        "archive": archive_json(result.backup.folder.name, result.backup.manifest),
        "escrow": result.reply.get("archive"),
    })


def archive_json(name: str, manifest: Manifest, size: int | None = None) -> dict[str, Any]:
    """An archive as these endpoints describe it (``size``: bytes of its
    files, when it is in the backups folder)."""
    out: dict[str, Any] = {
        "archive": name,
        "kind": manifest.kind,
        "watermark": {"from": manifest.watermark_from, "to": manifest.watermark_to},
        "counts": {"records": manifest.records, "deleted": manifest.deleted, "parts": len(manifest.parts)},
        "prefixes": list(manifest.prefixes),
        "created": manifest.created,
        "signer": manifest.node_fingerprint,
    }
    if size is not None:
        out["size"] = size
    return out


def _names_in_order(applied: list[Manifest], folders: list[Path]) -> list[str]:
    # restore_archives returns manifests, not folders; a chain it accepted
    # holds no two equal manifests, so each names one folder.
    manifests = [(Manifest.from_bytes((f / MANIFEST_NAME).read_bytes()), f.name) for f in folders]
    return [next(name for m, name in manifests if m == wanted) for wanted in applied]


class _ResponseSink:
    """A write-only file for the tar thread that hands the bytes to the
    response on the event loop, TAR_CHUNK_BYTES at a time, waiting while
    the client is slow (so memory stays bounded) and failing when it left."""

    def __init__(self, response: web.StreamResponse, loop: asyncio.AbstractEventLoop) -> None:
        self._response = response
        self._loop = loop
        self._buffer = bytearray()

    def write(self, data: bytes) -> int:
        self._buffer += data
        if len(self._buffer) >= TAR_CHUNK_BYTES:
            chunk = bytes(self._buffer)
            self._buffer.clear()
            asyncio.run_coroutine_threadsafe(self._response.write(chunk), self._loop).result()
        return len(data)

    def rest(self) -> bytes:
        """What is left to send once the tar is written."""
        chunk = bytes(self._buffer)
        self._buffer.clear()
        return chunk


