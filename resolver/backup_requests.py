"""Reading the JSON bodies of the backup endpoints (:mod:`resolver.backup_api`):
only known fields, each checked and named when wrong; PEM keys; and the
refusal of secrets sent in the clear."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from aiohttp import web
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from idcore.errors import MalformedRequest, RequestError, ResponseCode
from registry.backup.archive import DEFAULT_VOLUME_BYTES, MIN_VOLUME_BYTES
from registry.backup.manifest import DIFF, FULL
from resolver.http_common import read_json
from resolver.journal_api import is_loopback

T = TypeVar("T")

#: Largest request body: PEM keys (a few hundred bytes each) and the names
#: of the archives to restore (~60 bytes each: some ten thousand fit).
MAX_BACKUP_BODY_BYTES = 1024 * 1024

#: Largest volume (plaintext bytes per part) a request may ask for: a
#: restore hashes each part in one go on the restoring node's event loop
#: (about a second per GiB), and parts are streamed, never held whole, so a
#: larger one would only stall that node longer. (The smallest is
#: registry.backup.archive.MIN_VOLUME_BYTES; the default, DEFAULT_VOLUME_BYTES.)
MAX_VOLUME_BYTES = 1024**3


class SecretInTheClear(RequestError):
    """A private key or secret came over plain HTTP from another machine."""

    response_code = ResponseCode.ERROR
    http_status = 403


async def read_fields(request: web.Request, fields: Iterable[str], *, required: bool = True) -> dict[str, Any]:
    """The request's JSON object; only ``fields`` are accepted, so a
    misspelt one is refused rather than silently ignored.

    Raises:
        MalformedRequest: not a JSON object, or an unknown field.
    """
    fields = tuple(fields)
    what = "a JSON object with " + ", ".join(fields)
    body = await read_json(request, limit=MAX_BACKUP_BODY_BYTES, limit_name="MAX_BACKUP_BODY_BYTES",
                           required=required, what=what)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise MalformedRequest(f"send {what}")
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise MalformedRequest(f"unknown field(s) {', '.join(unknown)}; this endpoint takes {', '.join(fields)}")
    return body


def backup_kind(body: dict[str, Any]) -> str | None:
    kind = body.get("kind")
    if kind is None:
        return None
    if not isinstance(kind, str) or kind.lower() not in (FULL, DIFF):
        raise MalformedRequest(f'kind must be "full" or "diff", not {kind!r}')
    return kind.lower()


def volume_bytes(body: dict[str, Any]) -> int:
    volume = body.get("volumeBytes", DEFAULT_VOLUME_BYTES)
    if not isinstance(volume, int) or isinstance(volume, bool) or not MIN_VOLUME_BYTES <= volume <= MAX_VOLUME_BYTES:
        raise MalformedRequest(
            f"volumeBytes must be a whole number of bytes in {MIN_VOLUME_BYTES}..{MAX_VOLUME_BYTES}"
            f" (MIN_VOLUME_BYTES..MAX_VOLUME_BYTES), not {volume!r}"
        )
    return volume


def text_field(body: dict[str, Any], field: str, what: str, *, required: bool = True) -> str | None:
    value = body.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise MalformedRequest(f"{field} is missing: send {what}" if value is None else f"{field} must be {what}")
    return value


def pem_key(
    body: dict[str, Any], field: str, kind: type[T], what: str, *, private: bool = False, required: bool = True
) -> T:
    """The key of type ``kind`` (a ``private`` one, or public) in the PEM
    text of ``field``; None when absent and not ``required``.

    Raises:
        MalformedRequest: missing (when ``required``), or not such a key.
    """
    text = text_field(body, field, f"{what} in PEM", required=required)
    if text is None:
        return None  # type: ignore[return-value]
    try:
        data = text.encode("utf-8")
        key = serialization.load_pem_private_key(data, None) if private else serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        key = None
    if not isinstance(key, kind):
        raise MalformedRequest(f"{field} is not {what} in PEM")
    return key


def refuse_in_the_clear(request: web.Request, body: dict[str, Any], field: str) -> None:
    """Refuse a private key or secret (``field`` of ``body``) sent over
    plain HTTP from another machine: whoever watches that network has it
    now, and clients must not learn that this works.

    Raises:
        SecretInTheClear: naming ``field`` and what to do instead.
    """
    if field not in body or request.secure or is_loopback(request):
        return
    raise SecretInTheClear(
        f"{field} is a secret and this request came over plain HTTP from {request.remote}: send it over TLS"
        " (HTTPS) or from the node's own machine; treat it as disclosed"
    )
