"""``idnode qr``: a code or label for one handle, batches of labels, and
reading codes back.

- ``idnode qr HANDLE`` (short for ``idnode qr label HANDLE``): a PNG or SVG
  of the code, or with ``--label`` a PNG label with the handle and lines
  (given with ``--line``, or the record's, fetched from the resolver with
  ``--fetch``);
- ``idnode qr batch``: labels from an NDJSON or CSV file or a numbered range
  to a PDF of sheets, a ZPL file or a folder of PNG files, with a progress
  bar and a summary line;
- ``idnode qr verify IMAGE``: decode every code in a PNG/JPEG image, page 1
  of a PDF or an SVG, and print its text, error-correction level and
  version; exit 1 when none decodes or none carries ``--expect``.

Exit codes as :mod:`scripts.cli_common`; bad local input (a file, a layout
that does not fit) is 4.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from tqdm import tqdm

from idcore.errors import IdnodeError
from idcore.handle import Handle, parse
from qr import batch as qr_batch
from qr.batch_source import (
    LabelJob,
    PayloadMaker,
    count_jobs,
    csv_jobs,
    ndjson_jobs,
    range_jobs,
)
from qr.image import png_bytes, svg_text
from qr.label import LabelLayout, label_lines, label_png
from qr.payload import DEFAULT_RESOLVER_URL, PayloadForm, payload_for, resolver_base
from qr.sheet import A4_MM, DEFAULT_GAP_MM, DEFAULT_PAGE_MARGIN_MM, Grid, SheetLayout
from qr.symbol import (
    DEFAULT_DPI,
    DEFAULT_MODULE_MM,
    EC_LEVELS,
    MAX_DPI,
    MIN_DPI,
    ModuleSize,
    make_symbol,
)
from qr.verify import Decoded, decode, open_image
from qr.zpl import DEFAULT_FONT, magnification
from resolver.rest_client import NodeClient
from scripts.cli_common import EXIT_REFUSED, EXIT_USAGE, CliError, node_errors

#: Words after ``idnode qr`` that name a subcommand; anything else is a handle.
QR_COMMANDS = ("label", "batch", "verify")

#: Resolution PDF pages and SVGs are rasterised at to be decoded unless
#: told: the printer resolution labels are drawn at.
VERIFY_DPI = DEFAULT_DPI

_LAYOUT_DEFAULTS = LabelLayout()


def implicit_label(argv: Sequence[str]) -> list[str]:
    """``argv`` with ``qr HANDLE ...`` spelled ``qr label HANDLE ...``, so
    that one label needs no subcommand word (a handle holds a ``/``, so it
    is never one of QR_COMMANDS)."""
    argv = list(argv)
    if argv[:1] == ["qr"] and (len(argv) == 1 or argv[1] not in (*QR_COMMANDS, "-h", "--help")):
        argv.insert(1, "label")
    return argv


def add_parser(commands: Any) -> None:
    """Add ``qr`` and its subcommands to ``idnode``'s subparsers."""
    qr = commands.add_parser(
        "qr", help="QR codes and labels: one (idnode qr HANDLE), a batch, or verify an image",
        description="idnode qr HANDLE is short for idnode qr label HANDLE.",
    )
    sub = qr.add_subparsers(dest="qr_command", required=True, metavar="{label,batch,verify}")

    label = sub.add_parser("label", help="a code (PNG/SVG) or a label (PNG) for one handle")
    label.add_argument("handle", help="identifier in any form: 88.118.2/X, hdl:88.118.2/X, https://resolver/88.118.2/X")
    label.add_argument("-o", "--output", help="FILE.png or FILE.svg (default: the handle as a file name, .png)")
    label.add_argument("--label", action="store_true", help="a label: the code, the handle and text lines (PNG only)")
    label.add_argument("--line", action="append", default=[], help="a text line on the label; repeatable")
    label.add_argument("--fetch", action="store_true", help="the label's lines from the record, fetched from --resolver")
    _payload_options(label)
    _layout_options(label)
    label.set_defaults(run=run_label)

    batch = sub.add_parser("batch", help="labels for many handles: a PDF of sheets, ZPL, or PNG files")
    source = batch.add_mutually_exclusive_group(required=True)
    source.add_argument("--ndjson", metavar="FILE", help="NDJSON, one {\"handle\", \"values\" or \"lines\"} a line (idnode batch's format)")
    source.add_argument("--csv", metavar="FILE", help="CSV with a header: handle[,product_name,batch,date,enterprise]")
    source.add_argument("--prefix", help="a numbered range under this prefix (with --pattern, --from, --to)")
    batch.add_argument("--pattern", help="suffix pattern of the range, e.g. PRD-2026-{n:06d}")
    batch.add_argument("--from", dest="first", type=int, help="first n of the range")
    batch.add_argument("--to", dest="last", type=int, help="last n of the range")
    batch.add_argument("--line", action="append", default=[], help="a text line on every label of a range; repeatable")
    output = batch.add_mutually_exclusive_group(required=True)
    output.add_argument("--pdf", metavar="OUT.pdf", help="a PDF of sheets, labels in a grid")
    output.add_argument("--zpl", metavar="OUT.zpl", help="ZPL for Zebra-style label printers")
    output.add_argument("--png-dir", metavar="DIR", help="one PNG file a label in DIR")
    _payload_options(batch)
    _layout_options(batch)
    sheet = batch.add_argument_group("PDF sheets")
    sheet.add_argument("--page-width-mm", type=float, default=A4_MM[0], help="page width (default A4: %(default)s)")
    sheet.add_argument("--page-height-mm", type=float, default=A4_MM[1], help="page height (default A4: %(default)s)")
    sheet.add_argument("--page-margin-mm", type=float, default=DEFAULT_PAGE_MARGIN_MM, help="page margin (default %(default)s)")
    sheet.add_argument("--gap-mm", type=float, default=DEFAULT_GAP_MM, help="gap between labels (default %(default)s)")
    batch.add_argument(
        "--zpl-font", default=DEFAULT_FONT,
        help="ZPL font: a built-in name (default %(default)s, Latin only) or a CJK font stored on the printer, e.g. E:SIMSUN.TTF",
    )
    batch.add_argument("--workers", type=int, help=f"worker processes (default: one per core, here {qr_batch.default_workers()})")
    batch.add_argument("--quiet", action="store_true", help="no progress bar")
    batch.set_defaults(run=run_batch)

    verify = sub.add_parser("verify", help="decode the codes in an image (PNG, JPEG, PDF page 1, SVG)")
    verify.add_argument("image", help="the image file")
    verify.add_argument("--expect", metavar="TEXT", help="exit 1 unless a code carries exactly TEXT")
    verify.add_argument("--dpi", type=int, default=VERIFY_DPI, help="resolution to rasterise PDF and SVG at (default %(default)s)")
    verify.set_defaults(run=run_verify)


def _payload_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--form", choices=[form.value for form in PayloadForm], default=PayloadForm.URL.value,
        help="what the code carries: the resolver URL of the handle, or the handle (default %(default)s)",
    )
    parser.add_argument(
        "--resolver", default=os.environ.get("IDNODE_RESOLVER", DEFAULT_RESOLVER_URL),
        help="resolver base URL for the url form and --fetch (env IDNODE_RESOLVER; default %(default)s)",
    )
    parser.add_argument("--level", choices=list(EC_LEVELS), default=_LAYOUT_DEFAULTS.level, help="error correction (default %(default)s)")
    parser.add_argument("--module-mm", type=float, default=DEFAULT_MODULE_MM, help="module size, snapped to printer dots (default %(default)s)")
    parser.add_argument("--dpi", type=int, default=DEFAULT_DPI, help="printer resolution (default %(default)s)")


def _layout_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("label layout (millimetres)")
    group.add_argument("--width-mm", type=float, default=_LAYOUT_DEFAULTS.width_mm, help="label width (default %(default)s)")
    group.add_argument("--height-mm", type=float, default=_LAYOUT_DEFAULTS.height_mm, help="label height (default %(default)s)")
    group.add_argument("--margin-mm", type=float, default=_LAYOUT_DEFAULTS.margin_mm, help="label margin (default %(default)s)")
    group.add_argument("--font", help="font file for the text lines (default: a CJK-capable font found on this machine)")


def _layout(args: Any) -> LabelLayout:
    try:
        module = ModuleSize.snapped(args.module_mm, args.dpi)
        return LabelLayout(
            width_mm=args.width_mm, height_mm=args.height_mm, margin_mm=args.margin_mm,
            module=module, level=args.level, font=args.font,
        )
    except IdnodeError as exc:
        raise CliError(exc.message) from None


def _payload_maker(args: Any) -> PayloadMaker:
    form = PayloadForm(args.form)
    try:
        resolver = resolver_base(args.resolver)
    except IdnodeError as exc:
        raise CliError(exc.message, EXIT_USAGE) from None
    return lambda handle: payload_for(handle, form, resolver)


# --- one code or label ------------------------------------------------------------


async def run_label(args: Any) -> int:
    """``idnode qr [label] HANDLE``."""
    try:
        handle = parse(args.handle)
    except IdnodeError as exc:
        raise CliError(f"{args.handle!r} is not an identifier: {exc.message}", EXIT_USAGE) from None
    output = Path(args.output or qr_batch.file_stem(handle.to_text()) + ".png")
    if output.suffix.lower() not in (".png", ".svg"):
        raise CliError(f"--output {output} must end in .png or .svg", EXIT_USAGE)
    if args.label and output.suffix.lower() == ".svg":
        raise CliError("labels are drawn as PNG; give --output FILE.png (or leave out --label for an SVG code)", EXIT_USAGE)
    if (args.fetch or args.line) and not args.label:
        raise CliError("--fetch and --line are for labels: add --label", EXIT_USAGE)
    if args.fetch and args.line:
        raise CliError("the lines come from --line or from the record (--fetch), not both", EXIT_USAGE)
    payload = _payload_maker(args)(handle)
    layout = _layout(args)
    try:
        if args.label:
            lines = await _fetched_lines(args.resolver, handle) if args.fetch else args.line
            data = label_png(payload, handle.to_text(), lines, layout)
            what = f"label {layout.width_mm:g} x {layout.height_mm:g} mm"
        else:
            symbol = make_symbol(payload, layout.level)
            data = png_bytes(symbol, layout.module) if output.suffix.lower() == ".png" else svg_text(symbol, layout.module).encode()
            what = f"code version {symbol.version}, {symbol.modules * layout.module.mm:.1f} mm square"
    except IdnodeError as exc:
        raise CliError(exc.message) from None
    try:
        output.write_bytes(data)
    except OSError as exc:
        raise CliError(f"cannot write {output}: {exc.strerror}") from None
    print(f"{output}: {what}, level {layout.level}, {layout.module.mm:.3f} mm modules at {layout.dpi} dpi: {payload}")
    return 0


async def _fetched_lines(resolver: str, handle: Handle) -> list[str]:
    """The label lines of ``handle``'s record, as the resolver returns it."""
    with node_errors():
        async with NodeClient(resolver) as client:
            record = await client.get(handle.to_text())
    values = record.get("values")
    return label_lines(values if isinstance(values, list) else [])


# --- batches ----------------------------------------------------------------------


def _source(args: Any, payload: PayloadMaker) -> tuple[Callable[[], Iterator[LabelJob]], int | None]:
    """A factory of the batch's jobs, and their count when known without
    reading the source."""
    if args.prefix is not None:
        if args.pattern is None or args.first is None or args.last is None:
            raise CliError("a range needs --prefix, --pattern, --from and --to", EXIT_USAGE)
        jobs = range_jobs(args.prefix, args.pattern, args.first, args.last, payload, args.line)  # checks them now
        return (lambda: jobs), args.last - args.first + 1
    if args.pattern is not None or args.first is not None or args.last is not None or args.line:
        raise CliError("--pattern, --from, --to and --line go with --prefix", EXIT_USAGE)
    path = args.ndjson if args.ndjson is not None else args.csv
    read = ndjson_jobs if args.ndjson is not None else csv_jobs
    return (lambda: read(path, payload)), None


def run_batch(args: Any) -> int:
    """``idnode qr batch``."""
    layout = _layout(args)
    payload = _payload_maker(args)
    try:
        sheet = SheetLayout(args.page_width_mm, args.page_height_mm, args.page_margin_mm, args.gap_mm)
        # what makes every label fail is reported before the source is read
        if args.pdf:
            Grid.fit(sheet, layout.pixels(layout.width_mm), layout.pixels(layout.height_mm), layout.dpi)
        if args.zpl:
            magnification(layout.module)
        jobs, total = _source(args, payload)
        if total is None:  # every line is checked before the first label is made
            total = count_jobs(jobs())
    except IdnodeError as exc:
        raise CliError(exc.message) from None
    except OSError as exc:
        raise CliError(f"cannot read {exc.filename}: {exc.strerror}") from None
    if total == 0:
        raise CliError("no labels to make: the source has no handles")
    bar = tqdm(total=total, unit="label", disable=args.quiet, file=sys.stderr, smoothing=0.1)
    target = args.pdf or args.zpl or args.png_dir
    try:
        if args.png_dir:
            result = qr_batch.png_folder(jobs(), args.png_dir, layout, workers=args.workers, progress=bar.update)
        else:
            with qr_batch.replacing(target) as out:
                if args.pdf:
                    result = qr_batch.pdf_sheets(jobs(), out, layout, sheet, workers=args.workers, progress=bar.update)
                else:
                    result = qr_batch.zpl_stream(jobs(), out, layout, font=args.zpl_font, progress=bar.update)
    except IdnodeError as exc:
        raise CliError(exc.message) from None
    except OSError as exc:
        raise CliError(f"cannot write {exc.filename or target}: {exc.strerror}") from None
    except BrokenProcessPool:
        raise CliError("a worker process died (killed for lack of memory?); the batch stopped") from None
    finally:
        bar.close()
    pages = f", {result.pages} pages" if args.pdf else ""
    print(f"{result.labels} labels{pages}, {result.seconds:.1f} s, {result.rate:.0f} labels/s -> {target}")
    return 0


# --- verification -----------------------------------------------------------------


def run_verify(args: Any) -> int:
    """``idnode qr verify IMAGE``."""
    path = Path(args.image)
    if not MIN_DPI <= args.dpi <= MAX_DPI:
        raise CliError(f"--dpi {args.dpi} must be in {MIN_DPI}..{MAX_DPI}", EXIT_USAGE)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    try:
        image = _rasterised(path.suffix.lower(), data, args.dpi)
    except IdnodeError as exc:
        raise CliError(f"{path}: {exc.message}") from None
    found = decode(image)
    for code in found:
        print(_describe(code))
    if not found:
        print(f"{path}: no QR code could be read", file=sys.stderr)
        return EXIT_REFUSED
    if args.expect is not None and not any(code.text == args.expect for code in found):
        print(f"{path}: no code carries {args.expect!r} (read: {', '.join(repr(c.text) for c in found)})", file=sys.stderr)
        return EXIT_REFUSED
    return 0


def _rasterised(suffix: str, data: bytes, dpi: int) -> Any:
    """The image to decode: a raster file as it is, page 1 of a PDF or an
    SVG drawn at ``dpi``. pypdfium2 and cairosvg are imported here, when a
    PDF or SVG is verified, not every time ``idnode`` starts."""
    if suffix == ".pdf":
        return _pdf_page(data, dpi)
    if suffix == ".svg":
        try:
            import cairosvg
        except (ImportError, OSError) as exc:  # cairocffi raises OSError when libcairo is missing
            raise CliError(f"verifying SVG needs cairosvg and the cairo library (libcairo2): {exc}") from None
        try:
            data = cairosvg.svg2png(bytestring=data, dpi=dpi, background_color="white")
        except Exception as exc:  # cairosvg raises whatever its XML and CSS parsers raise
            raise CliError(f"not an SVG that can be drawn: {exc}") from None
    return open_image(data)


def _pdf_page(data: bytes, dpi: int) -> Any:
    import pypdfium2

    from qr.verify import MAX_DECODE_PIXELS

    try:
        document = pypdfium2.PdfDocument(data)
    except pypdfium2.PdfiumError as exc:
        raise CliError(f"not a PDF that can be read: {exc}") from None
    try:
        if len(document) == 0:
            raise CliError("the PDF has no pages")
        page = document[0]
        width_pt, height_pt = page.get_size()
        scale = dpi / 72
        if width_pt * scale * height_pt * scale > MAX_DECODE_PIXELS:
            raise CliError(f"page 1 at {dpi} dpi exceeds MAX_DECODE_PIXELS ({MAX_DECODE_PIXELS}); give a lower --dpi")
        return page.render(scale=scale, grayscale=True).to_pil()
    finally:
        document.close()


def _describe(code: Decoded) -> str:
    """One decoded code as a line; the text last, as it may hold spaces."""
    return f"level {code.level}  version {code.version}  {code.text}"
