"""Labels as ZPL II, for Zebra-style thermal label printers, which draw the
QR code themselves (``^BQ``) from the same payload and error-correction
level as our PNG and PDF labels.

The layout mirrors :mod:`qr.label`: a landscape label has the code at the
top-left inside the margin and the text to its right, left-aligned and
level with the code's first row of modules; other labels have the code
centred at the top and the text centred below. The printer picks the
code's version itself; we place it and the text for the version qrcode
picks for the same payload, and refuse labels the code does not fit.

ZPL facts relied on (Zebra Programming Guide, ``^BQ``, ``^FD``, ``^FH``,
``^CI``, ``^PW``, ``^LL``):

- ``^XA`` opens a label format and ``^XZ`` closes it; ``^PW`` is the print
  width and ``^LL`` the label length, both in dots; ``^LH0,0`` puts the
  label home at the top-left corner; ``^FOx,y`` places the next field's
  top-left corner, in dots.
- ``^CI28`` makes field data UTF-8, so ``^FD`` text may hold Chinese.
- ``^BQN,2,m``: a QR code, normal orientation, model 2, ``m`` dots per
  module (the magnification, 1 to 10). The printer draws no quiet zone, so
  we leave four modules free around ``^FO``'s corner ourselves.
- For a QR code, ``^FD`` starts with the error-correction letter (H, Q, M,
  L) and the input mode: ``A`` (automatic) is followed by a comma and the
  data; the printer picks numeric, alphanumeric or byte segments. Automatic
  input cannot carry bytes 0x80-0x9F and 0xE0-0xFF, which UTF-8 uses for
  Chinese, so a payload that is not ASCII goes in manual input as one byte
  segment: ``M,B`` then the byte count in four digits, then the bytes.
- ``^`` and ``~`` start commands even inside field data; ``^FH`` lets a
  field spell any byte as ``_`` and two hex digits, so data holding
  ``^``, ``~`` (or ``_`` itself) is written that way.
- ``^A0N,h,w`` is the printer's scalable font 0 (CG Triumvirate Bold
  Condensed) at ``h`` x ``w`` dots; ``^FBw,1,0,J`` sets a one-line block of
  ``w`` dots justified ``J`` (L or C). Font 0 holds no Chinese: a printer
  printing Chinese lines needs a font with CJK glyphs stored on it, named
  here as ``font`` (``E:SIMSUN.TTF`` gives ``^A@N,h,w,E:SIMSUN.TTF``).
"""

from __future__ import annotations

import unicodedata

import qrcode
from qrcode.exceptions import DataOverflowError
from qrcode.util import MODE_8BIT_BYTE, QRData

from idcore.errors import InvalidValue
from qr.batch_source import LabelJob
from qr.label import LabelLayout, one_line
from qr.symbol import EC_LEVELS, QUIET_ZONE_MODULES, ModuleSize

#: ``^BQ`` magnifications the printer accepts: dots per module.
MIN_MAGNIFICATION, MAX_MAGNIFICATION = 1, 10

#: The printer's built-in scalable font; it draws Latin text only.
DEFAULT_FONT = "0"

#: Line pitch as a multiple of the text height: font 0's line plus the
#: little lead :mod:`qr.label` leaves between its lines.
LINE_PITCH = 1.25

#: Estimated advance of one character of font 0, as a share of the text
#: height, to cut lines the printer would otherwise wrap over themselves:
#: narrow (Latin, digits) and wide (East Asian full-width) characters.
#: Font 0 is condensed; these err on the wide side.
NARROW_ADVANCE, WIDE_ADVANCE = 0.6, 1.0

#: What marks a cut line; font 0 has no ``…``.
CUT_MARK = "..."

# ^FH's escape character, and what must be escaped in field data.
_HEX_INDICATOR = "_"
_ZPL_SPECIAL = frozenset("^~" + _HEX_INDICATOR)


def magnification(module: ModuleSize) -> int:
    """``^BQ``'s magnification for ``module``: its width in printer dots.

    Raises:
        InvalidValue: more than MAX_MAGNIFICATION dots (the printer cannot
            draw modules that large; ask for a smaller module).
    """
    if not MIN_MAGNIFICATION <= module.dots <= MAX_MAGNIFICATION:
        largest = MAX_MAGNIFICATION * 25.4 / module.dpi
        raise InvalidValue(
            f"a module of {module.mm:.2f} mm is {module.dots} dots at {module.dpi} dpi, but ZPL's ^BQ draws"
            f" {MIN_MAGNIFICATION} to {MAX_MAGNIFICATION} dots a module; use a module of at most {largest:.2f} mm"
        )
    return module.dots


def qr_field_data(payload: str, level: str) -> str:
    """The ``^FD`` data of a QR code of ``payload`` at ``level``, before
    ``^FH`` escaping: ``QA,<payload>`` for ASCII, ``QM,B<count><payload>``
    (count in bytes) otherwise."""
    if payload.isascii():
        return f"{level}A,{payload}"
    size = len(payload.encode("utf-8"))
    return f"{level}M,B{size:04d}{payload}"


def label_zpl(job: LabelJob, layout: LabelLayout, font: str = DEFAULT_FONT) -> str:
    """One label as a ZPL format (``^XA`` ... ``^XZ``, one field a line).

    Raises:
        InvalidValue: a module too large for ``^BQ``, a payload too long
            for a code at the level, or a label too small for the code or
            for the handle's line.
    """
    dots = magnification(layout.module)
    width, height, margin = layout.pixels(layout.width_mm), layout.pixels(layout.height_mm), layout.pixels(layout.margin_mm)
    side = _symbol_modules(job.payload, layout.level) * dots  # quiet zone included
    if side > width - 2 * margin or side > height - 2 * margin:
        raise InvalidValue(
            f"the code is {layout.millimetres(side):.1f} mm square with its quiet zone but the label has"
            f" {layout.millimetres(width - 2 * margin):.1f} x {layout.millimetres(height - 2 * margin):.1f} mm inside"
            " its margins; use a smaller module, a lower error-correction level or a larger label"
        )
    quiet = QUIET_ZONE_MODULES * dots
    landscape = layout.width_mm > layout.height_mm
    if landscape:
        code_x, code_y = margin, margin
        box = (margin + side, margin + quiet, width - margin, height - margin)
    else:
        code_x, code_y = (width - side) // 2, margin
        box = (margin, margin + side, width - margin, height - margin)
    out = [
        "^XA",
        "^CI28",
        f"^PW{width}",
        f"^LL{height}",
        "^LH0,0",
        f"^FO{code_x + quiet},{code_y + quiet}^BQN,2,{dots}{_field(qr_field_data(job.payload, layout.level))}^FS",
    ]
    out += _text_fields(job, layout, box, landscape, font)
    out.append("^XZ")
    return "\n".join(out) + "\n"


def _text_fields(
    job: LabelJob, layout: LabelLayout, box: tuple[int, int, int, int], landscape: bool, font: str
) -> list[str]:
    left, top, right, bottom = box
    block = right - left
    justify = "L" if landscape else "C"
    fields = []
    y = top
    for i, text in enumerate((job.handle, *job.lines)):
        size = layout.pixels(layout.handle_text_mm if i == 0 else layout.line_text_mm)
        pitch = round(size * LINE_PITCH)
        fitted = _fit(text, size, block, middle=i == 0)
        if fitted is None or y + pitch > bottom:
            if i == 0:
                raise InvalidValue(
                    f"no room for the handle on a {layout.width_mm} x {layout.height_mm} mm label beside or under"
                    " the code; use a larger label, a smaller module or a lower error-correction level"
                )
            break  # like qr.label: lines that find no room are left off, the last first
        fields.append(f"^FO{left},{y}{_font(font, size)}^FB{block},1,0,{justify},0{_field(fitted)}^FS")
        y += pitch
    return fields


def _font(font: str, size: int) -> str:
    """``^A`` for ``font``: a built-in one-character font name, or a font
    file stored on the printer (``E:NAME.TTF``)."""
    if ":" in font:
        return f"^A@N,{size},{size},{font}"
    return f"^A{font}N,{size},{size}"


def _field(text: str) -> str:
    """``^FD<text>``, preceded by ``^FH`` and hex-escaped where ``text``
    holds characters ZPL would read as commands."""
    if not any(ch in _ZPL_SPECIAL for ch in text):
        return "^FD" + text
    escaped = "".join(f"{_HEX_INDICATOR}{ord(ch):02X}" if ch in _ZPL_SPECIAL else ch for ch in text)
    return f"^FH{_HEX_INDICATOR}^FD{escaped}"


def _advance(ch: str) -> float:
    return WIDE_ADVANCE if unicodedata.east_asian_width(ch) in ("W", "F") else NARROW_ADVANCE


def _fit(text: str, size: int, width: int, *, middle: bool) -> str | None:
    """``text`` on one line, cut (in the middle, or at the end) to what an
    estimate says fits ``width`` dots at ``size``; None when not even the
    cut mark fits."""
    # a field is one line: ZPL would print control characters, not break on them
    text = one_line(text)
    budget = width / size
    if sum(map(_advance, text)) <= budget:
        return text
    best, low, high = None, 0, len(text) - 1
    while low <= high:  # the most characters kept that still fit
        keep = (low + high) // 2
        if middle:
            head = (keep + 1) // 2
            candidate = text[:head] + CUT_MARK + text[len(text) - (keep - head) :]
        else:
            candidate = text[:keep] + CUT_MARK
        if sum(map(_advance, candidate)) <= budget:
            best, low = candidate, keep + 1
        else:
            high = keep - 1
    return best


def _symbol_modules(payload: str, level: str) -> int:
    """Width in modules, quiet zone included, of the code the printer
    makes: qrcode's choice of segments for ASCII (as automatic input), one
    byte segment otherwise (as manual input).

    Raises:
        InvalidValue: the payload fits no QR version at ``level``.
    """
    code = qrcode.QRCode(error_correction=EC_LEVELS[level], border=QUIET_ZONE_MODULES)
    code.add_data(payload if payload.isascii() else QRData(payload.encode("utf-8"), mode=MODE_8BIT_BYTE))
    try:
        version = code.best_fit()
    except (DataOverflowError, ValueError):
        raise InvalidValue(f"payload of {len(payload.encode())} bytes does not fit a QR code at level {level}") from None
    return 17 + 4 * version + 2 * QUIET_ZONE_MODULES
