"""Label batches: labels rendered by worker processes and written as they
come back, to a folder of PNG files, a PDF of sheets or a ZPL file.

Drawing a label is Python work (qrcode tries eight masks, Pillow sets the
text), about 6 ms, so a batch spreads it over worker processes, one per
core unless told. Results come back in the order of the source, and the
number of labels in flight is bounded (:func:`max_in_flight`): the parent
reads the source only as fast as results are written, so memory stays
flat however long the batch. Workers send back bytes (a PNG file, or a
Flate-compressed raster for a PDF page), never Pillow images: smaller to
pickle, and the compressing happens in parallel too.

Why :class:`concurrent.futures.ProcessPoolExecutor` with our own window of
chunks, not ``multiprocessing.Pool.imap``: imap's feeder thread reads the
whole source ahead of the workers and keeps every result the writer has
not taken yet, so neither is bounded; and a Pool whose worker dies (say,
killed for memory) waits forever for the lost chunk, where the executor
raises ``BrokenProcessPool``. Workers start from a fork server: forking a
parent that runs threads (tqdm's monitor, an event loop) can deadlock the
child, and the server imports the label code once for all workers.

ZPL needs no workers: the printer draws the code, and writing its commands
is string formatting.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO

from idcore.errors import IdnodeError, InvalidValue
from qr.batch_source import LabelJob
from qr.label import LabelLayout, label_png, render_label
from qr.pdf_stream import RasterImage
from qr.sheet import Grid, SheetLayout, SheetWriter
from qr.zpl import DEFAULT_FONT, label_zpl, magnification

#: Labels sent to a worker at a time: enough that pickling and waking a
#: worker (well under 1 ms) is small beside drawing them (~100 ms).
CHUNK_LABELS = 16

#: Chunks in flight per worker: the one it draws and two queued, so a
#: worker never waits for the parent to write and send the next.
CHUNKS_PER_WORKER = 3

#: Most characters of a handle kept in a PNG file name: well under the
#: 255 bytes file systems allow, with room for the number and extension.
MAX_NAME_CHARS = 80

#: Progress callback: told how many more labels were written.
Progress = Callable[[int], Any]


def default_workers() -> int:
    """One worker per core, at least one."""
    return max(1, os.cpu_count() or 1)


def max_in_flight(workers: int) -> int:
    """Most labels a batch with ``workers`` workers holds at once between
    reading them from the source and writing them out."""
    return max(1, workers) * CHUNKS_PER_WORKER * CHUNK_LABELS


class LabelFailed(InvalidValue):
    """A label of the batch could not be made; names the handle."""

    def __init__(self, handle: str, problem: str) -> None:
        super().__init__(f"label for {handle}: {problem}", handle=handle)
        self.problem = problem

    def __reduce__(self) -> tuple[Any, ...]:
        # raised in a worker and pickled to the parent
        return (LabelFailed, (self.handle, self.problem))


# --- what workers do -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PngLabel:
    """Renders a job as the bytes of a PNG file."""

    layout: LabelLayout

    def __call__(self, job: LabelJob) -> bytes:
        return label_png(job.payload, job.handle, job.lines, self.layout)


@dataclass(frozen=True, slots=True)
class RasterLabel:
    """Renders a job as a compressed raster for a PDF page."""

    layout: LabelLayout

    def __call__(self, job: LabelJob) -> RasterImage:
        return RasterImage.from_image(render_label(job.payload, job.handle, job.lines, self.layout))


_renderer: Callable[[LabelJob], Any] | None = None  # a worker's, set once when it starts


def _install(renderer: Callable[[LabelJob], Any]) -> None:
    global _renderer
    _renderer = renderer


def _render_chunk(jobs: list[LabelJob]) -> list[Any]:
    assert _renderer is not None, "worker started without a renderer"
    return [_render_one(_renderer, job) for job in jobs]


def _render_one(renderer: Callable[[LabelJob], Any], job: LabelJob) -> Any:
    try:
        return renderer(job)
    except IdnodeError as exc:
        raise LabelFailed(job.handle, exc.message) from None


# --- the pool --------------------------------------------------------------------


@dataclass
class RenderStats:
    """Labels read from the source but not yet handed to the writer, now
    and at most, for checking that a batch's memory is bounded."""

    in_flight: int = 0
    peak_in_flight: int = 0

    def sent(self, n: int) -> None:
        self.in_flight += n
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)


def render(
    jobs: Iterable[LabelJob],
    renderer: Callable[[LabelJob], Any],
    *,
    workers: int | None = None,
    stats: RenderStats | None = None,
) -> Iterator[tuple[LabelJob, Any]]:
    """``(job, renderer(job))`` for every job, in order, rendered by
    ``workers`` processes (default :func:`default_workers`; 0 renders in
    this process). At most :func:`max_in_flight` labels are between the
    source and the caller at any time.

    Raises:
        LabelFailed: a job could not be rendered (the batch stops).
        BrokenProcessPool: a worker died.
    """
    workers = default_workers() if workers is None else workers
    if type(workers) is not int or workers < 0:
        raise InvalidValue(f"workers {workers!r} must be a whole number >= 0")
    stats = stats if stats is not None else RenderStats()
    if workers == 0:
        return _in_process(jobs, renderer, stats)
    return _pooled(jobs, renderer, workers, stats)


def _in_process(jobs: Iterable[LabelJob], renderer: Callable[[LabelJob], Any], stats: RenderStats) -> Iterator[tuple[LabelJob, Any]]:
    for job in jobs:
        stats.sent(1)
        yield job, _render_one(renderer, job)
        stats.in_flight -= 1


def _pool_context() -> multiprocessing.context.BaseContext:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["qr.batch"])  # takes effect when the server first starts
    return context


def _pooled(
    jobs: Iterable[LabelJob], renderer: Callable[[LabelJob], Any], workers: int, stats: RenderStats
) -> Iterator[tuple[LabelJob, Any]]:
    window: deque[tuple[list[LabelJob], Future[list[Any]]]] = deque()
    pool = ProcessPoolExecutor(workers, mp_context=_pool_context(), initializer=_install, initargs=(renderer,))
    try:
        source = iter(jobs)
        while True:
            # top the window up, then hand out the oldest chunk's labels
            while len(window) < workers * CHUNKS_PER_WORKER and (chunk := list(islice(source, CHUNK_LABELS))):
                stats.sent(len(chunk))
                window.append((chunk, pool.submit(_render_chunk, chunk)))
            if not window:
                return
            chunk, future = window.popleft()
            for job, result in zip(chunk, future.result()):
                yield job, result
                stats.in_flight -= 1
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# --- outputs ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What a batch made."""

    labels: int
    pages: int  #: PDF pages; 0 for other outputs
    seconds: float

    @property
    def rate(self) -> float:
        """Labels per second."""
        return self.labels / self.seconds if self.seconds > 0 else 0.0


def file_stem(handle: str) -> str:
    """``handle`` made safe as a file name: anything but letters (of any
    script), digits, ``.``, ``-`` and ``_`` made ``_``, cut to
    MAX_NAME_CHARS. No path separator survives, so no name leaves its
    folder; callers put something before it, so no name starts with ``.``."""
    return re.sub(r"[^\w.-]", "_", handle)[:MAX_NAME_CHARS]


def png_name(number: int, handle: str) -> str:
    """The file name of the ``number``-th label (1-based) of a batch:
    ``000001-88.118.2_PRD-1.png``. The number makes names unique (a handle
    may repeat, and handles differing only in case or punctuation would
    meet on some file systems) and keeps the source order; the
    :func:`file_stem` of the handle makes it findable."""
    return f"{number:06d}-{file_stem(handle)}.png"


def png_folder(
    jobs: Iterable[LabelJob],
    folder: str | Path,
    layout: LabelLayout,
    *,
    workers: int | None = None,
    progress: Progress | None = None,
    stats: RenderStats | None = None,
) -> BatchResult:
    """One PNG file a label in ``folder`` (created if missing), named by
    :func:`png_name`; files of the same name are replaced.

    Raises:
        LabelFailed, BrokenProcessPool: as :func:`render`.
        OSError: the folder or a file cannot be written.
    """
    started = time.monotonic()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for job, png in render(jobs, PngLabel(layout), workers=workers, stats=stats):
        count += 1
        (folder / png_name(count, job.handle)).write_bytes(png)
        if progress is not None:
            progress(1)
    return BatchResult(count, 0, time.monotonic() - started)


def pdf_sheets(
    jobs: Iterable[LabelJob],
    out: BinaryIO,
    layout: LabelLayout,
    sheet: SheetLayout = SheetLayout(),
    *,
    workers: int | None = None,
    progress: Progress | None = None,
    stats: RenderStats | None = None,
) -> BatchResult:
    """A PDF of pages of ``sheet``, labels in a grid (:mod:`qr.sheet`),
    written to ``out`` page by page.

    Raises:
        InvalidValue: not even one label fits the sheet, or there are no jobs.
        LabelFailed, BrokenProcessPool: as :func:`render`.
    """
    started = time.monotonic()
    grid = Grid.fit(sheet, layout.pixels(layout.width_mm), layout.pixels(layout.height_mm), layout.dpi)
    writer = SheetWriter(out, grid)
    count = 0
    for _, raster in render(jobs, RasterLabel(layout), workers=workers, stats=stats):
        writer.add(raster)
        count += 1
        if progress is not None:
            progress(1)
    if not count:
        raise InvalidValue("no labels to print: the source is empty")
    pages = writer.close()
    return BatchResult(count, pages, time.monotonic() - started)


def zpl_stream(
    jobs: Iterable[LabelJob],
    out: BinaryIO,
    layout: LabelLayout,
    *,
    font: str = DEFAULT_FONT,
    progress: Progress | None = None,
) -> BatchResult:
    """ZPL for every label (:func:`qr.zpl.label_zpl`), UTF-8, to ``out``.

    Raises:
        InvalidValue: a module too large for the printer's ``^BQ``, or a
            label its code or handle does not fit (naming the handle).
    """
    started = time.monotonic()
    magnification(layout.module)  # fail before the first label, not in it
    count = 0
    for job in jobs:
        try:
            zpl = label_zpl(job, layout, font)
        except IdnodeError as exc:
            raise LabelFailed(job.handle, exc.message) from None
        out.write(zpl.encode("utf-8"))
        count += 1
        if progress is not None:
            progress(1)
    return BatchResult(count, 0, time.monotonic() - started)


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[BinaryIO]:
    """A file to write ``path`` through: written as ``<path>.part`` and
    renamed over ``path`` when the block ends normally, removed otherwise,
    so a failed or interrupted batch never leaves half a file under the
    name a printer or person would open."""
    path = Path(path)
    partial = path.with_name(path.name + ".part")
    try:
        with open(partial, "wb") as f:
            yield f
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
