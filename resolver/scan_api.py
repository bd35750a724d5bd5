"""``POST /api/scan`` on the recursive node: resolve what a scanner produced.

The body is what a scanner or a phone app has, in any of these forms:

- ``text/plain``: the decoded text, as a keyboard-wedge or serial scanner
  sends it (charset from the Content-Type, UTF-8 by default);
- ``application/json``: ``{"text": "..."}``;
- ``application/x-www-form-urlencoded``: a form field ``text``;
- ``image/*`` (PNG, JPEG ...): a picture with a QR code in it;
- ``multipart/form-data``: a file field ``image`` (or a field ``text``).

Pictures are decoded with :mod:`qr.verify` (the first code found). The
text is normalised with :func:`idcore.handle.parse` (any input form, with
scanner quirks: CR/LF, stray spaces, an upper-cased URL, AIM identifiers,
framing control characters), resolved as ``GET /api/handles/{handle}``
would be, and answered as that record plus what was scanned::

    {"responseCode": 1, "handle": "88.118.2/PRD-1", "values": [...],
     "scanned": {"text": "HTTPS://ID.EXAMPLE.CN/88.118.2/PRD-1", "handle": "88.118.2/PRD-1"}}

Once the text is known every reply carries ``scanned`` (``text`` as
received, stripped; ``handle`` once it parsed): 400 naming what is wrong
with text that is not an identifier, 404 for a handle that does not exist
(with a ``hint`` when an upper-cased scan may have changed the suffix's
case), 502/504 as resolution fails. Bodies over MAX_SCAN_BODY_BYTES are 413.
"""

from __future__ import annotations

import asyncio
import codecs
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from aiohttp import BodyPartReader, web

from cache.entry import EntryKind
from idcore.errors import (
    HandleNotFound,
    IdnodeError,
    InvalidHandle,
    InvalidValue,
    MalformedRequest,
    RequestTooLarge,
    UnsupportedMediaType,
)
from idcore.handle import Handle, parse
from qr.verify import decode, open_image
from resolver.http_common import body_too_large, read_body, add_endpoint, api_endpoint, json_reply
from resolver.recursive_api import METRICS, SETTINGS, counted, lookup

#: Largest body accepted, bytes: a phone photo as JPEG is 2-6 MB.
MAX_SCAN_BODY_BYTES = 10 * 1024 * 1024

#: Longest text accepted, characters: the most a QR code holds (7089 digits,
#: version 40 at level L). Longer text did not come from a scan.
MAX_SCAN_TEXT_CHARS = 7089

#: Pictures decoded at once. Decoding runs in threads (Pillow and zxing-cpp
#: release the GIL), about 50 ms for a 12-megapixel photo; more at once
#: would only queue for the two cores and hold their images in memory.
MAX_CONCURRENT_DECODES = 2

DECODE_SLOTS = web.AppKey("scan_decode_slots", asyncio.Semaphore)

ACCEPTED = "text/plain, application/json, application/x-www-form-urlencoded, image/* or multipart/form-data"

_JSON = "application/json; charset=utf-8"

#: A scan whose scheme is in capitals came from a keyboard-wedge scanner
#: typing with Caps Lock on (or set to upper case): a suffix's case is lost.
_SHOUTED_RE = re.compile(r"(?:HTTPS?://|HDL:)")


def add_scan_routes(app: web.Application) -> None:
    """Serve ``POST /api/scan`` from ``app`` (before its ``/api/`` catch-all)."""
    app[DECODE_SLOTS] = asyncio.Semaphore(MAX_CONCURRENT_DECODES)
    add_endpoint(app.router, "/api/scan", POST=scan)


@api_endpoint
@counted
async def scan(request: web.Request) -> web.StreamResponse:
    """``POST /api/scan`` (see the module doc)."""
    request.app[METRICS].requests["scan"] += 1
    text = (await scanned_text(request)).strip()
    scanned: dict[str, Any] = {"text": text}
    try:
        if len(text) > MAX_SCAN_TEXT_CHARS:
            raise InvalidHandle(
                f"text of {len(text)} characters is longer than any QR code holds (MAX_SCAN_TEXT_CHARS, {MAX_SCAN_TEXT_CHARS})"
            )
        public_url = request.app[SETTINGS].public_url
        handle = parse(text, base_path=urlsplit(public_url).path if public_url else "")
        scanned["handle"] = handle.to_text()
        result = await lookup(request, handle)
    except IdnodeError as exc:
        request.app[METRICS].error(exc.response_code)
        return _reply({**exc.to_json(), "scanned": scanned}, exc.status)
    if result.entry.kind is EntryKind.NOT_FOUND:
        request.app[METRICS].error(HandleNotFound.response_code)
        body = {**HandleNotFound("Handle Not Found", handle=handle.to_text()).to_json(), "scanned": scanned}
        hint = _case_hint(text, handle)
        if hint:
            body["hint"] = hint
        if result.entry.escrow:
            body["escrow"] = True
        return _reply(body, 404, result.source)
    body = {"responseCode": 1, "handle": handle.to_text(), "values": orjson.Fragment(result.entry.values_json)}
    if result.source == "stale":
        body["stale"] = True
    if result.entry.escrow:
        body["escrow"] = True
    body["scanned"] = scanned
    return _reply(body, 200, result.source)


def _reply(body: dict[str, Any], status: int, source: str | None = None) -> web.Response:
    headers = {"Content-Type": _JSON}
    if source is not None:
        headers["X-Idnode-Cache"] = source
    return json_reply(orjson.dumps(body), status, headers)


def _case_hint(text: str, handle: Handle) -> str | None:
    if _SHOUTED_RE.search(text[:16]) and handle.suffix.upper() == handle.suffix != handle.suffix.lower():
        return (
            "the scan is in capitals, as a keyboard-wedge scanner typing with Caps Lock on sends it;"
            " a suffix's case matters, so the label's may differ: check the scanner's case setting"
        )
    return None


# --- reading the body --------------------------------------------------------------


async def scanned_text(request: web.Request) -> str:
    """The text of the scan the request carries, decoded from its picture
    if it carries one.

    Raises:
        RequestTooLarge: more than MAX_SCAN_BODY_BYTES.
        UnsupportedMediaType: a Content-Type not in ACCEPTED.
        MalformedRequest: a body that does not hold what its type says.
        InvalidValue: a picture that cannot be read, or has no QR code.
    """
    length = request.content_length
    if length is not None and length > MAX_SCAN_BODY_BYTES:
        raise _too_large(length)
    kind = request.content_type
    if kind == "multipart/form-data":
        return await _multipart_text(request)
    if kind.startswith("image/"):
        return await _decode_picture(request, await _read_body(request))
    if kind == "text/plain":
        return _decode_text(await _read_body(request), request.charset or "utf-8", "body")
    if kind == "application/json":
        return _json_text(await _read_body(request))
    if kind == "application/x-www-form-urlencoded":
        return _form_text(await _read_body(request))
    sent = request.headers.get("Content-Type", "none")
    raise UnsupportedMediaType(f"Content-Type {sent!r} is not a scan; send {ACCEPTED}")


def _too_large(size: int) -> RequestTooLarge:
    return body_too_large(size, MAX_SCAN_BODY_BYTES, "MAX_SCAN_BODY_BYTES")


async def _read_body(request: web.Request) -> bytes:
    return await read_body(request, MAX_SCAN_BODY_BYTES, limit_name="MAX_SCAN_BODY_BYTES")


async def _multipart_text(request: web.Request) -> str:
    try:
        reader = await request.multipart()
        budget = MAX_SCAN_BODY_BYTES
        fields: dict[str, tuple[bytes, str]] = {}
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise MalformedRequest("nested multipart bodies are not read; send one image field")
            data = await _read_part(part, budget)
            budget -= len(data)
            if part.name in ("image", "text") and part.name not in fields:
                fields[part.name] = (data, part.get_charset("utf-8"))
    except ValueError as exc:  # aiohttp's multipart parser: a missing or broken boundary
        raise MalformedRequest(f"multipart body cannot be read: {exc}") from None
    if "image" in fields:
        return await _decode_picture(request, fields["image"][0])
    if "text" in fields:
        data, charset = fields["text"]
        return _decode_text(data, charset, "field text")
    raise MalformedRequest("multipart scan has no field named image (a picture) or text")


async def _read_part(part: BodyPartReader, budget: int) -> bytes:
    chunks, size = [], 0
    while chunk := await part.read_chunk():
        size += len(chunk)
        if size > budget:
            raise _too_large(MAX_SCAN_BODY_BYTES - budget + size)
        chunks.append(chunk)
    return b"".join(chunks)


def _decode_text(data: bytes, charset: str, what: str) -> str:
    try:
        codecs.lookup(charset)
    except LookupError:
        raise MalformedRequest(f"charset {charset!r} of the {what} is not known") from None
    try:
        return data.decode(charset)
    except UnicodeDecodeError as exc:
        raise MalformedRequest(f"the {what} is not {charset} text (byte {exc.start + 1})") from None


def _json_text(data: bytes) -> str:
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest(f"JSON body cannot be parsed: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("text"), str):
        raise MalformedRequest('JSON scan must be an object {"text": "<the scanned text>"}')
    return document["text"]


def _form_text(data: bytes) -> str:
    try:
        fields = parse_qs(data.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise MalformedRequest("form body is not UTF-8 text") from None
    values = fields.get("text")
    if not values:
        raise MalformedRequest("form scan has no field named text")
    return values[0]


async def _decode_picture(request: web.Request, data: bytes) -> str:
    if not data:
        raise MalformedRequest("the picture is empty")
    async with request.app[DECODE_SLOTS]:
        found = await asyncio.get_running_loop().run_in_executor(None, _first_code, data)
    if found is None:
        raise InvalidValue("no QR code found in the image")
    return found


def _first_code(data: bytes) -> str | None:
    codes = decode(open_image(data))
    return codes[0].text if codes else None
