"""Labels: a QR code, its handle in type a person can read, and a few lines
about the product, drawn as a 1-bit image at the printer's resolution.

Layout rule (all sizes in millimetres, converted at the module's dpi):

- a label wider than tall (landscape) has the code at the top-left corner
  inside the margin and a text column to the right of the code's quiet
  zone, top-aligned with the code's first row of modules: the handle first,
  then the lines, left-aligned;
- any other label (portrait or square) has the code centred at the top and
  the text below its quiet zone: the handle, then the lines, centred.

Text never touches the quiet zone nor leaves the label. A line too wide for
its space is set smaller, down to :data:`MIN_TEXT_MM`, and then cut, ``…``
marking the cut (in the middle of the handle, whose prefix and serial end
both matter; at the end of other lines). Lines that find no room below are
left off, the last first; a label with no room for the handle, or for the
code itself, is refused (:class:`~idcore.errors.InvalidValue`).

Fonts: the handle is set in a monospace face (:func:`find_font` ``"mono"``);
the lines, and a handle with characters the monospace face lacks, in a face
covering Chinese (``"cjk"``, or the override of ``LabelLayout.font`` or
:data:`FONT_ENV`), using its monospaced variant for the handle when the
font file holds one. Missing fonts or glyphs raise :class:`FontMissing`.
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from idcore.errors import InvalidValue
from idcore.limits import MAX_HANDLE_LENGTH
from qr.fonts import (  # FontMissing and find_font are part of this module's API too
    FONT_ENV,
    Face,
    FontMissing,
    find_font,
    has_glyph,
    load_font,
    missing_glyphs,
    mono_variant,
    require_glyphs,
    text_face,
)
from qr.image import symbol_image
from qr.symbol import (
    DEFAULT_EC_LEVEL,
    QUIET_ZONE_MODULES,
    ModuleSize,
    check_level,
    make_symbol,
)
from qr.verify import MAX_DECODE_PIXELS

__all__ = [
    "DEFAULT_MODULE",
    "FONT_ENV",
    "FontMissing",
    "LabelLayout",
    "find_font",
    "label_lines",
    "label_png",
    "one_line",
    "render_label",
]

MM_PER_INCH = 25.4

#: Module size of a label unless another is asked for: qr.symbol's default
#: (0.5 mm) at its default printer resolution (300 dpi).
DEFAULT_MODULE = ModuleSize.snapped()

#: Label sides accepted, millimetres: below 10 mm no code with its quiet
#: zone and handle fits; above 300 mm it is a sheet, not a label.
MIN_LABEL_MM, MAX_LABEL_MM = 10.0, 300.0

#: Margins accepted, millimetres: 0 for pre-cut stock printed edge to edge,
#: up to 20 mm for printers that cannot print near the edge.
MIN_MARGIN_MM, MAX_MARGIN_MM = 0.0, 20.0

#: Text sizes (em height) accepted, millimetres. MIN_TEXT_MM is also the
#: size long text shrinks to before it is cut: about 4 pt, the smallest type
#: that stays legible on a 203-300 dpi thermal print.
MIN_TEXT_MM, MAX_TEXT_MM = 1.4, 20.0

#: Largest label in pixels: one that :mod:`qr.verify` can still read back.
MAX_LABEL_PIXELS = MAX_DECODE_PIXELS

#: Longest text considered for one line; longer values (a hostile record)
#: are cut before measuring, so they cost no more than the longest handle.
MAX_LINE_CHARS = MAX_HANDLE_LENGTH

#: Value types that fill the label lines, in the order lines are printed;
#: for each line the first type listed that the record has wins.
LINE_FIELDS: tuple[tuple[str, ...], ...] = (
    ("PRODUCT_NAME", "NAME"),
    ("BATCH",),
    ("MANUFACTURE_DATE", "PRODUCTION_DATE", "DATE"),
    ("ENTERPRISE", "MANUFACTURER"),
)

ELLIPSIS = "…"



def _line_face(layout: LabelLayout) -> Face:
    """The face for label lines: the override, else the CJK font found."""
    override = layout.font or os.environ.get(FONT_ENV) or None
    return text_face(str(override) if override else str(find_font("cjk")))


def _handle_face(handle_text: str, layout: LabelLayout) -> Face:
    """Monospace if it has every character, else the line font's mono variant."""
    mono = (str(find_font("mono")), 0)
    if not missing_glyphs(mono, handle_text):
        return mono
    return mono_variant(_line_face(layout))


# --- layout ------------------------------------------------------------------


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class LabelLayout:
    """Size and look of a label; lengths in millimetres.

    Attributes:
        width_mm, height_mm: the label, in MIN_LABEL_MM..MAX_LABEL_MM.
        margin_mm: blank border, in MIN_MARGIN_MM..MAX_MARGIN_MM.
        module: module size and printer dpi; the label is drawn at its dpi.
        level: error-correction level of the code (L, M, Q, H).
        handle_text_mm, line_text_mm: text sizes (em height) of the handle
            and of the other lines, in MIN_TEXT_MM..MAX_TEXT_MM.
        font: font file for the lines, overriding the CJK font found.

    Raises:
        InvalidValue: a field out of range, naming the field and the range.
    """

    width_mm: float = 50.0
    height_mm: float = 30.0
    margin_mm: float = 2.0
    module: ModuleSize = DEFAULT_MODULE
    level: str = DEFAULT_EC_LEVEL
    handle_text_mm: float = 2.2
    line_text_mm: float = 2.6
    font: Path | None = None

    def __post_init__(self) -> None:
        for name, low, high in (
            ("width_mm", MIN_LABEL_MM, MAX_LABEL_MM),
            ("height_mm", MIN_LABEL_MM, MAX_LABEL_MM),
            ("margin_mm", MIN_MARGIN_MM, MAX_MARGIN_MM),
            ("handle_text_mm", MIN_TEXT_MM, MAX_TEXT_MM),
            ("line_text_mm", MIN_TEXT_MM, MAX_TEXT_MM),
        ):
            value = getattr(self, name)
            if not _number(value) or not low <= value <= high:  # NaN fails the comparison too
                raise InvalidValue(f"label {name} {value!r} must be a number in {low}..{high}")
        if not isinstance(self.module, ModuleSize):
            raise InvalidValue(f"label module {self.module!r} must be a ModuleSize (see ModuleSize.snapped)")
        object.__setattr__(self, "level", check_level(self.level))
        if self.font is not None:
            if not isinstance(self.font, (str, os.PathLike)):
                raise InvalidValue(f"label font {self.font!r} must be a path to a font file")
            object.__setattr__(self, "font", Path(self.font))
        if 2 * self.margin_mm >= min(self.width_mm, self.height_mm):
            raise InvalidValue(
                f"label margin_mm {self.margin_mm} leaves nothing inside a"
                f" {self.width_mm} x {self.height_mm} mm label"
            )
        pixels = self.pixels(self.width_mm) * self.pixels(self.height_mm)
        if pixels > MAX_LABEL_PIXELS:
            raise InvalidValue(
                f"a {self.width_mm} x {self.height_mm} mm label at {self.module.dpi} dpi has {pixels} pixels,"
                f" more than MAX_LABEL_PIXELS ({MAX_LABEL_PIXELS})"
            )

    @property
    def dpi(self) -> int:
        """The printer resolution the label is drawn at (the module's)."""
        return self.module.dpi

    def pixels(self, mm: float) -> int:
        """``mm`` millimetres as whole printer dots."""
        return round(mm * self.module.dpi / MM_PER_INCH)

    def millimetres(self, px: int) -> float:
        """``px`` printer dots as millimetres."""
        return px * MM_PER_INCH / self.module.dpi


def one_line(text: str) -> str:
    """``text`` as one printable line: white space runs as one space, other
    unprintable characters dropped, at most MAX_LINE_CHARS."""
    text = " ".join(text.split())
    if not text.isprintable():  # rare: checked per character only then
        text = "".join(ch for ch in text if ch.isprintable())
    return text if len(text) <= MAX_LINE_CHARS else text[: MAX_LINE_CHARS - 1] + ELLIPSIS


def label_lines(values: list[dict]) -> list[str]:
    """The text lines of a label from a record's REST JSON values
    (``{"index", "type", "data": {"format", "value"}}``): product name,
    batch, date, enterprise, as :data:`LINE_FIELDS` lists their types
    (compared without regard to case). Only string values count; of several
    values of one type the first in the list wins; a line whose field is
    missing is left out, so the result has 0 to 4 lines."""
    by_type: dict[str, str] = {}
    for value in values:
        data = value.get("data") if isinstance(value, dict) else None
        if not isinstance(data, dict) or data.get("format") != "string":
            continue
        kind, text = value.get("type"), data.get("value")
        if isinstance(kind, str) and isinstance(text, str) and one_line(text):
            by_type.setdefault(kind.upper(), one_line(text))
    picked = (next((by_type[kind] for kind in kinds if kind in by_type), None) for kinds in LINE_FIELDS)
    return [text for text in picked if text is not None]


# --- drawing -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Run:
    """A line of text ready to draw: the font, the text (possibly cut) and
    its ink box relative to the drawing origin (left, ascender line)."""

    font: ImageFont.FreeTypeFont
    text: str
    ink: tuple[int, int, int, int]

    @property
    def width(self) -> int:
        """Width needed when drawn so that no ink lies left of the origin."""
        return self.ink[2] - min(self.ink[0], 0)

    @property
    def height(self) -> int:
        """Height of the line: the font's line, or the ink if taller."""
        ascent, descent = self.font.getmetrics()
        return max(ascent + descent, self.ink[3]) - min(self.ink[1], 0)


def _run(font: ImageFont.FreeTypeFont, text: str) -> _Run:
    return _Run(font, text, font.getbbox(text, anchor="la"))


def _cut(text: str, keep: int, middle: bool, ellipsis: str) -> str:
    if middle:
        head = (keep + 1) // 2
        return text[:head] + ellipsis + text[len(text) - (keep - head) :]
    return text[:keep] + ellipsis


@functools.lru_cache(maxsize=1024)
def _fit(text: str, face: Face, size_px: int, min_px: int, width_px: int, middle: bool) -> _Run | None:
    """``text`` in ``face`` within ``width_px``: at ``size_px`` if it fits,
    else smaller down to ``min_px``, else cut (see the module doc); None
    when not even the ellipsis fits. Cached: a batch repeats its lines."""
    run = _run(load_font(face, size_px), text)
    if run.width <= width_px:
        return run
    # width grows about in proportion to the size: start at the proportional guess
    px = max(min_px, min(size_px - 1, size_px * width_px // max(run.width, 1)))
    while True:
        run = _run(load_font(face, px), text)
        if run.width <= width_px:
            return run
        if px <= min_px:
            break
        px -= 1
    ellipsis = ELLIPSIS if has_glyph(face, ELLIPSIS) else "..."
    best, low, high = None, 0, len(text) - 1
    while low <= high:  # the most characters kept that still fit
        keep = (low + high) // 2
        candidate = _run(run.font, _cut(text, keep, middle, ellipsis))
        if candidate.width <= width_px:
            best, low = candidate, keep + 1
        else:
            high = keep - 1
    return best


def render_label(
    payload: str,
    handle_text: str,
    lines: Sequence[str],
    layout: LabelLayout = LabelLayout(),
) -> Image.Image:
    """A label carrying a code of ``payload``, ``handle_text`` under or
    beside it and ``lines`` after that (see the module doc for the layout).

    Returns:
        A mode "1" image of exactly ``layout.pixels(width_mm)`` x
        ``layout.pixels(height_mm)`` pixels, ``info["dpi"]`` set to the
        module's dpi.

    Raises:
        InvalidValue: a payload the code cannot carry (empty, too long for
            the level), an empty handle text, or a label too small for the
            code with its quiet zone, or for the handle at MIN_TEXT_MM.
        FontMissing: no font for the handle or lines, or one lacking glyphs
            for their characters.
    """
    handle_text = one_line(handle_text)
    if not handle_text:
        raise InvalidValue("a label's handle text cannot be empty")
    symbol = make_symbol(payload, layout.level)
    code = symbol_image(symbol, layout.module)
    width, height, margin = layout.pixels(layout.width_mm), layout.pixels(layout.height_mm), layout.pixels(layout.margin_mm)
    side = code.width
    if side > width - 2 * margin or side > height - 2 * margin:
        mm = layout.millimetres
        raise InvalidValue(
            f"the code is {mm(side):.1f} mm square with its quiet zone (version {symbol.version},"
            f" {symbol.modules} modules of {layout.module.mm:.2f} mm, level {symbol.level}) but the label has"
            f" {mm(width - 2 * margin):.1f} x {mm(height - 2 * margin):.1f} mm inside its margins;"
            " use a smaller module, a lower error-correction level or a larger label"
        )
    canvas = Image.new("1", (width, height), 1)
    landscape = layout.width_mm > layout.height_mm
    if landscape:
        canvas.paste(code, (margin, margin))
        # the text lines up with the code's first row of dark modules
        box = (margin + side, margin + QUIET_ZONE_MODULES * layout.module.dots, width - margin, height - margin)
    else:
        canvas.paste(code, ((width - side) // 2, margin))
        box = (margin, margin + side, width - margin, height - margin)
    _draw_text(canvas, box, landscape, handle_text, lines, layout)
    canvas.info["dpi"] = (layout.dpi, layout.dpi)
    return canvas


def _draw_text(
    canvas: Image.Image,
    box: tuple[int, int, int, int],
    landscape: bool,
    handle_text: str,
    lines: Sequence[str],
    layout: LabelLayout,
) -> None:
    """Draw the handle, then as many lines as fit, inside ``box``."""
    left, top, right, bottom = box
    min_px = max(1, layout.pixels(MIN_TEXT_MM))
    handle_face = _handle_face(handle_text, layout)
    require_glyphs(handle_face, handle_text)
    handle = _fit(handle_text, handle_face, layout.pixels(layout.handle_text_mm), min_px, right - left, True)
    if handle is None or handle.height > bottom - top:
        mm = layout.millimetres
        where = "beside" if landscape else "under"
        raise InvalidValue(
            f"no room for the handle on a {layout.width_mm} x {layout.height_mm} mm label: {mm(max(right - left, 0)):.1f}"
            f" x {mm(max(bottom - top, 0)):.1f} mm are left {where} the code, and the handle needs a line"
            f" {mm(_run(load_font(handle_face, min_px), handle_text[:1]).height):.1f} mm high at the smallest"
            f" text size ({MIN_TEXT_MM} mm); use a larger label, a smaller module or a lower error-correction level"
        )
    runs = [handle]
    used = handle.height
    texts = [text for text in map(one_line, lines) if text]
    face = _line_face(layout) if texts else None
    for text in texts:
        require_glyphs(face, text)
        run = _fit(text, face, layout.pixels(layout.line_text_mm), min_px, right - left, False)
        if run is None or used + run.height > bottom - top:
            break  # no room below: this line and the ones after it are left off
        runs.append(run)
        used += run.height
    y = top
    for number, run in enumerate(runs):
        x = left + ((right - left - run.width) // 2 if not landscape else 0)
        # the handle differs on every label; the lines of a batch repeat
        stamp = _stamp(run) if number == 0 else _cached_stamp(run)
        canvas.paste(0, (x, y), stamp)
        y += run.height


def _stamp(run: _Run) -> Image.Image:
    """``run`` as a 1-bit mask of ``run.width`` x ``run.height``, set where
    there is ink; drawn shifted by any ink left of or above the origin, so
    none is lost."""
    mask = Image.new("1", (run.width, run.height), 0)
    origin = (-min(run.ink[0], 0), -min(run.ink[1], 0))
    ImageDraw.Draw(mask).text(origin, run.text, font=run.font, fill=1, anchor="la")
    return mask


#: Rendering text is most of a label's drawing time; a batch's lines
#: (enterprise, batch, date) repeat, so their masks are kept.
_cached_stamp = functools.lru_cache(maxsize=256)(_stamp)


def label_png(
    payload: str,
    handle_text: str,
    lines: Sequence[str],
    layout: LabelLayout = LabelLayout(),
) -> bytes:
    """:func:`render_label` as PNG bytes whose pHYs chunk records the dpi.

    Raises:
        InvalidValue, FontMissing: as :func:`render_label`.
    """
    out = io.BytesIO()
    image = render_label(payload, handle_text, lines, layout)
    # a 1-bit label packs into a few KB at any level; the fastest costs a
    # fifth more bytes and saves a third of the encoding time
    image.save(out, format="PNG", dpi=(layout.dpi, layout.dpi), compress_level=1)
    return out.getvalue()
