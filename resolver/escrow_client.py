"""The child's side of escrow: make a backup for the parent's recipient key
and upload it (``idnode backup escrow``).

The escrow chain is kept apart from local backups: ``escrow-state.json`` in
the data folder records the watermark of the last archive the parent
accepted, and a DIFF starts there, so the parent's chain has no gap however
local backups are taken. An archive is written to ``escrow-outbox/``, sent
as a tar stream, and removed once the parent recorded it ``ok``.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from idcore.errors import IdnodeError, UpstreamUnavailable
from registry.backup.archive import DEFAULT_VOLUME_BYTES
from registry.backup.create import BackupResult, create_backup
from registry.backup.folder import tar_into
from registry.backup.manifest import DIFF, FULL
from registry.node_key import node_key, write_private
from registry.store import Store
from resolver.rest_client import basic_auth_header

#: Record of the last archive the parent accepted, in the data folder.
ESCROW_STATE_NAME = "escrow-state.json"

#: Where archives wait for upload, in the data folder.
OUTBOX_NAME = "escrow-outbox"

#: Seconds an upload may take in all: archives run to gigabytes.
UPLOAD_TIMEOUT_SECONDS = 3600.0

#: Seconds for the recipient key request.
REQUEST_TIMEOUT_SECONDS = 30.0


class EscrowRefused(IdnodeError):
    """The parent refused the upload, or recorded the archive as bad."""


@dataclass(frozen=True, slots=True)
class EscrowResult:
    backup: BackupResult
    http_status: int
    reply: dict[str, Any]


def escrow_watermark(data_dir: Path) -> int | None:
    try:
        return int(orjson.loads((Path(data_dir) / ESCROW_STATE_NAME).read_bytes())["watermark"])
    except FileNotFoundError:
        return None


async def fetch_recipient(session: aiohttp.ClientSession, parent_url: str) -> X25519PublicKey:
    """The parent's escrow recipient key.

    Raises:
        UpstreamUnavailable: the parent cannot be reached or has no escrow.
    """
    url = parent_url.rstrip("/") + "/api/escrow/recipient"
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)) as response:
            body = await response.read()
            if response.status != 200:
                raise UpstreamUnavailable(f"{url} answered {response.status}: {body[:200]!r}")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise UpstreamUnavailable(f"cannot fetch the parent's escrow key from {url}: {exc}") from None
    try:
        key = serialization.load_pem_public_key(body)
    except ValueError:
        key = None
    if not isinstance(key, X25519PublicKey):
        raise UpstreamUnavailable(f"{url} did not answer with an X25519 public key")
    return key


def tar_archive(folder: Path, out: Path) -> None:
    """Write the archive folder as the file ``out`` in the upload format
    (:func:`~registry.backup.folder.tar_into`)."""
    with open(out, "wb") as stream:
        tar_into(folder, stream)


async def upload_archive(
    session: aiohttp.ClientSession, parent_url: str, child: str, folder: Path, identity: str, secret: str
) -> tuple[int, dict[str, Any]]:
    """Send ``folder`` to the parent; its HTTP status and JSON reply."""
    tar = folder.with_name(folder.name + ".tar")
    await asyncio.to_thread(tar_archive, folder, tar)
    url = f"{parent_url.rstrip('/')}/api/escrow/{child}/{folder.name}"
    headers = {"Authorization": basic_auth_header(identity, secret), "Content-Type": "application/x-tar"}
    try:
        with await asyncio.to_thread(tar.open, "rb") as body:
            async with session.put(
                url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=UPLOAD_TIMEOUT_SECONDS)
            ) as response:
                raw = await response.read()
                status = response.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise UpstreamUnavailable(f"cannot upload to {url}: {exc}") from None
    finally:
        tar.unlink(missing_ok=True)
    try:
        reply = orjson.loads(raw)
    except orjson.JSONDecodeError:
        reply = {"message": raw[:200].decode("utf-8", "replace")}
    return status, reply


async def escrow_backup(
    store: Store,
    data_dir: Path,
    parent_url: str,
    *,
    child: str,
    identity: str,
    secret: str,
    kind: str | None = None,
    volume_bytes: int = DEFAULT_VOLUME_BYTES,
    session: aiohttp.ClientSession | None = None,
) -> EscrowResult:
    """Back ``store`` up for the parent and upload it.

    ``kind`` None: a DIFF when an earlier escrow is recorded, else a FULL.

    Raises:
        EscrowRefused: the parent refused it or recorded it as bad (the
            archive is left in the outbox).
        UpstreamUnavailable, NoBaseBackup.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    since = escrow_watermark(data_dir)
    kind = kind or (DIFF if since is not None else FULL)
    owned = session is None
    session = session or aiohttp.ClientSession()
    try:
        recipient = await fetch_recipient(session, parent_url)
        result = await create_backup(
            store, kind=kind, out_dir=data_dir / OUTBOX_NAME, recipient=recipient, node_key=node_key(data_dir),
            since=since if kind == DIFF else None, volume_bytes=volume_bytes,
        )
        status, reply = await upload_archive(session, parent_url, child, result.folder, identity, secret)
    finally:
        if owned:
            await session.close()
    if status not in (200, 201):
        raise EscrowRefused(f"the parent answered {status}: {reply.get('message', reply)}", archive=result.folder.name)
    m = result.manifest
    state = {"parent": parent_url, "watermark": m.watermark_to, "kind": m.kind, "archive": result.folder.name}
    write_private(data_dir / ESCROW_STATE_NAME, orjson.dumps(state, option=orjson.OPT_INDENT_2) + b"\n")
    shutil.rmtree(result.folder, ignore_errors=True)
    return EscrowResult(result, status, reply)
