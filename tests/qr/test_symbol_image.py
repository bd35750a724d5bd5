"""Payloads, symbols and their PNG/SVG images, each decoded back with zxing-cpp."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import cairosvg
import pytest

from idcore.errors import InvalidValue
from idcore.handle import parse
from qr.image import png_bytes, svg_text
from qr.payload import PayloadForm, payload_for, url_payload
from qr.symbol import QUIET_ZONE_MODULES, ModuleSize, make_symbol
from qr.verify import decode, open_image

CHINESE = "88.118.2/批次-2024/减速机"
RESOLVER = "HTTPS://Resolver.Example.COM"

#: (level, module mm, dpi): every level, common printer resolutions, and
#: module sizes from one dot (0.1 mm at 254 dpi) to screen previews.
CASES = [
    ("L", 0.25, 203),
    ("M", 0.5, 300),
    ("Q", 0.33, 600),
    ("H", 1.0, 72),
    ("Q", 0.1, 254),
]

PAYLOADS = [
    "88.118.2/PRD-2024-000123",
    CHINESE,
    url_payload(parse(CHINESE), RESOLVER),
]


def only(found):
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize(("level", "mm", "dpi"), CASES)
def test_png_decodes_to_payload_at_level_and_size(payload, level, mm, dpi):
    symbol = make_symbol(payload, level)
    module = ModuleSize.snapped(mm, dpi)
    image = open_image(png_bytes(symbol, module))

    got = only(decode(image))
    assert got.text == payload
    assert got.level == level
    assert got.version == symbol.version

    side = symbol.modules * module.dots
    assert image.size == (side, side)
    assert image.info["dpi"] == pytest.approx((dpi, dpi), abs=0.01)  # pHYs stores dots per metre
    quiet = QUIET_ZONE_MODULES * module.dots
    gray = image.convert("L")
    for box in ((0, 0, side, quiet), (0, side - quiet, side, side), (0, 0, quiet, side), (side - quiet, 0, side, side)):
        assert gray.crop(box).getextrema() == (255, 255), f"quiet zone {box} is not white"
    # just inside the quiet zone sits the top-left finder pattern
    assert gray.getpixel((quiet, quiet)) == 0


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize(("level", "mm", "dpi"), CASES[:4])
def test_svg_rasterised_decodes_and_is_sized_in_mm(payload, level, mm, dpi):
    symbol = make_symbol(payload, level)
    module = ModuleSize.snapped(mm, dpi)
    svg = svg_text(symbol, module)

    root = ET.fromstring(svg)
    for attribute in ("width", "height"):
        value = root.get(attribute)
        assert value.endswith("mm")
        assert float(value[:-2]) == pytest.approx(symbol.modules * module.mm, abs=1e-3)

    image = open_image(cairosvg.svg2png(bytestring=svg.encode(), dpi=dpi))
    side = symbol.modules * module.dots
    assert abs(image.width - side) <= 1 and abs(image.height - side) <= 1
    got = only(decode(image))
    assert (got.text, got.level, got.version) == (payload, level, symbol.version)


def test_url_payload_percent_encodes_only_what_it_must_and_parses_back():
    handle = parse(CHINESE)
    payload = url_payload(handle, RESOLVER)
    assert payload == "https://resolver.example.com/88.118.2/%E6%89%B9%E6%AC%A1-2024/%E5%87%8F%E9%80%9F%E6%9C%BA"
    got = only(decode(open_image(png_bytes(make_symbol(payload), ModuleSize.snapped()))))
    assert got.text == payload
    assert parse(got.text) == handle
    assert parse(got.text).to_text() == CHINESE


def test_handle_payload_is_the_handle():
    handle = parse("88.118.2/PRD-1")
    assert payload_for(handle, PayloadForm.HANDLE) == "88.118.2/PRD-1"
    assert payload_for(handle, PayloadForm.URL, "http://127.0.0.1:8000/") == "http://127.0.0.1:8000/88.118.2/PRD-1"


@pytest.mark.parametrize("level", "LMQH")
def test_upper_case_handle_uses_alphanumeric_mode(level):
    upper = "88.118.2/PRD-2024-000123-ABCDEFGH"
    lower = upper.lower()
    small, large = make_symbol(upper, level), make_symbol(lower, level)
    # alphanumeric packs 2 characters in 11 bits, bytes 1 in 8: a size smaller here
    assert small.version < large.version
    for symbol in (small, large):
        got = only(decode(open_image(png_bytes(symbol, ModuleSize.snapped()))))
        assert (got.text, got.level) == (symbol.payload, level)


def test_level_is_kept_as_asked():
    for level in "LMQH":
        assert make_symbol("88.118.2/PRD-1", level.lower()).level == level


@pytest.mark.parametrize(
    ("payload", "level", "message"),
    [
        ("", "Q", "cannot be empty"),
        ("88.118.2/PRD-1", "X", "must be one of L, M, Q, H"),
        ("88.118.2/PRD-1", "", "must be one of L, M, Q, H"),
        ("批" * 1200, "H", "does not fit a QR code at level H"),
        ("A" * 8000, "L", "does not fit a QR code at level L"),
    ],
)
def test_symbol_errors_are_invalid_value(payload, level, message):
    with pytest.raises(InvalidValue, match=message):
        make_symbol(payload, level)


@pytest.mark.parametrize(
    ("mm", "dpi", "message"),
    [(0.05, 300, "module size"), (6, 300, "module size"), (0.5, 50, "dpi"), (0.5, 300.0, "dpi")],
)
def test_module_size_out_of_range(mm, dpi, message):
    with pytest.raises(InvalidValue, match=message):
        ModuleSize.snapped(mm, dpi)


def test_module_snaps_to_whole_dots():
    module = ModuleSize.snapped(0.5, 300)
    assert (module.dots, module.dpi) == (6, 300)
    assert module.mm == pytest.approx(0.508)
    assert ModuleSize.snapped(0.1, 72).dots == 1
