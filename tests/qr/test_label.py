"""Labels: the code decodes back exactly, text lands beside or under it and
never in the quiet zone or margins, fonts fail clearly."""

from __future__ import annotations

import pytest
from PIL import Image

from idcore.errors import InvalidValue
from idcore.handle import parse
from qr import fonts, label
from qr.label import (
    FONT_ENV,
    MIN_TEXT_MM,
    FontMissing,
    LabelLayout,
    find_font,
    label_lines,
    label_png,
    render_label,
)
from qr.payload import url_payload
from qr.symbol import QUIET_ZONE_MODULES, ModuleSize, make_symbol
from qr.verify import decode, open_image
from resolver.hierarchy import sample_values

CHINESE = "88.118.2/批次-2024/减速机"
LATIN = "88.118.2/PRD-2024-000123"
RESOLVER = "https://resolver.example.com"

LANDSCAPE = LabelLayout()  # 50 x 30 mm
PORTRAIT = LabelLayout(width_mm=30, height_mm=50)


@pytest.fixture(autouse=True)
def no_font_override(monkeypatch):
    """A developer's own IDNODE_LABEL_FONT must not change what these tests draw."""
    monkeypatch.delenv(FONT_ENV, raising=False)


def sample_lines(number: int = 7) -> list[str]:
    return label_lines(sample_values("88.118.2", number))


def only(found):
    assert len(found) == 1, found
    return found[0]


def dark(image: Image.Image, box: tuple[int, int, int, int]) -> int:
    """Dark pixels of ``image`` within ``box``."""
    return image.convert("L").crop(box).histogram()[0]


def geometry(layout: LabelLayout, payload: str) -> tuple[int, int, int, int, int]:
    """(x, y, side, quiet, margin) of the code on a label, in pixels."""
    symbol = make_symbol(payload, layout.level)
    side = symbol.modules * layout.module.dots
    margin = layout.pixels(layout.margin_mm)
    x = margin if layout.width_mm > layout.height_mm else (layout.pixels(layout.width_mm) - side) // 2
    return x, margin, side, QUIET_ZONE_MODULES * layout.module.dots, margin


# --- lines from a record -------------------------------------------------------


def test_label_lines_from_sample_record():
    values = sample_values("88.118.2", 5)
    by_type = {v["type"]: v["data"]["value"] for v in values}
    assert label_lines(values) == [
        by_type["PRODUCT_NAME"],
        by_type["BATCH"],
        by_type["MANUFACTURE_DATE"],
        by_type["ENTERPRISE"],
    ]
    assert label_lines(values)[-1] == "示例智能装备有限公司"


def test_label_lines_prefer_first_type_skip_missing_and_non_strings():
    values = [
        {"index": 1, "type": "URL", "data": {"format": "string", "value": "https://example.com"}},
        {"index": 2, "type": "NAME", "data": {"format": "string", "value": "generic name"}},
        {"index": 3, "type": "MANUFACTURER", "data": {"format": "string", "value": "厂家"}},
        {"index": 4, "type": "PRODUCT_NAME", "data": {"format": "string", "value": "  减速机\nRV-40 "}},
        {"index": 5, "type": "BATCH", "data": {"format": "base64", "value": "QkFUQ0g="}},
        {"index": 6, "type": "DATE", "data": {"format": "string", "value": 20240101}},
        {"index": 7, "type": "production_date", "data": {"format": "string", "value": "2024-05-06"}},
        {"index": 8, "type": "ENTERPRISE", "data": {"format": "string", "value": "   "}},
        "not a value",
    ]
    assert label_lines(values) == ["减速机 RV-40", "2024-05-06", "厂家"]
    assert label_lines([]) == []


# --- rendering -----------------------------------------------------------------


@pytest.mark.parametrize("layout", [LANDSCAPE, PORTRAIT], ids=["landscape", "portrait"])
@pytest.mark.parametrize("handle", [LATIN, CHINESE])
@pytest.mark.parametrize("form", ["url", "handle"])
def test_label_decodes_to_payload_with_text_beside_or_under_code(layout, handle, form):
    payload = url_payload(parse(handle), RESOLVER) if form == "url" else handle
    lines = sample_lines()
    image = render_label(payload, handle, lines, layout)

    width, height = round(layout.width_mm * 300 / 25.4), round(layout.height_mm * 300 / 25.4)
    assert image.size == (width, height)
    assert image.mode in ("1", "L")
    assert image.info["dpi"] == (300, 300)

    got = only(decode(image))
    assert got.text == payload
    assert got.level == layout.level
    if form == "url":
        assert parse(got.text) == parse(handle)

    x, y, side, _, margin = geometry(layout, payload)
    if layout.width_mm > layout.height_mm:
        text_box = (x + side, y, width - margin, height - margin)
    else:
        text_box = (margin, y + side, width - margin, height - margin)
    assert dark(image, text_box) > 0, "no text beside/under the code"
    assert_code_and_margins_clean(image, layout, payload)


def assert_code_and_margins_clean(image: Image.Image, layout: LabelLayout, payload: str) -> None:
    """The quiet zone and the label's margins hold no ink; the code is intact."""
    width, height = image.size
    x, y, side, quiet, margin = geometry(layout, payload)
    for box in (
        (x, y, x + side, y + quiet),
        (x, y + side - quiet, x + side, y + side),
        (x, y, x + quiet, y + side),
        (x + side - quiet, y, x + side, y + side),
    ):
        assert dark(image, box) == 0, f"ink in the quiet zone {box}"
    if margin:
        for box in ((0, 0, width, margin), (0, height - margin, width, height), (0, 0, margin, height), (width - margin, 0, width, height)):
            assert dark(image, box) == 0, f"ink in the margin {box}"
    code = image.crop((x, y, x + side, y + side)).convert("L")
    expected = make_symbol(payload, layout.level)
    for row in range(expected.modules):
        for column in range(expected.modules):
            pixel = code.getpixel((column * layout.module.dots, row * layout.module.dots))
            assert (pixel == 0) == bool(expected.rows[row][column])


@pytest.mark.parametrize(
    "layout",
    [
        LabelLayout(level="L", module=ModuleSize.snapped(0.4, 203)),
        LabelLayout(level="H", module=ModuleSize.snapped(0.25, 600), width_mm=40, height_mm=40),
        LabelLayout(level="M", module=ModuleSize.snapped(0.33, 300), width_mm=25, height_mm=40, margin_mm=0),
    ],
    ids=["L-203dpi", "H-600dpi-square", "M-300dpi-no-margin"],
)
def test_label_png_at_levels_and_dpis(layout):
    payload = url_payload(parse(CHINESE), RESOLVER)
    image = open_image(label_png(payload, CHINESE, sample_lines(3), layout))
    assert image.size == (layout.pixels(layout.width_mm), layout.pixels(layout.height_mm))
    assert image.info["dpi"] == pytest.approx((layout.dpi, layout.dpi), abs=0.01)
    got = only(decode(image))
    assert (got.text, got.level) == (payload, layout.level)
    assert_code_and_margins_clean(image, layout, payload)


def test_long_text_shrinks_and_is_cut_inside_the_label():
    handle = "88.118.2/" + "SERIAL-" * 30 + "END"
    lines = ["一个非常长的产品名称" * 10, "B" * 200, "x\ty\nz", "示例智能装备有限公司" * 5]
    layout = LabelLayout(width_mm=40, height_mm=25)
    image = render_label(LATIN, handle, lines, layout)
    got = only(decode(image))
    assert got.text == LATIN
    assert_code_and_margins_clean(image, layout, LATIN)
    # the cut handle is set at no less than the smallest size
    run = label._fit(handle, (str(find_font("mono")), 0), 100, layout.pixels(MIN_TEXT_MM), 300, True)
    assert run is not None and "…" in run.text and run.width <= 300
    assert run.text.startswith("88.118.2/") and run.text.endswith("END")


def test_lines_beyond_the_room_are_left_off():
    layout = LabelLayout(width_mm=50, height_mm=22)
    few = render_label(LATIN, LATIN, sample_lines()[:1], layout)
    many = render_label(LATIN, LATIN, sample_lines() * 5, layout)
    assert only(decode(many)).text == LATIN
    assert_code_and_margins_clean(many, layout, LATIN)
    assert dark(many, (0, 0, *many.size)) > dark(few, (0, 0, *few.size))


def test_code_too_large_for_label_names_sizes():
    payload = url_payload(parse(CHINESE), RESOLVER)
    layout = LabelLayout(width_mm=15, height_mm=15, margin_mm=1)
    with pytest.raises(InvalidValue, match=r"the code is \d+\.\d mm square.* 13\.0 x 13\.0 mm inside its margins") as info:
        render_label(payload, CHINESE, [], layout)
    assert "smaller module" in info.value.message and "lower error-correction level" in info.value.message


def test_no_room_for_handle_is_refused():
    # the code (version 1: 29 modules of 0.508 mm) fills a 16 mm label
    layout = LabelLayout(width_mm=16, height_mm=16, margin_mm=0.5)
    with pytest.raises(InvalidValue, match=r"no room for the handle.*\d+\.\d x \d+\.\d mm are left under the code"):
        render_label("88.118.2/A", "88.118.2/A", [], layout)


def test_empty_handle_text_and_payload_errors():
    with pytest.raises(InvalidValue, match="handle text cannot be empty"):
        render_label(LATIN, " \n", [])
    with pytest.raises(InvalidValue, match="cannot be empty"):
        render_label("", LATIN, [])
    with pytest.raises(InvalidValue, match="does not fit a QR code at level H"):
        render_label("批" * 1200, LATIN, [], LabelLayout(level="H"))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"width_mm": 5}, r"width_mm 5 must be a number in 10\.0\.\.300\.0"),
        ({"height_mm": 1000}, r"height_mm 1000 must be a number in"),
        ({"width_mm": float("nan")}, "width_mm nan"),
        ({"width_mm": True}, "width_mm True"),
        ({"margin_mm": -1}, r"margin_mm -1 must be a number in 0\.0\.\.20\.0"),
        ({"margin_mm": 15}, "leaves nothing inside"),
        ({"handle_text_mm": 0.5}, r"handle_text_mm 0\.5 must be a number in 1\.4\.\.20\.0"),
        ({"line_text_mm": "big"}, "line_text_mm 'big'"),
        ({"level": "X"}, "level 'X' must be one of L, M, Q, H"),
        ({"module": 0.5}, "module 0.5 must be a ModuleSize"),
        ({"font": 12}, "font 12 must be a path"),
        ({"width_mm": 300, "height_mm": 300, "module": ModuleSize.snapped(0.5, 2400)}, "MAX_LABEL_PIXELS"),
    ],
)
def test_layout_validation(fields, message):
    with pytest.raises(InvalidValue, match=message):
        LabelLayout(**fields)


def test_layout_normalises_level_and_font():
    layout = LabelLayout(level="h", font="/x/y.ttf")
    assert layout.level == "H"
    assert str(layout.font) == "/x/y.ttf" and not isinstance(layout.font, str)


# --- fonts -----------------------------------------------------------------------


def test_fonts_found_on_this_machine():
    mono, cjk = find_font("mono"), find_font("cjk")
    assert mono.is_file() and cjk.is_file()
    face = fonts.text_face(str(cjk))
    assert not fonts.missing_glyphs(face, "中文批次减速机")
    assert fonts.missing_glyphs((str(mono), 0), "中") == "中"
    with pytest.raises(InvalidValue, match="'mono' or 'cjk'"):
        find_font("serif")


def test_no_font_found_fails_clearly(monkeypatch, tmp_path):
    junk = tmp_path / "junk.ttf"
    junk.write_bytes(b"not a font at all")
    monkeypatch.setenv("PATH", str(tmp_path))  # no fc-list, no fc-match
    monkeypatch.setattr(fonts, "_KNOWN_FONTS", {"cjk": (str(junk),), "mono": ()})
    with pytest.raises(FontMissing, match=r"no CJK-capable font found.*install fonts-noto-cjk or fonts-wqy-zenhei"):
        find_font.__wrapped__("cjk")
    with pytest.raises(FontMissing, match=r"no monospace font found.*fonts-dejavu-core"):
        find_font.__wrapped__("mono")


def test_override_that_is_not_a_font(tmp_path):
    junk = tmp_path / "junk.ttf"
    junk.write_bytes(b"not a font at all")
    with pytest.raises(FontMissing, match="cannot be loaded"):
        render_label(LATIN, LATIN, ["a line"], LabelLayout(font=junk))


def test_override_without_cjk_glyphs(monkeypatch):
    latin_only = find_font("mono")
    with pytest.raises(FontMissing, match=r"has no glyphs for '减速机'.*install fonts-noto-cjk"):
        render_label(LATIN, LATIN, ["RV-40 减速机"], LabelLayout(font=latin_only))
    # a Chinese handle falls back to the override too, and fails the same way
    with pytest.raises(FontMissing, match="has no glyphs for '批次减速机'"):
        render_label(CHINESE, CHINESE, [], LabelLayout(font=latin_only))
    monkeypatch.setenv(FONT_ENV, str(latin_only))
    with pytest.raises(FontMissing, match="has no glyphs"):
        render_label(LATIN, LATIN, ["RV-40 减速机"])
    # Latin lines are fine in that font
    image = render_label(LATIN, LATIN, ["RV-40", "B-202601-000"])
    assert only(decode(image)).text == LATIN


def test_override_font_is_used(monkeypatch):
    lines = ["RV-40", "B-202601-000"]
    default = render_label(LATIN, LATIN, lines)
    mono = find_font("mono")
    overridden = render_label(LATIN, LATIN, lines, LabelLayout(font=mono))
    assert overridden.tobytes() != default.tobytes()
    monkeypatch.setenv(FONT_ENV, str(mono))
    assert render_label(LATIN, LATIN, lines).tobytes() == overridden.tobytes()
    # the layout's font wins over the environment
    assert render_label(LATIN, LATIN, lines, LabelLayout(font=find_font("cjk"))).tobytes() == default.tobytes()
