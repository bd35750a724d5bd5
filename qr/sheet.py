"""Sheets of labels: equal labels in a grid on pages (A4 unless told), for
office printers and pre-cut label stock, written as a PDF page by page.

The grid is computed in printer dots, so every label lands on whole dots
and its modules print as the label image has them; page sizes, margins
and gaps are given in millimetres. Labels fill a page row by row, left to
right, from the top-left corner inside the margins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import BinaryIO

from idcore.errors import InvalidValue
from qr.pdf_stream import (
    MM_PER_INCH,
    POINTS_PER_INCH,
    PdfStreamWriter,
    RasterImage,
    mm_to_pt,
)

#: ISO 216 A4, millimetres.
A4_MM = (210.0, 297.0)

#: Page sides accepted, millimetres: from a small label roll's width up to
#: A0's long side; beyond that no printer takes the sheet.
MIN_PAGE_MM, MAX_PAGE_MM = 20.0, 1189.0

#: Page margin used unless another is asked for: office printers cannot
#: print within about 5 mm of the edge; 10 mm is safe on all of them.
DEFAULT_PAGE_MARGIN_MM = 10.0

#: Gap between neighbouring labels used unless another is asked for:
#: room to cut them apart without cutting into a quiet zone.
DEFAULT_GAP_MM = 2.0

#: Largest margin or gap accepted, millimetres (a quarter of an A4 width).
MAX_SPACING_MM = 50.0


@dataclass(frozen=True, slots=True)
class SheetLayout:
    """A page and how labels are spaced on it; lengths in millimetres.

    Raises:
        InvalidValue: a page side outside MIN_PAGE_MM..MAX_PAGE_MM, or a
            margin or gap outside 0..MAX_SPACING_MM.
    """

    page_width_mm: float = A4_MM[0]
    page_height_mm: float = A4_MM[1]
    margin_mm: float = DEFAULT_PAGE_MARGIN_MM
    gap_mm: float = DEFAULT_GAP_MM

    def __post_init__(self) -> None:
        for name, low, high in (
            ("page_width_mm", MIN_PAGE_MM, MAX_PAGE_MM),
            ("page_height_mm", MIN_PAGE_MM, MAX_PAGE_MM),
            ("margin_mm", 0.0, MAX_SPACING_MM),
            ("gap_mm", 0.0, MAX_SPACING_MM),
        ):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
                raise InvalidValue(f"sheet {name} {value!r} must be a number in {low}..{high}")


def _dots(mm: float, dpi: int) -> int:
    return round(mm * dpi / MM_PER_INCH)


@dataclass(frozen=True, slots=True)
class Grid:
    """Where labels go on a sheet; positions in printer dots from the
    page's top-left corner.

    Build with :meth:`fit`.
    """

    sheet: SheetLayout
    dpi: int
    label_width: int
    label_height: int
    columns: int
    rows: int

    @classmethod
    def fit(cls, sheet: SheetLayout, label_width: int, label_height: int, dpi: int) -> Grid:
        """The grid of ``label_width`` x ``label_height``-dot labels that
        ``sheet`` holds at ``dpi``.

        Raises:
            InvalidValue: not even one label fits inside the margins.
        """
        # whole dots inside the page: a label must not hang over its edge
        page_w = math.floor(sheet.page_width_mm * dpi / MM_PER_INCH)
        page_h = math.floor(sheet.page_height_mm * dpi / MM_PER_INCH)
        margin, gap = _dots(sheet.margin_mm, dpi), _dots(sheet.gap_mm, dpi)
        columns = (page_w - 2 * margin + gap) // (label_width + gap)
        rows = (page_h - 2 * margin + gap) // (label_height + gap)
        if columns < 1 or rows < 1:

            def mm(dots: int) -> float:
                return dots * MM_PER_INCH / dpi

            raise InvalidValue(
                f"a {mm(label_width):.1f} x {mm(label_height):.1f} mm label does not fit a"
                f" {sheet.page_width_mm:g} x {sheet.page_height_mm:g} mm page: inside {sheet.margin_mm:g} mm margins"
                f" {mm(max(page_w - 2 * margin, 0)):.1f} x {mm(max(page_h - 2 * margin, 0)):.1f} mm are left;"
                " use smaller labels, smaller margins or a larger page"
            )
        return cls(sheet, dpi, label_width, label_height, columns, rows)

    @property
    def per_page(self) -> int:
        """Labels on one page."""
        return self.columns * self.rows

    def origin(self, slot: int) -> tuple[int, int]:
        """Top-left corner, in dots, of the label in ``slot`` (0-based,
        row by row) of a page."""
        row, column = divmod(slot, self.columns)
        margin, gap = _dots(self.sheet.margin_mm, self.dpi), _dots(self.sheet.gap_mm, self.dpi)
        return margin + column * (self.label_width + gap), margin + row * (self.label_height + gap)


class SheetWriter:
    """Labels onto the pages of a PDF as they come (see :mod:`qr.pdf_stream`):
    each label is written when added; a page ends when full or at
    :meth:`close`. ``out`` is not closed."""

    def __init__(self, out: BinaryIO, grid: Grid) -> None:
        self.grid = grid
        self._pdf = PdfStreamWriter(out)
        self._slot = 0
        self._scale = POINTS_PER_INCH / grid.dpi  # points per dot
        self._page_pt = (mm_to_pt(grid.sheet.page_width_mm), mm_to_pt(grid.sheet.page_height_mm))

    @property
    def pages(self) -> int:
        """Pages started so far."""
        return self._pdf.pages + (1 if self._slot else 0)

    def add(self, label: RasterImage) -> None:
        """Place ``label`` in the next cell.

        Raises:
            ValueError: ``label`` is not the grid's label size.
        """
        if (label.width, label.height) != (self.grid.label_width, self.grid.label_height):
            raise ValueError(
                f"label of {label.width} x {label.height} dots in a grid of"
                f" {self.grid.label_width} x {self.grid.label_height}-dot cells"
            )
        if self._slot == 0:
            self._pdf.begin_page(*self._page_pt)
        x, y = self.grid.origin(self._slot)
        s = self._scale
        self._pdf.draw_image(label, x * s, y * s, label.width * s, label.height * s)
        self._slot += 1
        if self._slot == self.grid.per_page:
            self._pdf.end_page()
            self._slot = 0

    def close(self) -> int:
        """End the last page and the PDF; the number of pages.

        Raises:
            ValueError: no label was added (a PDF needs a page).
        """
        if self._slot:
            self._pdf.end_page()
            self._slot = 0
        self._pdf.close()
        return self._pdf.pages
