"""``POST /api/batch``: stream NDJSON operations in, result lines out.

The request body is read as it arrives and cut into lines; lines are
parsed on the event loop while the previous group commits on the store's
writer thread. A group's result lines are written only after its commit
is durable, so every result a client has received stands even if the node
is killed the next instant. At most one group commits and one fills at a
time, each at most :data:`~idcore.limits.BATCH_COMMIT_OPS` lines and
:data:`~idcore.limits.BATCH_COMMIT_BYTES` bytes, so memory stays flat however
long the stream is; when the client reads results slowly, writing them
waits, and so does reading more input. If the node cannot go on, the last
line is ``{"responseCode": 2, "message": ...}`` without a line number.

Line format and result lines: see :mod:`registry.batch`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterator

import aiohttp
import orjson
from aiohttp import web

from idcore import limits
from idcore.errors import IdnodeError, RequestTooLarge
from idcore.values import ValueReference
from registry.batch import BatchLineError, BatchOp, parse_line
from registry.service import Registry
from resolver.credentials import request_identity
from resolver.http_common import api_endpoint, require_content_type, start_stream
from resolver.node_api import REGISTRY

log = logging.getLogger(__name__)

#: Media types accepted for a batch body.
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl")

#: Bytes asked of the socket per read.
READ_SIZE = 256 * 1024

Item = BatchOp | BatchLineError


@api_endpoint
async def post_batch(request: web.Request) -> web.StreamResponse:
    registry = request.app[REGISTRY]
    require_content_type(request, *NDJSON_TYPES)
    identity = await request_identity(request, registry, required=True)
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    response.enable_chunked_encoding()
    await start_stream(request, response)
    committer = _Committer(registry, identity, response)
    try:
        group: list[Item] = []
        group_bytes = 0
        async for number, raw in _lines(request.content):
            if isinstance(raw, BatchLineError):
                group.append(raw)
            else:
                group.append(parse_line(number, raw))
                group_bytes += len(raw)
            full = len(group) >= limits.BATCH_COMMIT_OPS or group_bytes >= limits.BATCH_COMMIT_BYTES
            if full or committer.idle:
                await committer.submit(group)
                group, group_bytes = [], 0
        if group:
            await committer.submit(group)
        await committer.finish()
    except (ConnectionError, aiohttp.ClientPayloadError):
        # The client is gone: a group already handed to the store still
        # commits (its task runs on), but nobody is left to tell.
        log.warning("batch from %s broke off after %d result lines", request.remote, committer.sent)
        raise
    except Exception as exc:
        # Results already earned are sent first; then a last line without a
        # line number says the batch stopped, and why, so no client mistakes
        # a cut stream for a finished one.
        log.exception("batch from %s stopped after %d result lines", request.remote, committer.sent)
        await committer.finish()
        stop = {"responseCode": 2, "message": f"batch stopped after {committer.sent} results: {exc}"}
        await response.write(orjson.dumps(stop) + b"\n")
    await response.write_eof()
    return response


class _Committer:
    """Keeps at most one group committing; writes each group's results once
    it is durable, in input order."""

    def __init__(self, registry: Registry, identity: ValueReference | None, response: web.StreamResponse) -> None:
        self._registry = registry
        self._identity = identity
        self._response = response
        self._pending: tuple[asyncio.Task[list[dict]], list[Item]] | None = None
        #: Result lines written so far.
        self.sent = 0

    @property
    def idle(self) -> bool:
        return self._pending is None or self._pending[0].done()

    async def submit(self, group: list[Item]) -> None:
        await self.finish()
        task = asyncio.ensure_future(self._registry.apply_batch(group, self._identity))
        self._pending = (task, group)

    async def finish(self) -> None:
        if self._pending is None:
            return
        task, group = self._pending
        self._pending = None
        try:
            results = await task
        except IdnodeError as exc:
            results = [_line_error(item.line, exc) for item in group]
        await self._response.write(b"".join(orjson.dumps(r) + b"\n" for r in results))
        self.sent += len(results)


def _line_error(line: int, error: IdnodeError) -> dict:
    return {"line": line, "responseCode": error.response_code, "message": error.message}


async def _lines(stream: web.StreamReader) -> AsyncIterator[tuple[int, bytes | BatchLineError]]:
    """Numbered non-blank lines of ``stream`` (1-based, counting blank lines
    too so numbers match the file). A line over the limit is yielded as a
    BatchLineError and skipped to its end without being held in memory."""
    buffer = b""
    number = 0
    skipping = False
    while True:
        data = await stream.read(READ_SIZE)
        if not data:
            break
        buffer += data
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            line = buffer[start:end]
            start = end + 1
            if skipping:  # the end of an overlong line, already answered
                skipping = False
                continue
            number += 1
            if line.strip():
                yield number, line
        buffer = buffer[start:]
        if len(buffer) > limits.MAX_BATCH_LINE_BYTES and not skipping:
            number += 1
            skipping = True
            yield number, BatchLineError(
                number, RequestTooLarge(f"line is longer than {limits.MAX_BATCH_LINE_BYTES} bytes"), None
            )
        if skipping:
            buffer = b""
    if buffer.strip() and not skipping:
        yield number + 1, buffer
