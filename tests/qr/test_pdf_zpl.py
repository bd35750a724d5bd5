"""PDF sheets and ZPL: every label of every page, rasterised as a printer
would, decodes back to exactly its payload at the requested level; ZPL,
parsed back, carries the same payload and level in ``^BQ``."""

from __future__ import annotations

import io
import re

import pypdfium2
import pytest
from PIL import Image

from idcore.errors import InvalidValue
from qr.batch import LabelFailed, pdf_sheets, zpl_stream
from qr.batch_source import LabelJob, range_jobs
from qr.label import FONT_ENV, LabelLayout
from qr.pdf_stream import PdfStreamWriter, RasterImage, mm_to_pt
from qr.sheet import Grid, SheetLayout
from qr.symbol import ModuleSize
from qr.verify import decode
from qr.zpl import label_zpl, magnification, qr_field_data

RESOLVER = "https://resolver.example.com"


@pytest.fixture(autouse=True)
def no_font_override(monkeypatch):
    monkeypatch.delenv(FONT_ENV, raising=False)


def pages_of(pdf: bytes, dpi: int) -> list[Image.Image]:
    """Every page of ``pdf`` rasterised at ``dpi``, as a printer would."""
    document = pypdfium2.PdfDocument(pdf)
    try:
        return [page.render(scale=dpi / 72, grayscale=True).to_pil().convert("L") for page in document]
    finally:
        document.close()


# --- the streaming writer ---------------------------------------------------------


def test_pdf_stream_pages_sizes_and_image_placement():
    black = Image.new("1", (30, 20), 0)
    gray = Image.new("L", (10, 10), 128)
    out = io.BytesIO()
    with PdfStreamWriter(out) as pdf:
        # 720 x 1440 pt is a whole 3000 x 6000 dots at 300 dpi, so dots map exactly
        pdf.begin_page(720, 1440)
        pdf.draw_image(RasterImage.from_image(black), 72, 144, 30 * 72 / 300, 20 * 72 / 300)  # at dot (300, 600)
        pdf.end_page()
        pdf.begin_page(200, 100)
        pdf.draw_image(RasterImage.from_image(gray), 0, 0, 50, 50)
        pdf.end_page()
        pdf.begin_page(mm_to_pt(210), mm_to_pt(297))
        pdf.draw_image(RasterImage.from_image(black), 0, 0, 10, 10)
        pdf.end_page()
    data = out.getvalue()
    assert data.startswith(b"%PDF-1.4\n") and data.endswith(b"%%EOF\n")
    startxref = int(data.rsplit(b"startxref\n", 1)[1].split(b"\n")[0])
    assert data[startxref:].startswith(b"xref\n")
    document = pypdfium2.PdfDocument(data)
    assert [document[i].get_size() for i in range(len(document))] == [
        (720, 1440), (200, 100), pytest.approx((595.28, 841.89), abs=0.01)
    ]
    document.close()
    first, second = pages_of(data, 300)[0], pages_of(data, 72)[1]
    assert first.crop((300, 600, 330, 620)).getextrema() == (0, 0)  # the black image covers those dots
    ink = Image.eval(first, lambda v: 255 - v).getbbox()
    # and no more, give or take the dot a renderer may add rounding an edge outwards
    assert ink == pytest.approx((300, 600, 330, 620), abs=1)
    assert second.getpixel((25, 25)) == pytest.approx(128, abs=2)


def test_pdf_stream_refuses_misuse():
    pdf = PdfStreamWriter(io.BytesIO())
    with pytest.raises(ValueError, match="no page is open"):
        pdf.draw_image(RasterImage.from_image(Image.new("1", (1, 1))), 0, 0, 1, 1)
    with pytest.raises(ValueError, match="at least one page"):
        pdf.close()
    pdf.begin_page(10, 10)
    with pytest.raises(ValueError, match="end the open page"):
        pdf.close()


# --- sheets -----------------------------------------------------------------------------


def test_grid_fits_labels_on_whole_dots():
    grid = Grid.fit(SheetLayout(), 591, 354, 300)  # 50 x 30 mm at 300 dpi on A4
    assert (grid.columns, grid.rows, grid.per_page) == (3, 8, 24)
    margin, gap = 118, 24  # 10 mm and 2 mm at 300 dpi
    assert grid.origin(0) == (margin, margin)
    assert grid.origin(4) == (margin + 591 + gap, margin + 354 + gap)
    tight = Grid.fit(SheetLayout(margin_mm=0, gap_mm=0), 591, 354, 300)
    assert (tight.columns, tight.rows) == (4, 9)


def test_no_label_fits_is_a_clear_error():
    with pytest.raises(InvalidValue) as caught:
        Grid.fit(SheetLayout(page_width_mm=100, page_height_mm=100, margin_mm=30), 591, 354, 300)
    assert "50.0 x 30.0 mm label does not fit a 100 x 100 mm page" in caught.value.message
    with pytest.raises(InvalidValue, match="margin_mm"):
        SheetLayout(margin_mm=-1)


@pytest.mark.parametrize(
    ("layout", "form"),
    [
        (LabelLayout(level="H", module=ModuleSize.snapped(0.34)), "handle"),  # 4 dots at 300 dpi
        (LabelLayout(width_mm=30, height_mm=50, level="L", module=ModuleSize.snapped(0.5, 203)), "url"),
    ],
    ids=["landscape-H-300dpi-handle", "portrait-L-203dpi-url"],
)
def test_every_label_on_every_page_decodes_to_its_payload(layout, form):
    sheet = SheetLayout()
    grid = Grid.fit(sheet, layout.pixels(layout.width_mm), layout.pixels(layout.height_mm), layout.dpi)
    count = grid.per_page + 5  # a full page and part of a second

    def payload(handle):
        return handle.to_text() if form == "handle" else f"{RESOLVER}/{handle.to_text()}"

    jobs = list(range_jobs("88.118.2", "批次-{n:03d}", 1, count, payload, ["减速机"]))
    if form == "url":  # keep the URL ASCII, as qr.payload would
        jobs = [job._replace(payload=f"{RESOLVER}/88.118.2/B-{i}") for i, job in enumerate(jobs)]
    out = io.BytesIO()
    result = pdf_sheets(iter(jobs), out, layout, sheet, workers=2)
    assert (result.labels, result.pages) == (count, 2)
    pages = pages_of(out.getvalue(), layout.dpi)
    assert len(pages) == 2
    for number, job in enumerate(jobs):
        page, slot = divmod(number, grid.per_page)
        x, y = grid.origin(slot)
        cell = pages[page].crop((x, y, x + grid.label_width, y + grid.label_height))
        found = decode(cell)
        assert [(code.text, code.level) for code in found] == [(job.payload, layout.level)], (number, job)


def test_an_empty_source_makes_no_pdf():
    with pytest.raises(InvalidValue, match="no labels"):
        pdf_sheets(iter([]), io.BytesIO(), LabelLayout(), workers=0)


# --- ZPL -------------------------------------------------------------------------------


def parse_zpl(text: str) -> list[list[tuple[str, str]]]:
    """Labels of a ZPL stream, each a list of (command, data) pairs, with
    ``^FH`` hex escapes of field data undone (as UTF-8 bytes)."""
    labels, current, hex_next = [], None, False
    for piece in text.split("^")[1:]:
        piece = piece.rstrip("\n")
        command, data = piece[:2], piece[2:]
        if command == "XA":
            current = []
            continue
        if command == "XZ":
            labels.append(current)
            current = None
            continue
        if command == "FH":
            hex_next = True
            continue
        if command == "FD" and hex_next:
            data = re.sub(rb"_([0-9A-F]{2})", lambda m: bytes([int(m.group(1), 16)]), data.encode()).decode()
            hex_next = False
        current.append((command, data))
    assert current is None, "a label without ^XZ"
    return labels


def fields_of(label: list[tuple[str, str]]) -> list[dict[str, str]]:
    """The label's fields (^FO ... ^FS), each as {command: data}."""
    fields, field = [], None
    for command, data in label:
        if command == "FO":
            field = {"FO": data}
        elif command == "FS":
            fields.append(field)
            field = None
        elif field is not None:
            field[command] = data
    return fields


def test_zpl_label_carries_the_exact_payload_level_and_size():
    layout = LabelLayout(level="H", module=ModuleSize.snapped(0.34))
    job = LabelJob("88.118.2/PRD-1", f"{RESOLVER}/88.118.2/PRD-1", ("RV-40 减速机", "B-1"))
    [label] = parse_zpl(label_zpl(job, layout))
    commands = dict(label[:5])
    assert commands["CI"] == "28"  # UTF-8 field data
    assert commands["PW"] == str(layout.pixels(50)) and commands["LL"] == str(layout.pixels(30))
    code, handle, *lines = fields_of(label)
    assert code["BQ"] == "N,2,4"  # model 2, 4 dots a module
    assert code["FD"] == f"HA,{job.payload}"
    x, y = map(int, code["FO"].split(","))
    margin, quiet = layout.pixels(layout.margin_mm), 4 * 4
    assert (x, y) == (margin + quiet, margin + quiet)
    assert handle["FD"] == job.handle and handle["A0"].startswith("N,")
    assert [line["FD"] for line in lines] == list(job.lines)
    for field in (handle, *lines):
        fx, fy = map(int, field["FO"].split(","))
        assert fx > x and fy >= y  # beside the code on a landscape label


def test_zpl_chinese_payload_goes_in_manual_byte_mode():
    payload = "88.118.2/批次-1"
    job = LabelJob(payload, payload, ())
    [label] = parse_zpl(label_zpl(job, LabelLayout()))
    code = fields_of(label)[0]
    size = len(payload.encode("utf-8"))
    assert size == 17  # 11 ASCII bytes and two Chinese characters of three
    assert code["FD"] == f"QM,B{size:04d}{payload}"
    assert qr_field_data("88.118.2/X", "M") == "MA,88.118.2/X"


def test_zpl_escapes_command_characters_in_field_data():
    payload = "88.118.2/A^XZ~JA_1"
    text = label_zpl(LabelJob(payload, payload, ("^XA",)), LabelLayout())
    assert text.count("^XA") == 1 and text.count("^XZ") == 1 and "~JA" not in text
    [label] = parse_zpl(text)
    code, handle, line = fields_of(label)
    assert code["FD"] == f"QA,{payload}" and handle["FD"] == payload and line["FD"] == "^XA"


def test_zpl_stream_of_a_batch_parses_back(tmp_path):
    jobs = list(range_jobs("88.118.2", "批次-{n}", 1, 30, lambda handle: handle.to_text(), ["减速机", "示例智能装备有限公司"]))
    out = io.BytesIO()
    result = zpl_stream(iter(jobs), out, LabelLayout(level="M"))
    labels = parse_zpl(out.getvalue().decode("utf-8"))
    assert result.labels == len(labels) == 30
    for job, label in zip(jobs, labels):
        code = fields_of(label)[0]
        assert code["FD"] == f"MM,B{len(job.payload.encode()):04d}{job.payload}"
        assert code["BQ"] == "N,2,6"


def test_zpl_magnification_is_the_module_in_dots_within_range():
    assert magnification(ModuleSize.snapped(0.5, 203)) == 4
    assert magnification(ModuleSize.snapped(0.1, 300)) == 1
    with pytest.raises(InvalidValue) as caught:
        magnification(ModuleSize.snapped(1.0, 600))
    assert "24 dots at 600 dpi" in caught.value.message and "at most 0.42 mm" in caught.value.message


def test_zpl_refuses_a_label_its_code_does_not_fit():
    suffix = "X" * 200
    job = LabelJob("88.118.2/" + suffix, "88.118.2/" + suffix, ())
    with pytest.raises(LabelFailed) as caught:
        zpl_stream([job], io.BytesIO(), LabelLayout())
    assert caught.value.handle == job.handle and "the code is" in caught.value.message
