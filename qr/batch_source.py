"""Where a batch's labels come from: an NDJSON file, a CSV file, or a numbered
range under a prefix; each a generator of :class:`LabelJob`, read as used.

- NDJSON: the file ``idnode batch`` registers, so one file registers the
  identifiers and prints their labels. Each non-blank line is an object
  with ``handle`` and optionally ``values`` (REST JSON; the label lines come
  from them, :func:`qr.label.label_lines`) or ``lines`` (the label's text
  lines as given). Lines with ``"op": "delete"`` print nothing.
- CSV (UTF-8, a BOM allowed, as spreadsheets write it): a header row with a
  ``handle`` column and optionally ``product_name``, ``batch``, ``date``,
  ``enterprise``, which become the lines as the same-named record fields
  would; other columns are ignored.
- A range: ``prefix/`` + ``pattern.format(n=n)`` for n from ``first`` to
  ``last``, e.g. ``PRD-2026-{n:06d}``; every label gets the same lines.

Handles are parsed as ``idnode batch`` parses them (:func:`idcore.handle.parse`:
``hdl:`` and resolver-URL forms are accepted) and printed in their plain form.
A line that cannot make a label raises :class:`SourceError` naming the file,
the line number and the problem; nothing is skipped silently.
"""

from __future__ import annotations

import csv
import re
import string
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import orjson

from idcore.errors import IdnodeError, InvalidValue
from idcore.handle import Handle, check_prefix, parse
from idcore.limits import MAX_BATCH_LINE_BYTES, MAX_HANDLE_LENGTH
from qr.label import label_lines

#: What a label's code carries for a handle (see :func:`qr.payload.payload_for`).
PayloadMaker = Callable[[Handle], str]

#: CSV columns that become label lines, with the record value type each
#: stands for (so CSV and NDJSON lines read the same, :data:`qr.label.LINE_FIELDS`).
CSV_LINE_COLUMNS = {
    "product_name": "PRODUCT_NAME",
    "batch": "BATCH",
    "date": "MANUFACTURE_DATE",
    "enterprise": "ENTERPRISE",
}

#: Longest CSV line, in bytes: a label line is short, and the csv
#: module's own limit (128 KiB) is the same order; named here so a
#: hostile file fails with a line number instead of filling memory.
MAX_CSV_LINE_BYTES = 64 * 1024

_UTF8_BOM = b"\xef\xbb\xbf"


class LabelJob(NamedTuple):
    """One label to make.

    Attributes:
        handle: the handle in plain ``prefix/suffix`` form, printed on the label.
        payload: the text its code carries.
        lines: the text lines under the handle (product, batch, ...).
    """

    handle: str
    payload: str
    lines: tuple[str, ...]


class SourceError(InvalidValue):
    """A line of a label source that cannot make a label.

    Attributes (in ``details``): ``source`` (the file or range), ``line``
    (1-based line number, or the range's ``n``).
    """

    def __init__(self, source: str, line: int, problem: str, *, handle: str | None = None) -> None:
        super().__init__(f"{source}, line {line}: {problem}", handle=handle, source=source, line=line)
        self.problem = problem


def ndjson_jobs(path: str | Path, payload: PayloadMaker) -> Iterator[LabelJob]:
    """The labels of an NDJSON file (see the module doc), one line at a time.

    Raises:
        SourceError: a line that is too long, not a JSON object, without a
            valid ``handle``, or with malformed ``values`` or ``lines``.
        OSError: the file cannot be read.
    """
    name = str(path)
    with open(path, "rb") as f:
        number = 0
        while True:
            # one more byte than allowed tells a too-long line from a full one
            raw = f.readline(MAX_BATCH_LINE_BYTES + 2)
            if not raw:
                return
            number += 1
            if number == 1 and raw.startswith(_UTF8_BOM):
                raw = raw[len(_UTF8_BOM) :]
            if len(raw.rstrip(b"\r\n")) > MAX_BATCH_LINE_BYTES:
                raise SourceError(name, number, f"line exceeds {MAX_BATCH_LINE_BYTES} bytes (MAX_BATCH_LINE_BYTES)")
            if not raw.strip():
                continue
            job = _ndjson_job(name, number, raw, payload)
            if job is not None:
                yield job


def _ndjson_job(name: str, number: int, raw: bytes, payload: PayloadMaker) -> LabelJob | None:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise SourceError(name, number, f"not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise SourceError(name, number, "must be a JSON object with a 'handle'")
    if obj.get("op") == "delete":
        return None
    handle = _handle(name, number, obj.get("handle"))
    if "lines" in obj:
        lines = obj["lines"]
        if not isinstance(lines, list) or not all(isinstance(line, str) for line in lines):
            raise SourceError(name, number, "'lines' must be a list of strings", handle=handle.to_text())
        texts: Sequence[str] = lines
    else:
        values = obj.get("values", [])
        if not isinstance(values, list) or not all(isinstance(value, dict) for value in values):
            raise SourceError(name, number, "'values' must be a list of REST JSON value objects", handle=handle.to_text())
        texts = label_lines(values)
    return _job(name, number, handle, texts, payload)


def csv_jobs(path: str | Path, payload: PayloadMaker) -> Iterator[LabelJob]:
    """The labels of a CSV file (see the module doc), one row at a time.

    Raises:
        SourceError: no ``handle`` column in the header, a row with more
            fields than the header, a line over MAX_CSV_LINE_BYTES or not UTF-8, a
            malformed row or an invalid handle.
        OSError: the file cannot be read.
    """
    name = str(path)
    with open(path, "rb") as f:
        reader = csv.reader(_decoded_lines(f, name), strict=True)  # a stray quote is an error, not data
        try:
            header = next(reader, None)
        except csv.Error as exc:
            raise SourceError(name, reader.line_num, f"not valid CSV ({exc})") from None
        if header is None:
            return
        columns = [column.strip().lower() for column in header]
        if "handle" not in columns:
            raise SourceError(name, 1, f"the header row needs a 'handle' column (it has: {', '.join(columns)})")
        where = {column: i for i, column in reversed(list(enumerate(columns)))}  # the first of repeated names
        handle_at = where["handle"]
        line_columns = [(where[column], kind) for column, kind in CSV_LINE_COLUMNS.items() if column in where]
        while True:
            try:
                row = next(reader, None)
            except csv.Error as exc:
                raise SourceError(name, reader.line_num, f"not valid CSV ({exc})") from None
            if row is None:
                return
            number = reader.line_num
            if not row or not any(field.strip() for field in row):
                continue
            if len(row) > len(columns):
                raise SourceError(name, number, f"the row has {len(row)} fields, the header {len(columns)}")
            row += [""] * (len(columns) - len(row))
            handle = _handle(name, number, row[handle_at])
            values = [_string_value(kind, row[i]) for i, kind in line_columns if row[i].strip()]
            yield _job(name, number, handle, label_lines(values), payload)


def _decoded_lines(f: BinaryIO, name: str) -> Iterator[str]:
    """``f``'s lines as text, each checked to be UTF-8 (so the error names
    the line) and at most MAX_CSV_LINE_BYTES bytes (a quoted field may span
    lines; the csv module then bounds it by its own field limit)."""
    number = 0
    while True:
        raw = f.readline(MAX_CSV_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_CSV_LINE_BYTES:
            raise SourceError(name, number, f"line exceeds {MAX_CSV_LINE_BYTES} bytes (MAX_CSV_LINE_BYTES)")
        if number == 1 and raw.startswith(_UTF8_BOM):
            raw = raw[len(_UTF8_BOM) :]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:  # spreadsheets in China often save GBK
            raise SourceError(name, number, f"not UTF-8 text ({exc.reason}); save the file as CSV UTF-8") from None


def range_jobs(
    prefix: str, pattern: str, first: int, last: int, payload: PayloadMaker, lines: Sequence[str] = ()
) -> Iterator[LabelJob]:
    """The labels of ``prefix/<pattern.format(n=n)>`` for n in ``first..last``.

    The prefix, the pattern and the first and last handles are checked
    before anything is yielded.

    Raises:
        InvalidValue: a bad prefix, a pattern without ``{n}`` or that does
            not format, a range that is empty or negative, or a first or
            last handle that is invalid.
        SourceError: a handle within the range that is invalid
            (its ``line`` is ``n``).
    """
    try:
        check_prefix(prefix)
    except IdnodeError as exc:
        raise InvalidValue(exc.message) from None
    if type(first) is not int or type(last) is not int or not 0 <= first <= last:
        raise InvalidValue(f"range {first!r}..{last!r} must be whole numbers with 0 <= from <= to")
    _check_pattern(pattern)
    source = f"{prefix}/{pattern} for n = {first}..{last}"
    if _suffix(pattern, first) == _suffix(pattern, first + 1):
        raise InvalidValue(f"pattern {pattern!r} must contain {{n}} (e.g. PRD-{{n:06d}}): every handle would be the same")
    texts = tuple(lines)
    for n in (first, last):  # fail before the first label rather than after thousands
        _job(source, n, _range_handle(source, prefix, pattern, n), texts, payload)
    return _range(source, prefix, pattern, first, last, texts, payload)


def _range(
    source: str, prefix: str, pattern: str, first: int, last: int, texts: tuple[str, ...], payload: PayloadMaker
) -> Iterator[LabelJob]:
    for n in range(first, last + 1):
        yield _job(source, n, _range_handle(source, prefix, pattern, n), texts, payload)


def _check_pattern(pattern: str) -> None:
    """Only ``{n}`` fields, with widths no handle could hold refused (a
    ``{n:999999999d}`` would build a gigabyte string before any check)."""
    try:
        fields = list(string.Formatter().parse(pattern))
    except ValueError as exc:
        raise InvalidValue(f"pattern {pattern!r} is not a format string ({exc}); use {{n}} or {{n:06d}}") from None
    for _, field, spec, _ in fields:
        if field is None:
            continue
        if field != "n":
            raise InvalidValue(f"pattern {pattern!r} may only use the field {{n}}, not {{{field}}}")
        if any(int(width) > MAX_HANDLE_LENGTH for width in re.findall(r"[0-9]+", spec or "")):
            raise InvalidValue(f"pattern {pattern!r}: a width over {MAX_HANDLE_LENGTH} (MAX_HANDLE_LENGTH) makes no handle")


def _suffix(pattern: str, n: int) -> str:
    try:
        return pattern.format(n=n)
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        raise InvalidValue(f"pattern {pattern!r} does not format with n={n} ({exc}); use {{n}} or {{n:06d}}") from None


def _range_handle(source: str, prefix: str, pattern: str, n: int) -> Handle:
    try:
        return Handle(prefix, _suffix(pattern, n))
    except IdnodeError as exc:
        raise SourceError(source, n, exc.message) from None


def _handle(name: str, number: int, text: Any) -> Handle:
    if not isinstance(text, str):
        raise SourceError(name, number, "needs a 'handle' string")
    try:
        return parse(text)
    except IdnodeError as exc:
        raise SourceError(name, number, exc.message) from None


def _job(name: str, number: int, handle: Handle, lines: Sequence[str], payload: PayloadMaker) -> LabelJob:
    text = handle.to_text()
    try:
        return LabelJob(text, payload(handle), tuple(lines))
    except IdnodeError as exc:
        raise SourceError(name, number, exc.message, handle=text) from None


def _string_value(kind: str, text: str) -> dict[str, Any]:
    return {"type": kind, "data": {"format": "string", "value": text.strip()}}


def count_jobs(jobs: Iterator[LabelJob]) -> int:
    """How many labels ``jobs`` makes, read to the end (so every line is
    checked before any label is made)."""
    return sum(1 for _ in jobs)
