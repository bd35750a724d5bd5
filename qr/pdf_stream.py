"""A PDF written as it is made: raster images placed on pages, page after page.

Why our own writer: a batch of 100,000 labels is thousands of pages, and
memory must stay flat however long the batch. Pillow's PDF writer takes
every page as an image up front (it lists and counts them before writing
the first), and reportlab, fpdf2, pypdf, pikepdf and img2pdf all build the
whole document in memory and write it on save.
What a label sheet needs of PDF is small (ISO 32000-1: a catalog, a page
tree, pages whose content draws image XObjects, a cross-reference table),
so this module writes each object the moment it is complete and keeps only
what the end of the file needs: one 8-byte offset per object and one
object number per page: under a megabyte for a 100,000-label batch.

Images arrive already Flate-compressed (:class:`RasterImage`), so the
worker processes that render labels also do the compressing, and the
writer only copies bytes. The output goes to any binary file object,
seekable or not (nothing is ever rewritten).
"""

from __future__ import annotations

import zlib
from array import array
from typing import BinaryIO, NamedTuple

from PIL import Image

#: Points per inch: PDF user space units (ISO 32000-1, 8.3.2.3).
POINTS_PER_INCH = 72

#: Millimetres per inch.
MM_PER_INCH = 25.4

#: zlib level for image data: 6 (zlib's default) compresses 1-bit labels
#: within a few per cent of 9 at a third of the time.
FLATE_LEVEL = 6

# Object numbers fixed up front, so that pages can name their parent before
# the page tree itself is written (last, once every page is known).
_CATALOG = 1
_PAGES = 2


def mm_to_pt(mm: float) -> float:
    """Millimetres as PDF points."""
    return mm * POINTS_PER_INCH / MM_PER_INCH


class RasterImage(NamedTuple):
    """A grayscale raster, its rows Flate-compressed as PDF stores them.

    Attributes:
        width, height: pixels.
        bits: 1 (each row packed 8 pixels a byte, most significant bit
            first, padded to a whole byte; 0 is black, as Pillow's mode "1")
            or 8 (one byte a pixel, 0 black .. 255 white, Pillow's mode "L").
        data: the rows, zlib-compressed.
    """

    width: int
    height: int
    bits: int
    data: bytes

    @classmethod
    def from_image(cls, image: Image.Image, level: int = FLATE_LEVEL) -> RasterImage:
        """``image`` as a raster: mode "1" stays 1-bit, anything else
        becomes 8-bit gray."""
        if image.mode != "1" and image.mode != "L":
            image = image.convert("L")
        bits = 1 if image.mode == "1" else 8
        return cls(image.width, image.height, bits, zlib.compress(image.tobytes(), level))


def _num(value: float) -> bytes:
    """A PDF number: integers as such, others to 1/10000 of a point."""
    if value == int(value):
        return b"%d" % int(value)
    return (b"%.4f" % value).rstrip(b"0").rstrip(b".")


class PdfStreamWriter:
    """Writes a PDF to ``out`` page by page.

    Use::

        with PdfStreamWriter(out) as pdf:
            pdf.begin_page(width_pt, height_pt)
            pdf.draw_image(raster, x_pt, y_pt, width_pt, height_pt)
            pdf.end_page()

    Leaving the ``with`` block normally writes the page tree, the
    cross-reference table and the trailer; after an exception the output
    is left incomplete (callers write to a temporary name and rename).
    ``out`` is not closed.
    """

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._offset = 0
        self._offsets = array("Q", [0, 0])  # by object number - 1; catalog and page tree come last
        self._pages = array("Q")
        self._page: tuple[float, float] | None = None
        self._page_images: list[tuple[int, bytes]] = []  # (object number, placement operators)
        self._closed = False
        # the binary comment marks the file as binary for transfer tools (ISO 32000-1, 7.5.2)
        self._write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")

    @property
    def pages(self) -> int:
        """Pages finished so far."""
        return len(self._pages)

    def begin_page(self, width_pt: float, height_pt: float) -> None:
        """Start a page of ``width_pt`` x ``height_pt`` points.

        Raises:
            ValueError: a page is already open, the writer is closed, or a
                size is not positive.
        """
        if self._closed or self._page is not None:
            raise ValueError("begin_page: the writer is closed or a page is open")
        if not (width_pt > 0 and height_pt > 0):
            raise ValueError(f"page size {width_pt} x {height_pt} pt must be positive")
        self._page = (width_pt, height_pt)

    def draw_image(self, image: RasterImage, x_pt: float, y_pt: float, width_pt: float, height_pt: float) -> None:
        """Place ``image`` on the open page: its top-left corner ``x_pt``
        right of and ``y_pt`` below the page's top-left corner, scaled to
        ``width_pt`` x ``height_pt``. The image is written at once.

        Raises:
            ValueError: no page is open.
        """
        if self._page is None:
            raise ValueError("draw_image: no page is open")
        number = self._object(
            b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray"
            b" /BitsPerComponent %d /Filter /FlateDecode /Length %d >>"
            % (image.width, image.height, image.bits, len(image.data)),
            image.data,
        )
        # PDF's origin is the bottom-left corner and y grows upwards
        bottom = self._page[1] - y_pt - height_pt
        placement = b"q %s 0 0 %s %s %s cm /Im%d Do Q\n" % (
            _num(width_pt), _num(height_pt), _num(x_pt), _num(bottom), number
        )
        self._page_images.append((number, placement))

    def end_page(self) -> None:
        """Finish the open page: its content stream and page object.

        Raises:
            ValueError: no page is open.
        """
        if self._page is None:
            raise ValueError("end_page: no page is open")
        content = b"".join(placement for _, placement in self._page_images)
        contents = self._object(b"<< /Length %d >>" % len(content), content)
        xobjects = b" ".join(b"/Im%d %d 0 R" % (number, number) for number, _ in self._page_images)
        width, height = self._page
        page = self._object(
            b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 %s %s] /Resources << /XObject << %s >> >>"
            b" /Contents %d 0 R >>" % (_PAGES, _num(width), _num(height), xobjects, contents)
        )
        self._pages.append(page)
        self._page = None
        self._page_images = []

    def close(self) -> None:
        """Write the page tree, catalog, cross-reference table and trailer.

        Raises:
            ValueError: a page is still open, or no page was written (a PDF
                needs at least one).
        """
        if self._closed:
            return
        if self._page is not None:
            raise ValueError("close: end the open page first")
        if not self._pages:
            raise ValueError("a PDF needs at least one page")
        kids = b" ".join(b"%d 0 R" % number for number in self._pages)
        self._object(b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(self._pages)), number=_PAGES)
        self._object(b"<< /Type /Catalog /Pages %d 0 R >>" % _PAGES, number=_CATALOG)
        xref_at = self._offset
        count = len(self._offsets) + 1
        self._write(b"xref\n0 %d\n0000000000 65535 f \n" % count)
        # each entry exactly 20 bytes, as the format requires (ISO 32000-1, 7.5.4)
        for offset in self._offsets:
            self._write(b"%010d 00000 n \n" % offset)
        self._write(b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (count, _CATALOG, xref_at))
        self._closed = True

    def __enter__(self) -> PdfStreamWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()

    def _object(self, head: bytes, stream: bytes | None = None, *, number: int | None = None) -> int:
        """Write one indirect object (a dictionary, with ``stream`` if given);
        its number (the next free one unless ``number`` was reserved)."""
        if number is None:
            self._offsets.append(0)
            number = len(self._offsets)
        self._offsets[number - 1] = self._offset
        if stream is None:
            self._write(b"%d 0 obj\n%s\nendobj\n" % (number, head))
        else:
            self._write(b"%d 0 obj\n%s\nstream\n" % (number, head))
            self._write(stream)
            self._write(b"\nendstream\nendobj\n")
        return number

    def _write(self, data: bytes) -> None:
        self._out.write(data)
        self._offset += len(data)
