"""Label batches: sources read line by line with errors naming the line,
labels rendered by worker processes in source order, PNG folders whose
every file decodes back to exactly its payload, and a bounded number of
labels in flight however long the batch."""

from __future__ import annotations

import itertools
import os
from concurrent.futures.process import BrokenProcessPool

import orjson
import pytest

from idcore.errors import InvalidValue
from qr.batch import (
    LabelFailed,
    PngLabel,
    RenderStats,
    max_in_flight,
    pdf_sheets,
    png_folder,
    png_name,
    render,
    replacing,
)
from qr.batch_source import (
    LabelJob,
    SourceError,
    count_jobs,
    csv_jobs,
    ndjson_jobs,
    range_jobs,
)
from qr.label import FONT_ENV, LabelLayout, label_lines
from qr.payload import PayloadForm, payload_for
from qr.symbol import ModuleSize
from qr.verify import decode, open_image
from resolver.hierarchy import sample_values

RESOLVER = "https://resolver.example.com"
LAYOUT = LabelLayout()  # 50 x 30 mm, level Q, 0.5 mm modules at 300 dpi


def url_form(handle):
    return payload_for(handle, PayloadForm.URL, RESOLVER)


def handle_form(handle):
    return payload_for(handle, PayloadForm.HANDLE)


@pytest.fixture(autouse=True)
def no_font_override(monkeypatch):
    """A developer's own IDNODE_LABEL_FONT must not change what is drawn."""
    monkeypatch.delenv(FONT_ENV, raising=False)


def write_ndjson(path, objects):
    path.write_bytes(b"".join(orjson.dumps(obj) + b"\n" for obj in objects))
    return path


# --- sources ---------------------------------------------------------------------


def test_ndjson_values_become_label_lines(tmp_path):
    source = tmp_path / "labels.ndjson"
    source.write_bytes(
        b"\xef\xbb\xbf"  # a BOM, as Windows editors write
        + orjson.dumps({"op": "create", "handle": "88.118.2/PRD-2026-000007", "values": sample_values("88.118.2", 7)})
        + b"\n\n   \n"  # blank lines are skipped, as idnode batch skips them
        + orjson.dumps({"handle": "hdl:88.118.2/批次-1", "lines": ["减速机", "B-1"]})
        + b"\n"
        + orjson.dumps({"op": "delete", "handle": "88.118.2/GONE"})
        + b"\n"
        + orjson.dumps({"handle": "88.118.2/BARE"})  # no values: no lines; no final newline
    )
    jobs = list(ndjson_jobs(source, url_form))
    assert jobs == [
        LabelJob(
            "88.118.2/PRD-2026-000007",
            f"{RESOLVER}/88.118.2/PRD-2026-000007",
            tuple(label_lines(sample_values("88.118.2", 7))),
        ),
        LabelJob("88.118.2/批次-1", f"{RESOLVER}/88.118.2/%E6%89%B9%E6%AC%A1-1", ("减速机", "B-1")),
        LabelJob("88.118.2/BARE", f"{RESOLVER}/88.118.2/BARE", ()),
    ]
    assert len(jobs[0].lines) == 4  # product name, batch, date, enterprise


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"values": []}', "needs a 'handle' string"),
        (b'{"handle": "88..2/X"}', "empty segment"),
        (b'{"handle": "88.118.2/X", "values": {"a": 1}}', "'values' must be a list"),
        (b'{"handle": "88.118.2/X", "lines": ["a", 2]}', "'lines' must be a list of strings"),
        (b'{"handle": "88.118.2/' + b"x" * (1024 * 1024) + b'"}', "exceeds"),
    ],
)
def test_ndjson_bad_line_names_its_number_and_problem(tmp_path, bad, problem):
    source = tmp_path / "bad.ndjson"
    source.write_bytes(b'{"handle": "88.118.2/OK-1"}\n\n' + bad + b'\n{"handle": "88.118.2/OK-2"}\n')
    jobs = ndjson_jobs(source, url_form)
    assert next(jobs).handle == "88.118.2/OK-1"
    with pytest.raises(SourceError) as caught:
        next(jobs)
    assert caught.value.details["line"] == 3
    assert f"{source}, line 3: " in caught.value.message and problem in caught.value.message


def test_csv_columns_become_lines_as_record_fields_would(tmp_path):
    source = tmp_path / "labels.csv"
    source.write_text(
        "Handle,product_name,batch,date,enterprise,colour\n"
        '88.118.2/C-1,"RV-40, 减速机",B-1,2026-01-05,示例智能装备有限公司,red\n'
        "\n"
        "88.118.2/C-2,,,,\n"
        "88.118.2/C-3\n",  # short rows are fine: missing fields are empty
        encoding="utf-8-sig",  # Excel's BOM
    )
    jobs = list(csv_jobs(source, handle_form))
    assert jobs == [
        LabelJob("88.118.2/C-1", "88.118.2/C-1", ("RV-40, 减速机", "B-1", "2026-01-05", "示例智能装备有限公司")),
        LabelJob("88.118.2/C-2", "88.118.2/C-2", ()),
        LabelJob("88.118.2/C-3", "88.118.2/C-3", ()),
    ]
    same = [
        {"type": "PRODUCT_NAME", "data": {"format": "string", "value": "RV-40, 减速机"}},
        {"type": "BATCH", "data": {"format": "string", "value": "B-1"}},
        {"type": "MANUFACTURE_DATE", "data": {"format": "string", "value": "2026-01-05"}},
        {"type": "ENTERPRISE", "data": {"format": "string", "value": "示例智能装备有限公司"}},
    ]
    assert jobs[0].lines == tuple(label_lines(same))


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("product_name\nX\n", 1, "needs a 'handle' column"),
        ("handle\n88.118.2/A\n88.118.2/B,extra\n", 3, "the row has 2 fields, the header 1"),
        # a quoted field spanning lines: line numbers are the file's, not the rows'
        ('handle,product_name\n88.118.2/A,"two\nlines"\n88..2/B\n', 4, "empty segment"),
        ('handle\n88.118.2/A\n"88.118.2/B\n', 3, "not valid CSV"),
        ('handle\n"88.118.2/A"x\n', 2, "not valid CSV"),
    ],
)
def test_csv_bad_line_names_its_number(tmp_path, text, line, problem):
    source = tmp_path / "bad.csv"
    source.write_text(text, encoding="utf-8")
    with pytest.raises(SourceError) as caught:
        list(csv_jobs(source, url_form))
    assert caught.value.details["line"] == line, caught.value.message
    assert f", line {line}: " in caught.value.message and problem in caught.value.message


def test_csv_not_in_utf8_names_the_line(tmp_path):
    source = tmp_path / "gbk.csv"
    source.write_bytes("handle,product_name\n88.118.2/A,减速机\n".encode("gbk"))
    with pytest.raises(SourceError) as caught:
        list(csv_jobs(source, url_form))
    assert "not UTF-8 text" in caught.value.message and caught.value.details["line"] == 2


def test_range_is_lazy_and_numbered():
    jobs = range_jobs("88.118.2", "PRD-2026-{n:06d}", 1, 100_000, url_form, ["减速机"])
    first = list(itertools.islice(jobs, 2))
    assert first == [
        LabelJob("88.118.2/PRD-2026-000001", f"{RESOLVER}/88.118.2/PRD-2026-000001", ("减速机",)),
        LabelJob("88.118.2/PRD-2026-000002", f"{RESOLVER}/88.118.2/PRD-2026-000002", ("减速机",)),
    ]
    tail = list(range_jobs("88.118.2", "PRD-2026-{n:06d}", 99_999, 100_000, handle_form))
    assert [job.payload for job in tail] == ["88.118.2/PRD-2026-099999", "88.118.2/PRD-2026-100000"]
    chinese = list(range_jobs("88.118.2", "批次-{n}", 8, 9, handle_form))
    assert [job.payload for job in chinese] == ["88.118.2/批次-8", "88.118.2/批次-9"]
    assert count_jobs(range_jobs("88.118.2", "{n}", 0, 999, handle_form)) == 1000


@pytest.mark.parametrize(
    ("prefix", "pattern", "first", "last", "message"),
    [
        ("88.118.2", "PRD", 1, 2, "must contain {n}"),
        ("88.118.2", "PRD-{x}", 1, 2, "only use the field {n}"),
        ("88.118.2", "PRD-{n:999999999d}", 1, 2, "MAX_HANDLE_LENGTH"),
        ("88.118.2", "PRD-{n", 1, 2, "not a format string"),
        ("88..2", "PRD-{n}", 1, 2, "empty segment"),
        ("88.118.2", "PRD-{n}", 5, 4, "0 <= from <= to"),
        ("88.118.2", "PRD-{n}", -1, 4, "0 <= from <= to"),
        ("88.118.2", "PRD\x01{n}", 1, 2, "line 1"),  # the first handle is checked up front
    ],
)
def test_range_errors_are_raised_before_any_label(prefix, pattern, first, last, message):
    with pytest.raises(InvalidValue) as caught:
        range_jobs(prefix, pattern, first, last, url_form)
    assert message in caught.value.message


# --- rendering ---------------------------------------------------------------------


def test_png_folder_files_decode_to_exactly_their_payloads(tmp_path):
    handles = ["88.118.2/PRD-2026-000001", "88.118.2/批次-2026/减速机", "88.118.2/a b/../c", "88.118.2/PRD-2026-000001"]
    source = write_ndjson(tmp_path / "in.ndjson", [{"handle": h, "lines": ["示例"]} for h in handles])
    layout = LabelLayout(level="H", module=ModuleSize.snapped(0.34))  # 4 dots at 300 dpi
    for form in (url_form, handle_form):
        folder = tmp_path / form.__name__
        result = png_folder(ndjson_jobs(source, form), folder, layout, workers=2)
        assert (result.labels, result.pages) == (4, 0)
        names = sorted(os.listdir(folder))
        assert names == [png_name(i + 1, h) for i, h in enumerate(handles)]
        for name, job in zip(names, ndjson_jobs(source, form)):
            found = decode(open_image((folder / name).read_bytes()))
            assert [(code.text, code.level) for code in found] == [(job.payload, "H")]


def test_png_names_stay_in_their_folder_and_are_unique():
    hostile = ["88.118.2/../../etc/passwd", "88.118.2/.hidden", "88.118.2/a\\b:c*?", "88.118.2/" + "长" * 300]
    names = [png_name(i, h) for i, h in enumerate(hostile * 2, start=1)]
    assert len(set(names)) == len(names)
    for name in names:
        assert os.sep not in name and "\\" not in name and not name.startswith(".")
        assert len(name.encode()) < 255
    assert png_name(1, "88.118.2/批次") == "000001-88.118.2_批次.png"


def test_render_keeps_source_order_in_and_out_of_process():
    jobs = list(range_jobs("88.118.2", "ORDER-{n}", 1, 40, handle_form))
    pooled = [(job, png) for job, png in render(iter(jobs), PngLabel(LAYOUT), workers=2)]
    inline = [(job, png) for job, png in render(iter(jobs), PngLabel(LAYOUT), workers=0)]
    assert [job for job, _ in pooled] == jobs == [job for job, _ in inline]
    assert [png for _, png in pooled] == [png for _, png in inline]  # same bytes either way


def test_a_label_that_cannot_be_made_names_its_handle():
    long_suffix = "X" * 200  # too long a code for a 50 x 30 mm label at 0.5 mm modules
    jobs = [
        LabelJob("88.118.2/OK", "88.118.2/OK", ()),
        LabelJob("88.118.2/" + long_suffix, "88.118.2/" + long_suffix, ()),
    ]
    with pytest.raises(LabelFailed) as caught:
        list(render(jobs, PngLabel(LAYOUT), workers=2))
    assert caught.value.handle == "88.118.2/" + long_suffix
    assert caught.value.message.startswith(f"label for 88.118.2/{long_suffix}: the code is")


class DiesInWorker:
    """A renderer whose worker process dies, as one killed for memory would."""

    def __call__(self, job):
        os._exit(3)


def test_a_dead_worker_fails_the_batch_instead_of_hanging():
    jobs = range_jobs("88.118.2", "DIE-{n}", 1, 10, handle_form)
    with pytest.raises(BrokenProcessPool):
        list(render(jobs, DiesInWorker(), workers=2))


def test_workers_must_be_a_count():
    with pytest.raises(InvalidValue, match="workers"):
        list(render([], PngLabel(LAYOUT), workers=-1))


# --- streaming -------------------------------------------------------------------------

#: Labels streamed into one PDF in the memory test: many times the bound.
STREAMED_LABELS = 2_000


def test_pdf_batch_holds_a_bounded_number_of_labels(tmp_path):
    """A generator source of 2,000 labels into a PDF: at no point are more
    than max_in_flight(workers) labels read but not yet written."""
    workers = 2
    read = written = peak = 0

    def source():
        nonlocal read
        for n in range(STREAMED_LABELS):
            read += 1
            yield LabelJob(f"88.118.2/S-{n}", f"88.118.2/S-{n}", ())

    def progress(count):
        nonlocal written, peak
        peak = max(peak, read - written)
        written += count

    stats = RenderStats()
    with open(tmp_path / "stream.pdf", "wb") as out:
        result = pdf_sheets(source(), out, LAYOUT, workers=workers, progress=progress, stats=stats)
    bound = max_in_flight(workers)
    assert written == read == result.labels == STREAMED_LABELS
    assert 0 < peak <= bound and stats.peak_in_flight <= bound
    assert bound < STREAMED_LABELS // 10
    assert result.pages == -(-STREAMED_LABELS // 24)  # 3 x 8 labels on A4


def test_replacing_leaves_no_partial_file(tmp_path):
    target = tmp_path / "out.pdf"
    with pytest.raises(RuntimeError), replacing(target) as out:
        out.write(b"half a file")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with replacing(target) as out:
        out.write(b"whole")
    assert target.read_bytes() == b"whole" and sorted(p.name for p in tmp_path.iterdir()) == ["out.pdf"]
