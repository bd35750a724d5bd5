"""Benchmark QR labels: how fast labels are made and read, and that a long
PDF batch runs in flat memory.

Prints, each as the median of ``--runs`` runs of ``--labels`` labels (50 x
30 mm, level Q, 0.5 mm modules at 300 dpi, the resolver URL of a demo
product and its four text lines):

1. PNG labels/s drawn and encoded in this one process;
2. PNG label batch labels/s with all cores (worker processes, files
   written to a folder);
3. PDF sheet labels/s (A4, 24 labels a page, all cores);
4. ZPL labels/s (one process: the printer draws the code);
5. decodes/s: zxing-cpp reading rendered labels back;
6. one ``--pdf-labels`` PDF batch (100,000 by default; 0 skips it): labels/s
   and the resident memory (VmRSS) of the parent and of its worker
   processes, sampled through the run: the peak over the first 10 % of the
   labels against the peak over the whole run. Flat memory means the two
   are about the same.

Not a test: figures depend on the machine.

    .venv/bin/python -m scripts.bench_qr [--runs 3] [--labels 2000] [--pdf-labels 100000] [--workers N] [--dir D]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from idcore.handle import Handle
from qr.batch import (
    PngLabel,
    default_workers,
    pdf_sheets,
    png_folder,
    render,
    zpl_stream,
)
from qr.batch_source import LabelJob
from qr.label import LabelLayout, label_lines, render_label
from qr.payload import PayloadForm, payload_for
from qr.verify import decode
from resolver.hierarchy import sample_handle, sample_values

PREFIX = "88.118.2"
RESOLVER = "https://resolver.example.com"
LAYOUT = LabelLayout()

#: Seconds between memory samples of the long PDF batch.
SAMPLE_INTERVAL_S = 0.5

#: Labels decoded in the decode benchmark (each decoded once a run).
DECODE_LABELS = 200


def demo_jobs(count: int) -> Iterator[LabelJob]:
    """``count`` demo products' labels: URL payloads and the record's lines."""
    for number in range(1, count + 1):
        handle = Handle.from_text(sample_handle(PREFIX, number))
        lines = tuple(label_lines(sample_values(PREFIX, number)))
        yield LabelJob(handle.to_text(), payload_for(handle, PayloadForm.URL, RESOLVER), lines)


def median_rate(runs: int, once: Callable[[], float]) -> tuple[float, list[float]]:
    """The median of ``runs`` calls of ``once`` (each returns a rate), and all of them."""
    rates = [once() for _ in range(runs)]
    return statistics.median(rates), rates


def timed(count: int, work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return count / (time.perf_counter() - started)


def show(number: str, what: str, rate: float, rates: list[float], unit: str = "labels/s") -> None:
    each = ", ".join(f"{r:,.0f}" for r in rates)
    print(f"{number} {what}: median {rate:,.0f} {unit} (runs: {each})", flush=True)


# --- memory of a process tree -------------------------------------------------------


def _rss_kib(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _children() -> dict[int, list[int]]:
    """Every process's children, from /proc."""
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # the name may hold spaces and parentheses
        tree.setdefault(ppid, []).append(int(entry))
    return tree


class TreeSampler:
    """Samples the VmRSS of this process and of its workers (the processes
    the fork server and the executor start: this process's grandchildren)
    with the number of labels written so far."""

    def __init__(self, written: Callable[[], int]) -> None:
        self.written = written
        self.samples: list[tuple[int, int, int, int]] = []  # (labels, parent KiB, largest worker KiB, all workers KiB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            tree = _children()
            workers = [grandchild for child in tree.get(me, []) for grandchild in tree.get(child, [])]
            sizes = [_rss_kib(pid) for pid in workers]
            self.samples.append((self.written(), _rss_kib(me), max(sizes, default=0), sum(sizes)))

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --- the benchmarks --------------------------------------------------------------------


def bench_png_one_process(labels: int) -> float:
    jobs = list(demo_jobs(labels))
    return timed(labels, lambda: sum(len(png) for _, png in render(jobs, PngLabel(LAYOUT), workers=0)))


def bench_png_batch(labels: int, workers: int, where: str) -> float:
    with tempfile.TemporaryDirectory(dir=where) as folder:
        return png_folder(demo_jobs(labels), folder, LAYOUT, workers=workers).rate


def bench_pdf(labels: int, workers: int, where: str) -> float:
    with tempfile.TemporaryFile(dir=where) as out:
        return pdf_sheets(demo_jobs(labels), out, LAYOUT, workers=workers).rate


def bench_zpl(labels: int, where: str) -> float:
    with tempfile.TemporaryFile(dir=where) as out:
        return zpl_stream(demo_jobs(labels), out, LAYOUT).rate


def bench_decode(images: list) -> float:
    def read_all() -> None:
        for image in images:
            if len(decode(image)) != 1:
                raise SystemExit("a rendered label did not decode")

    return timed(len(images), read_all)


def long_pdf_batch(labels: int, workers: int, where: str) -> None:
    written = 0

    def progress(count: int) -> None:
        nonlocal written
        written += count

    with tempfile.TemporaryFile(dir=where) as out, TreeSampler(lambda: written) as sampler:
        result = pdf_sheets(demo_jobs(labels), out, LAYOUT, workers=workers, progress=progress)
        size = out.tell()
    early = [s for s in sampler.samples if s[0] <= labels // 10] or sampler.samples[:1]
    every = sampler.samples
    print(
        f"6. PDF batch of {result.labels:,} labels: {result.pages:,} pages, {size / 2**20:,.0f} MiB,"
        f" {result.seconds:,.0f} s, {result.rate:,.0f} labels/s; {len(every)} memory samples", flush=True,
    )
    for name, column in (("parent", 1), ("largest worker", 2), ("all workers", 3)):
        first, run, end = (max(s[column] for s in early), max(s[column] for s in every), every[-1][column])
        print(
            f"   {name} VmRSS: peak in the first 10 % {first / 1024:,.1f} MiB,"
            f" peak over the run {run / 1024:,.1f} MiB, at the end {end / 1024:,.1f} MiB"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median; default %(default)s)")
    parser.add_argument("--labels", type=int, default=2000, help="labels per run (default %(default)s)")
    parser.add_argument("--pdf-labels", type=int, default=100_000, help="labels of the long PDF batch; 0 skips it")
    parser.add_argument("--workers", type=int, default=default_workers(), help="worker processes (default: one per core)")
    parser.add_argument(
        "--dir", default=".",
        help="where output files are written and removed (default: the current folder; on some machines /tmp is"
        " much slower at creating files, which a PNG folder batch measures)",
    )
    args = parser.parse_args(argv)
    print(
        f"{os.cpu_count()} cores, {args.workers} workers; {args.labels:,} labels a run, {args.runs} runs;"
        f" labels {LAYOUT.width_mm:g} x {LAYOUT.height_mm:g} mm, level {LAYOUT.level},"
        f" {LAYOUT.module.mm:.3f} mm modules at {LAYOUT.dpi} dpi", flush=True,
    )
    show("1.", "PNG labels, one process", *median_rate(args.runs, lambda: bench_png_one_process(args.labels)))
    show("2.", f"PNG label batch, {args.workers} workers", *median_rate(args.runs, lambda: bench_png_batch(args.labels, args.workers, args.dir)))
    show("3.", f"PDF sheets, {args.workers} workers", *median_rate(args.runs, lambda: bench_pdf(args.labels, args.workers, args.dir)))
    show("4.", "ZPL, one process", *median_rate(args.runs, lambda: bench_zpl(args.labels, args.dir)))
    images = [render_label(job.payload, job.handle, job.lines, LAYOUT) for job in demo_jobs(DECODE_LABELS)]
    show("5.", "decodes of rendered labels (zxing-cpp), one process", *median_rate(args.runs, lambda: bench_decode(images)), unit="decodes/s")
    if args.pdf_labels:
        long_pdf_batch(args.pdf_labels, args.workers, args.dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
