"""``idnode qr``, run as real subprocesses: one code or label, batches to
PDF, ZPL and PNG files, and ``qr verify`` with its exit codes."""

from __future__ import annotations

import os

import orjson
import pytest
from PIL import Image

from qr.symbol import make_symbol
from qr.verify import decode, open_image
from resolver.hierarchy import sample_values
from scripts.node_process import NodeProcess, free_port, run_cli

RESOLVER = "https://resolver.example.com"


@pytest.fixture(autouse=True)
def no_font_override(monkeypatch):
    monkeypatch.delenv("IDNODE_LABEL_FONT", raising=False)


def qr(*args, cwd):
    return run_cli("qr", *args, cwd=cwd)


def decoded(path):
    return [(code.text, code.level) for code in decode(open_image(path.read_bytes()))]


def test_one_code_png_and_svg_and_verify(tmp_path):
    made = qr("88.118.2/批次-2026/减速机", "--form", "handle", "--level", "H", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    png = tmp_path / "88.118.2_批次-2026_减速机.png"  # named after the handle by default
    assert decoded(png) == [("88.118.2/批次-2026/减速机", "H")]
    verified = qr("verify", str(png), "--expect", "88.118.2/批次-2026/减速机", cwd=tmp_path)
    assert verified.returncode == 0, verified.stderr
    version = make_symbol("88.118.2/批次-2026/减速机", "H").version
    assert verified.stdout.decode().strip() == f"level H  version {version}  88.118.2/批次-2026/减速机"

    svg = qr("hdl:88.118.2/PRD-1", "-o", "code.svg", "--resolver", RESOLVER, cwd=tmp_path)
    assert svg.returncode == 0, svg.stderr
    assert (tmp_path / "code.svg").read_text().startswith("<?xml")
    verified = qr("verify", "code.svg", "--expect", f"{RESOLVER}/88.118.2/PRD-1", cwd=tmp_path)
    assert verified.returncode == 0, verified.stderr


def test_one_label_and_verify_exit_codes(tmp_path):
    made = qr("88.118.2/PRD-1", "--label", "--line", "RV-40 减速机", "-o", "label.png", "--resolver", RESOLVER, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    with Image.open(tmp_path / "label.png") as image:
        assert image.size == (591, 354) and image.info["dpi"] == pytest.approx((300, 300), abs=0.01)  # pHYs stores dots a metre
    assert qr("verify", "label.png", "--expect", f"{RESOLVER}/88.118.2/PRD-1", cwd=tmp_path).returncode == 0
    wrong = qr("verify", "label.png", "--expect", f"{RESOLVER}/88.118.2/PRD-2", cwd=tmp_path)
    assert wrong.returncode == 1 and b"no code carries" in wrong.stderr
    Image.new("L", (200, 200), 255).save(tmp_path / "blank.png")
    blank = qr("verify", "blank.png", cwd=tmp_path)
    assert blank.returncode == 1 and b"no QR code could be read" in blank.stderr
    (tmp_path / "junk.png").write_bytes(b"not an image")
    junk = qr("verify", "junk.png", cwd=tmp_path)
    assert junk.returncode == 4 and b"not an image" in junk.stderr
    assert qr("verify", "missing.png", cwd=tmp_path).returncode == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["88..2/X"], b"is not an identifier"),
        (["88.118.2/X", "--label", "-o", "x.svg"], b"labels are drawn as PNG"),
        (["88.118.2/X", "--line", "a"], b"add --label"),
        (["88.118.2/X", "--label", "--line", "a", "--fetch"], b"not both"),
        (["88.118.2/X", "-o", "x.gif"], b"must end in .png or .svg"),
    ],
)
def test_one_label_usage_errors(tmp_path, args, message):
    done = qr(*args, cwd=tmp_path)
    assert done.returncode == 2 and message in done.stderr


def test_batch_to_pdf_with_summary_and_verify(tmp_path):
    source = tmp_path / "labels.ndjson"
    source.write_bytes(
        b"".join(
            orjson.dumps({"handle": f"88.118.2/批次-{n}", "values": sample_values("88.118.2", n)}) + b"\n"
            for n in range(1, 31)
        )
    )
    done = qr("batch", "--ndjson", str(source), "--pdf", "out.pdf", "--form", "handle", "--workers", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = done.stdout.decode().strip()
    assert summary.startswith("30 labels, 2 pages, ") and summary.endswith("labels/s -> out.pdf")
    assert b"30/30" in done.stderr  # the progress bar
    assert sorted(os.listdir(tmp_path)) == ["labels.ndjson", "out.pdf"]
    verified = qr("verify", "out.pdf", "--expect", "88.118.2/批次-1", cwd=tmp_path)
    assert verified.returncode == 0, verified.stderr
    assert len(verified.stdout.splitlines()) == 24  # page 1: 3 x 8 labels


def test_batch_bad_line_names_it_and_leaves_no_file(tmp_path):
    source = tmp_path / "labels.csv"
    source.write_text("handle,product_name\n88.118.2/A,减速机\n88.118.2/B,x\n88..2/C,y\n", encoding="utf-8")
    done = qr("batch", "--csv", str(source), "--pdf", "out.pdf", "--quiet", cwd=tmp_path)
    assert done.returncode == 4
    assert f"{source}, line 4: prefix '88..2' has an empty segment".encode() in done.stderr
    assert sorted(os.listdir(tmp_path)) == ["labels.csv"]


def test_batch_range_to_zpl_and_png_folder(tmp_path):
    zpl = qr(
        "batch", "--prefix", "88.118.2", "--pattern", "批次-{n:03d}", "--from", "1", "--to", "5",
        "--zpl", "out.zpl", "--form", "handle", "--line", "减速机", "--quiet", cwd=tmp_path,
    )
    assert zpl.returncode == 0, zpl.stderr
    text = (tmp_path / "out.zpl").read_text(encoding="utf-8")
    assert text.count("^XA") == text.count("^XZ") == 5
    assert "^BQN,2,6^FDQM,B0019" + "88.118.2/批次-001" + "^FS" in text  # 13 ASCII bytes, 2 x 3 for 批次
    png = qr(
        "batch", "--prefix", "88.118.2", "--pattern", "PRD-{n}", "--from", "9", "--to", "11",
        "--png-dir", "labels", "--resolver", RESOLVER, "--level", "M", "--quiet", cwd=tmp_path,
    )
    assert png.returncode == 0, png.stderr
    names = sorted(os.listdir(tmp_path / "labels"))
    assert names == ["000001-88.118.2_PRD-9.png", "000002-88.118.2_PRD-10.png", "000003-88.118.2_PRD-11.png"]
    assert decoded(tmp_path / "labels" / names[2]) == [(f"{RESOLVER}/88.118.2/PRD-11", "M")]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--prefix", "88.118.2", "--pattern", "P-{n}", "--from", "1"], 2, b"needs --prefix, --pattern, --from and --to"),
        (["--prefix", "88.118.2", "--pattern", "P", "--from", "1", "--to", "2"], 4, b"must contain {n}"),
        (["--ndjson", "missing.ndjson"], 4, b"cannot read missing.ndjson"),
        (["--prefix", "88.118.2", "--pattern", "P-{n}", "--from", "1", "--to", "2", "--width-mm", "250", "--height-mm", "250"], 4, b"does not fit"),
    ],
)
def test_batch_errors(tmp_path, args, code, message):
    done = qr("batch", *args, "--pdf", "out.pdf", "--quiet", cwd=tmp_path)
    assert done.returncode == code and message in done.stderr, done.stderr


def test_zpl_module_too_large_is_refused(tmp_path):
    done = qr(
        "batch", "--prefix", "88.118.2", "--pattern", "P-{n}", "--from", "1", "--to", "2",
        "--zpl", "out.zpl", "--module-mm", "1.0", cwd=tmp_path,
    )
    assert done.returncode == 4 and b"1 to 10 dots a module" in done.stderr
    assert not (tmp_path / "out.zpl").exists()


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    data = tmp_path_factory.mktemp("qr-node")
    port = free_port()
    assert run_cli("init", "--data", str(data), "--prefix", "88.118.2", "--site-port", str(port)).returncode == 0
    with NodeProcess(data, port) as process:
        yield process


def test_label_lines_fetched_from_the_record(node, tmp_path):
    values = tmp_path / "values.json"
    values.write_bytes(orjson.dumps(sample_values("88.118.2", 7)))
    put = run_cli(
        "put", "88.118.2/FETCH-1", "--values-json", str(values),
        "--server", node.url, "--credentials", str(node.data_dir / "admin.json"),
    )
    assert put.returncode == 0, put.stderr
    fetched = qr("88.118.2/FETCH-1", "--label", "--fetch", "--resolver", node.url, "-o", "fetched.png", cwd=tmp_path)
    assert fetched.returncode == 0, fetched.stderr
    plain = qr("88.118.2/FETCH-1", "--label", "--resolver", node.url, "-o", "plain.png", cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    assert decoded(tmp_path / "fetched.png") == [(f"{node.url}/88.118.2/FETCH-1", "Q")]

    def ink(name):
        with Image.open(tmp_path / name) as image:
            return image.convert("L").histogram()[0]

    assert ink("fetched.png") > ink("plain.png") + 2000  # the record's four lines were drawn
    missing = qr("88.118.2/NOPE", "--label", "--fetch", "--resolver", node.url, "-o", "x.png", cwd=tmp_path)
    assert missing.returncode == 1 and b"response code 100" in missing.stderr
    unreachable = qr("88.118.2/X", "--label", "--fetch", "--resolver", f"http://127.0.0.1:{free_port()}", cwd=tmp_path)
    assert unreachable.returncode == 3
