"""``idnode batch FILE``: stream a file of operations, show progress, summarise.

Lines are sent as they are read and results counted as they come back, so
a file of millions of lines needs no more memory than one line. Exit code
0 when every line succeeded, 1 when any was refused or the node stopped the
batch, 3 when the connection broke before every line was answered (send the
file again: lines already done answer "unchanged").
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path
from typing import Any, AsyncIterator, BinaryIO

import orjson
from tqdm import tqdm

from scripts.cli_common import EXIT_REFUSED, EXIT_UNREACHABLE, CliError, client_for, node_errors

#: Bytes read from the input file per chunk sent.
SEND_CHUNK_BYTES = 256 * 1024

#: Refused lines echoed on stderr; the rest only go to --errors.
MAX_ERRORS_SHOWN = 10


class _Sent:
    """Counts the operation lines (non-blank) that went out, as the node does."""

    def __init__(self) -> None:
        self.lines = 0
        self._partial = b""

    def feed(self, chunk: bytes) -> None:
        *complete, self._partial = (self._partial + chunk).split(b"\n")
        self.lines += sum(1 for line in complete if line.strip())

    def finish(self) -> None:
        if self._partial.strip():
            self.lines += 1
        self._partial = b""


async def _chunks(source: BinaryIO, sent: _Sent) -> AsyncIterator[bytes]:
    while chunk := source.read(SEND_CHUNK_BYTES):
        sent.feed(chunk)
        yield chunk
    sent.finish()


def _count_lines(path: Path) -> int:
    counter = _Sent()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            counter.feed(chunk)
    counter.finish()
    return counter.lines


async def run(args: Any) -> int:
    if args.file == "-":
        source, total = sys.stdin.buffer, None
    else:
        path = Path(args.file)
        try:
            source, total = path.open("rb"), _count_lines(path)
        except OSError as exc:
            raise CliError(f"cannot read {args.file}: {exc.strerror}") from None
    statuses: collections.Counter[str] = collections.Counter()
    errors: collections.Counter[int] = collections.Counter()
    stopped: list[str] = []
    shown = 0
    sent = _Sent()
    error_file = open(args.errors, "wb") if args.errors else None
    bar = tqdm(total=total, unit="line", disable=args.quiet, file=sys.stderr, smoothing=0.1)

    def on_result(result: dict[str, Any]) -> None:
        nonlocal shown
        if "line" not in result:  # the node stopped the batch and says why
            stopped.append(str(result.get("message")))
            return
        bar.update(1)
        if result.get("responseCode") == 1:
            statuses[result.get("status", "ok")] += 1
            return
        errors[result.get("responseCode", 0)] += 1
        if error_file is not None:
            error_file.write(orjson.dumps(result) + b"\n")
        if shown < MAX_ERRORS_SHOWN:
            shown += 1
            bar.write(f"line {result.get('line')}: {result.get('message')} (code {result.get('responseCode')})", file=sys.stderr)

    try:
        with node_errors():
            async with client_for(args) as client:
                await client.batch(_chunks(source, sent), on_result)
    finally:
        bar.close()
        source.close()
        if error_file is not None:
            error_file.close()
    answered = sum(statuses.values()) + sum(errors.values())
    summary = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items())) or "nothing"
    print(f"{answered} lines: {summary}; {sum(errors.values())} refused")
    if errors:
        print("refused by response code: " + ", ".join(f"{code}: {n}" for code, n in sorted(errors.items())))
    if stopped:
        raise CliError(f"the node stopped the batch: {stopped[0]}", EXIT_REFUSED)
    if answered < sent.lines:
        raise CliError(
            f"the node answered {answered} of {sent.lines} lines; send the file again"
            " (lines already done answer 'unchanged')",
            EXIT_UNREACHABLE,
        )
    return EXIT_REFUSED if errors else 0
