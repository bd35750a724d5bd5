"""Drawing QR images for HTTP replies without stalling the event loop.

Encoding a code is about 3 ms of pure-Python CPU (qrcode); a PNG adds about
0.5 ms. :class:`Renderer` runs that in worker processes, at most
RENDERS_PER_WORKER per worker at once, with at most MAX_WAITING_RENDERS queued
behind them (beyond that a request is refused as too busy), coalesces
identical requests in flight and remembers recent images in a small LRU.

Why processes and not threads: a thread running qrcode holds the GIL, and
the event loop, answering resolutions meanwhile, gets it back only at each
switch interval. Measured on the 2-core machine this was written on: a
recursive node answering cache hits (``GET /api/handles/...``, 4 wrk
connections) while 16 more connections asked for PNGs that were never the
same twice (two runs each):

=====================  ===============  ===================  ===========
QR images drawn in     cache hits/s     p99 of cache hits    PNGs/s
=====================  ===============  ===================  ===========
(no QR requests)       15,700-23,800    0.2-4.6 ms           -
1 thread               4,100-7,800      6.2-12.8 ms          186-189
1 process              15,800-17,100    4.5-6.4 ms           194-214
=====================  ===============  ===================  ===========

A first, bare-handler trial gave the same picture, and showed that drawing
in the event loop itself cuts other requests to 9-15/s. A thread costs the
resolver two thirds of its answers; a worker process leaves the loop its
own core, for about 45 MB (the first image waits ~0.3 s for it to start).
One worker per core beyond the first (RENDER_PROCESSES) keeps a core for
the loop. Workers come from a ``forkserver`` (never ``fork``: the server
has threads) with this module preloaded. As with every multiprocessing
pool, the program's main module must be safe to import (``if __name__ ==
"__main__":``): each worker imports it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
import os
import select
import signal
import threading
import time
from collections import OrderedDict
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Literal

from idcore.errors import InvalidValue, NodeError, ServerTooBusy
from qr.image import png_bytes, svg_text
from qr.symbol import DEFAULT_MODULE_MM, MAX_MODULE_MM, MIN_MODULE_MM, ModuleSize, make_symbol

log = logging.getLogger(__name__)

#: Worker processes drawing images: one per core beyond the first, which the
#: event loop keeps; at most four (a front end with more cores runs more
#: processes of its own).
RENDER_PROCESSES = max(1, min(4, (os.cpu_count() or 2) - 1))

#: Images drawn at once per worker: two, so that a worker never idles
#: between jobs while a third waits its turn here, not in the pool's queue.
RENDERS_PER_WORKER = 2

#: Requests that may wait for a render slot; more are answered 503 at once
#: rather than queued without bound (each waiter holds a connection).
MAX_WAITING_RENDERS = 64

#: Images remembered, and their bytes: a label page asks for the same few
#: codes again and again, and a typical PNG is under 2 KB.
MEMO_ENTRIES = 1024
MEMO_BYTES = 16 * 1024 * 1024

#: Widest PNG drawn, pixels: an A4 page's width at 600 dpi. Larger is no
#: label, and drawing it costs seconds and hundreds of megabytes.
MAX_PNG_SIDE_PIXELS = 5000

ImageKind = Literal["png", "svg"]


@dataclass(frozen=True, slots=True)
class ImageJob:
    """One image to draw (sent to a worker process, and the memo's key).

    Attributes:
        payload: the text the code carries.
        kind: "png" or "svg".
        level: error-correction letter.
        dpi: printer resolution the module is snapped to (the PNG's too).
        module_mm: module width asked for, or None.
        size_mm: the symbol's width (quiet zone included) asked for, or
            None; given instead of ``module_mm``.
    """

    payload: str
    kind: ImageKind
    level: str
    dpi: int
    module_mm: float | None = None
    size_mm: float | None = None


def module_for(job: ImageJob, modules: int) -> ModuleSize:
    """The module size of ``job`` for a symbol ``modules`` wide: the one
    asked for, or the symbol's width divided by ``modules``; snapped to
    whole dots at ``job.dpi``.

    Raises:
        InvalidValue: ``size`` gives a module outside the accepted range
            (the message gives the range of sizes for this symbol).
    """
    if job.size_mm is None:
        return ModuleSize.snapped(DEFAULT_MODULE_MM if job.module_mm is None else job.module_mm, job.dpi)
    mm = round(job.size_mm / modules, 9)  # so that the limits quoted below are accepted despite float error
    if not MIN_MODULE_MM <= mm <= MAX_MODULE_MM:
        raise InvalidValue(
            f"size={job.size_mm:g} mm gives {mm:.3g} mm modules to this {modules}-module code;"
            f" for it size must be in {modules * MIN_MODULE_MM:g}..{modules * MAX_MODULE_MM:g} mm",
            parameter="size",
        )
    return ModuleSize.snapped(mm, job.dpi)


def draw(job: ImageJob) -> bytes:
    """The image ``job`` asks for (runs in a worker process).

    Raises:
        InvalidValue: the payload does not fit a code at the level, the
            size gives modules out of range, or the PNG would be wider
            than MAX_PNG_SIDE_PIXELS.
    """
    symbol = make_symbol(job.payload, job.level)
    module = module_for(job, symbol.modules)
    if job.kind == "svg":
        return svg_text(symbol, module).encode()
    side = symbol.modules * module.dots
    if side > MAX_PNG_SIDE_PIXELS:
        raise InvalidValue(
            f"dpi={job.dpi} and {module.mm:.3g} mm modules make this {symbol.modules}-module code"
            f" {side} pixels wide; the limit is MAX_PNG_SIDE_PIXELS ({MAX_PNG_SIDE_PIXELS}):"
            " lower dpi, module or size",
            parameter="dpi",
        )
    return png_bytes(symbol, module)


#: Seconds between a worker's checks that the server still runs, where the
#: kernel cannot say at once (no pidfd).
ORPHAN_CHECK_SECONDS = 1.0


def _worker_init(server_pid: int) -> None:
    # Ctrl-C reaches the whole process group; the server shuts the pool down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with, args=(server_pid,), name="qr-server-watch", daemon=True).start()


def _exit_with(server_pid: int) -> None:
    """End this worker process when the server process ends, however it
    ends. A server killed outright (SIGKILL, the OOM killer) never stops its
    pool, and a worker would wait on its job queue for good, keeping the
    forkserver alive with it."""
    try:
        watch = os.pidfd_open(server_pid)
    except (AttributeError, OSError):  # not Linux 5.3+; or the server is gone already
        watch = None
    if watch is not None:
        select.select([watch], [], [])  # readable when the process has exited
    else:
        while True:
            time.sleep(ORPHAN_CHECK_SECONDS)
            try:
                os.kill(server_pid, 0)
            except ProcessLookupError:
                break
            except PermissionError:
                continue
    os._exit(0)


class Renderer:
    """Draws :class:`ImageJob` images off the event loop (see the module doc).

    Use as an async context manager; the worker processes start with the
    first image and stop on exit.

    Args:
        processes: worker processes.
        in_threads: draw in threads instead (for callers that cannot start
            processes; the loop then shares the GIL with the drawing).
    """

    def __init__(self, processes: int = RENDER_PROCESSES, *, in_threads: bool = False) -> None:
        self._processes = processes
        self._in_threads = in_threads
        self._pool: concurrent.futures.Executor | None = None
        self._slots = asyncio.Semaphore(RENDERS_PER_WORKER * processes)
        self._waiting = 0
        self._inflight: dict[ImageJob, asyncio.Future[bytes]] = {}
        self._memo: OrderedDict[ImageJob, bytes] = OrderedDict()
        self._memo_bytes = 0

    async def __aenter__(self) -> Renderer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        drawing = list(self._inflight.values())
        for task in drawing:
            task.cancel()
        await asyncio.gather(*drawing, return_exceptions=True)
        pool, self._pool = self._pool, None
        if pool is not None:
            # waits for the images being drawn (a fraction of a second at most)
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    async def image(self, job: ImageJob) -> bytes:
        """The image of ``job``, from the memo when it was drawn lately.

        Raises:
            InvalidValue: see :func:`draw`.
            ServerTooBusy: MAX_WAITING_RENDERS requests already wait.
            NodeError: the worker processes died twice in a row.
        """
        body = self._memo.get(job)
        if body is not None:
            self._memo.move_to_end(job)
            return body
        shared = self._inflight.get(job)
        if shared is None:
            shared = asyncio.ensure_future(self._draw(job))
            self._inflight[job] = shared

            def finished(done: asyncio.Future[bytes]) -> None:
                self._inflight.pop(job, None)
                if not done.cancelled():
                    done.exception()  # retrieved here: every waiter may have gone

            shared.add_done_callback(finished)
        # shield: a client hanging up must not cancel the drawing for the others
        return await asyncio.shield(shared)

    async def _draw(self, job: ImageJob) -> bytes:
        if self._slots.locked() and self._waiting >= MAX_WAITING_RENDERS:
            raise ServerTooBusy(
                f"{MAX_WAITING_RENDERS} QR images are waiting to be drawn (MAX_WAITING_RENDERS); try again shortly"
            )
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            body = await self._run(job)
        finally:
            self._slots.release()
        self._remember(job, body)
        return body

    async def _run(self, job: ImageJob) -> bytes:
        loop = asyncio.get_running_loop()
        for attempt in (1, 2):
            pool = self._executor()
            try:
                return await loop.run_in_executor(pool, draw, job)
            except BrokenProcessPool:
                # a worker died (killed, out of memory): start afresh, once
                log.warning("QR image worker process died; starting a new one (attempt %d)", attempt)
                if self._pool is pool:
                    self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
        raise NodeError("QR image workers keep dying; the node's log has the details")

    def _executor(self) -> concurrent.futures.Executor:
        if self._pool is None:
            if self._in_threads:
                self._pool = concurrent.futures.ThreadPoolExecutor(self._processes, thread_name_prefix="qr-render")
            else:
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload([__name__])
                self._pool = concurrent.futures.ProcessPoolExecutor(
                    self._processes, mp_context=context, initializer=_worker_init, initargs=(os.getpid(),)
                )
        return self._pool

    def _remember(self, job: ImageJob, body: bytes) -> None:
        if len(body) > MEMO_BYTES // 16:
            return  # a rare huge image would push out hundreds of labels
        self._memo[job] = body
        self._memo_bytes += len(body)
        while len(self._memo) > MEMO_ENTRIES or self._memo_bytes > MEMO_BYTES:
            _, old = self._memo.popitem(last=False)
            self._memo_bytes -= len(old)
