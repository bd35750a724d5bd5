"""A QR symbol: the module matrix for a payload, and its size on paper.

Encoding is qrcode's (segment modes chosen per run of the payload, the
smallest version that fits, the mask with the lowest penalty). What is
decided here: the error-correction level (Q unless asked; never raised
behind the caller's back, which qrcode does not do either), the quiet zone
(always four modules, as ISO/IEC 18004 requires; scanners miss codes
printed closer to other ink), and module sizes snapped to whole printer
dots, so every module prints the same width.
"""

from __future__ import annotations

from dataclasses import dataclass

import qrcode
from qrcode.exceptions import DataOverflowError

from idcore.errors import InvalidValue

#: Error-correction levels by letter, with the share of the symbol that may
#: be damaged and still read: L 7 %, M 15 %, Q 25 %, H 30 %.
EC_LEVELS = {
    "L": qrcode.constants.ERROR_CORRECT_L,
    "M": qrcode.constants.ERROR_CORRECT_M,
    "Q": qrcode.constants.ERROR_CORRECT_Q,
    "H": qrcode.constants.ERROR_CORRECT_H,
}

#: Level used unless another is asked for: labels on products get scuffed,
#: and Q survives a quarter of the symbol lost.
DEFAULT_EC_LEVEL = "Q"

#: Light modules around the symbol, on every side (ISO/IEC 18004: four).
QUIET_ZONE_MODULES = 4

#: Printer resolutions accepted, dots per inch: from screen previews to
#: high-resolution label printers.
MIN_DPI, MAX_DPI = 72, 2400

#: Module sizes accepted, millimetres: below 0.1 mm no printer or camera
#: keeps up; above 5 mm a code is a poster.
MIN_MODULE_MM, MAX_MODULE_MM = 0.1, 5.0

#: Module size used unless another is asked for: reads well with phone
#: cameras at arm's length and handheld scanners.
DEFAULT_MODULE_MM = 0.5

#: Printer resolution used unless another is asked for (common label printers).
DEFAULT_DPI = 300


def check_level(level: str) -> str:
    """``level`` as one of L, M, Q, H (any case).

    Raises:
        InvalidValue: another letter or word.
    """
    upper = level.upper() if isinstance(level, str) else level
    if upper not in EC_LEVELS:
        raise InvalidValue(f"error-correction level {level!r} must be one of L, M, Q, H")
    return upper


@dataclass(frozen=True, slots=True)
class ModuleSize:
    """A module's width in whole printer dots at ``dpi``."""

    dots: int
    dpi: int

    @property
    def mm(self) -> float:
        """The printed width of one module, millimetres."""
        return self.dots * 25.4 / self.dpi

    @classmethod
    def snapped(cls, mm: float = DEFAULT_MODULE_MM, dpi: int = DEFAULT_DPI) -> ModuleSize:
        """The module nearest ``mm`` millimetres that is a whole number of
        dots at ``dpi`` (at least one dot).

        Raises:
            InvalidValue: ``mm`` or ``dpi`` outside the accepted ranges.
        """
        if type(dpi) is not int or not MIN_DPI <= dpi <= MAX_DPI:
            raise InvalidValue(f"dpi {dpi!r} must be a whole number in {MIN_DPI}..{MAX_DPI}")
        if not isinstance(mm, (int, float)) or not MIN_MODULE_MM <= mm <= MAX_MODULE_MM:
            raise InvalidValue(f"module size {mm!r} mm must be in {MIN_MODULE_MM}..{MAX_MODULE_MM}")
        return cls(max(1, round(mm * dpi / 25.4)), dpi)


@dataclass(frozen=True, slots=True)
class Symbol:
    """An encoded payload.

    Attributes:
        payload: the text it carries.
        level: error-correction letter.
        version: QR version (1..40; the symbol is 17 + 4 * version modules wide).
        rows: the matrix including the quiet zone, one ``bytes`` per row,
            1 for a dark module and 0 for a light one.
    """

    payload: str
    level: str
    version: int
    rows: tuple[bytes, ...]

    @property
    def modules(self) -> int:
        """Width (and height) in modules, quiet zone included."""
        return len(self.rows)


def make_symbol(payload: str, level: str = DEFAULT_EC_LEVEL) -> Symbol:
    """Encode ``payload`` at error-correction ``level``.

    Raises:
        InvalidValue: an unknown level, an empty payload, or one too long
            for any QR version at that level (the level is not lowered).
    """
    level = check_level(level)
    if not payload:
        raise InvalidValue("a QR payload cannot be empty")
    code = qrcode.QRCode(error_correction=EC_LEVELS[level], border=QUIET_ZONE_MODULES, box_size=1)
    code.add_data(payload)  # optimize=20: runs of digits or upper-case letters get denser modes
    try:
        code.make(fit=True)
    except (DataOverflowError, ValueError):
        raise InvalidValue(f"payload of {len(payload.encode())} bytes does not fit a QR code at level {level}") from None
    rows = tuple(bytes(row) for row in code.get_matrix())  # bools -> 0/1 bytes
    return Symbol(payload, level, code.version, rows)
