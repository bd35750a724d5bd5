"""Reading codes back: what a scanner would see in an image.

Decoding is zxing-cpp's (the C++ port of ZXing, the reader most phone and
handheld scanner software is built on): it reports the text, the
error-correction level and the version, which is what verifying a label
needs, and reads QR codes in photos as well as in clean renders.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import zxingcpp
from PIL import Image, UnidentifiedImageError

from idcore.errors import InvalidValue

#: Largest image accepted for decoding, in pixels: a phone photo is about
#: 12 megapixels; more is not a label and would only burn memory.
MAX_DECODE_PIXELS = 40_000_000


@dataclass(frozen=True, slots=True)
class Decoded:
    """One QR code found in an image."""

    text: str
    level: str  #: error-correction letter, L/M/Q/H
    version: int


def open_image(data: bytes) -> Image.Image:
    """An uploaded or stored image (PNG, JPEG, ... anything Pillow reads).

    Raises:
        InvalidValue: not an image, or larger than MAX_DECODE_PIXELS.
    """
    try:
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > MAX_DECODE_PIXELS:
            raise InvalidValue(
                f"image of {image.width}x{image.height} pixels exceeds MAX_DECODE_PIXELS ({MAX_DECODE_PIXELS})"
            )
        image.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise InvalidValue(f"not an image that can be read: {exc}") from None
    return image


def decode(image: Image.Image) -> list[Decoded]:
    """Every QR code zxing-cpp finds in ``image``, in reading order."""
    if image.mode not in ("L", "RGB", "RGBA"):
        image = image.convert("L")
    found = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)
    return [
        Decoded(barcode.text, barcode.ec_level, int(barcode.extra.get("Version", 0) or 0))
        for barcode in found
        if barcode.valid
    ]
