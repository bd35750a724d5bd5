"""``POST /api/scan``: whatever a scanner produced (text in any input form,
with keyboard-wedge quirks, or a picture) is normalised, resolved through
a real hierarchy and answered as the record plus what was scanned."""

from __future__ import annotations

import io
import random

import aiohttp
import pytest
from PIL import Image, ImageDraw, ImageFilter

from idcore.handle import url_path
from qr.image import png_bytes, symbol_image
from qr.symbol import ModuleSize, make_symbol
from resolver.scan_api import MAX_SCAN_BODY_BYTES, MAX_SCAN_TEXT_CHARS
from tests.resolver.conftest import sample
from tests.resolver.front_fixtures import put_record, text_value

HANDLE = sample(2)  # 88.118.2/PRD-2026-000002
CHINESE = "88.118.2/批次-2024/产品 1"


async def record_of(client, handle: str) -> dict:
    """What ``GET /api/handles/{handle}`` answers, for comparison."""
    reply = await client.get(f"/api/handles/{url_path(handle)}")
    assert reply.status == 200
    return await reply.json()


async def scan(client, data, content_type: str | None = None, **kwargs) -> tuple[int, dict]:
    headers = {"Content-Type": content_type} if content_type else None
    reply = await client.post("/api/scan", data=data, headers=headers, **kwargs)
    return reply.status, await reply.json()


def label_png(text: str, caption: str) -> bytes:
    """A label: the code with a line of text under it, as a line prints it."""
    code = symbol_image(make_symbol(text), ModuleSize.snapped(0.5, 300)).convert("L")
    label = Image.new("L", (code.width + 40, code.height + 60), 255)
    label.paste(code, (20, 10))
    ImageDraw.Draw(label).text((30, code.height + 20), caption, fill=0)
    out = io.BytesIO()
    label.save(out, "PNG")
    return out.getvalue()


def photo_jpeg(label: bytes, *, angle: float = 13, scale: float = 1.7) -> bytes:
    """``label`` as a phone photographs it: turned, enlarged, slightly
    blurred, on a larger grey, noisy background, saved as JPEG."""
    image = Image.open(io.BytesIO(label)).convert("L")
    image = image.resize((int(image.width * scale), int(image.height * scale)), Image.Resampling.BICUBIC)
    image = image.rotate(angle, expand=True, fillcolor=150, resample=Image.Resampling.BICUBIC)
    rng = random.Random(7)
    canvas = Image.effect_noise((1600, 1200), 12).point(lambda v: 90 + v // 3)
    canvas.paste(image, (rng.randrange(50, 1600 - image.width - 50), rng.randrange(50, 1200 - image.height - 50)))
    canvas = canvas.filter(ImageFilter.GaussianBlur(0.8)).convert("RGB")
    out = io.BytesIO()
    canvas.save(out, "JPEG", quality=80)
    return out.getvalue()


# --- text --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        HANDLE,
        f"hdl:{HANDLE}",
        f"https://id.example.cn/{HANDLE}",
        "https://id.example.cn/88.118.2%2FPRD%2D2026%2D000002",  # percent-encoded
        f"http://127.0.0.1:8000/api/handles/{HANDLE}?pretty",
        f"HTTPS://ID.EXAMPLE.CN/{HANDLE}",  # a keyboard-wedge scanner with Caps Lock on
        f"HTTPS://ID.EXAMPLE.CN/{HANDLE}\r\n",  # ... which ends each read with Enter
        f"{HANDLE}\r",
        f"   {HANDLE}  \n",
        f"]Q1{HANDLE}\r\n",  # a scanner announcing the symbology (AIM identifier)
        f"\x02{HANDLE}\x03",  # STX/ETX framing
    ],
)
async def test_every_text_form_resolves_to_the_record(resolver_client, text):
    status, body = await scan(resolver_client, text.encode(), "text/plain")
    assert status == 200, body
    record = await record_of(resolver_client, HANDLE)
    assert body["responseCode"] == 1
    assert body["handle"] == HANDLE
    assert body["values"] == record["values"]
    assert body["scanned"] == {"text": text.strip(), "handle": HANDLE}


async def test_json_and_form_bodies_carry_the_text(resolver_client):
    status, body = await scan(resolver_client, b'{"text": "hdl:%s\\r\\n"}' % HANDLE.encode(), "application/json")
    assert status == 200 and body["handle"] == HANDLE
    assert body["scanned"] == {"text": f"hdl:{HANDLE}", "handle": HANDLE}
    status, body = await scan(resolver_client, {"text": f"HTTPS://X.CN/{HANDLE}"})  # a form, urlencoded
    assert status == 200 and body["scanned"]["handle"] == HANDLE


async def test_a_chinese_suffix_in_any_encoding_the_scanner_sends(resolver_client, hierarchy):
    await put_record(hierarchy.enterprise, CHINESE, [text_value(2001, "PRODUCT_NAME", "谐波减速器")])
    # serial scanners in China often send GB18030 (or GBK); the charset says so
    status, body = await scan(resolver_client, CHINESE.encode("gb18030"), "text/plain; charset=gb18030")
    assert status == 200 and body["handle"] == CHINESE
    url = "HTTPS://ID.EXAMPLE.CN/" + url_path(CHINESE).upper()  # percent-escapes survive upper-casing
    status, body = await scan(resolver_client, url.encode(), "text/plain")
    assert status == 200 and body["handle"] == CHINESE
    assert body["values"][0]["data"]["value"] == "谐波减速器"


async def test_a_resolver_below_the_root_of_its_host_reads_its_own_urls(make_resolver_client):
    client = await make_resolver_client(public_url="https://id.example.cn/r")
    status, body = await scan(client, f"HTTPS://ID.EXAMPLE.CN/R/{HANDLE}\r\n".encode(), "text/plain")
    assert status == 200 and body["handle"] == HANDLE


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("hello world", "no '/' between prefix and suffix"),
        ("88.118.2", "no '/'"),
        ("PRD-2026-000002", "no '/'"),
        ("https://shop.example.com/", "no handle in its path"),
        ("https://shop.example.com/item/42", "numeric national code"),
        ("88.118.2/PRD\x07-1", "U+0007"),
        ("\r\n", "empty input"),
    ],
)
async def test_text_that_is_not_an_identifier_is_a_400_naming_the_problem(resolver_client, text, fragment):
    status, body = await scan(resolver_client, text.encode(), "text/plain")
    assert status == 400
    assert body["responseCode"] == 102
    assert fragment in body["message"]
    assert body["scanned"] == {"text": text.strip()}


async def test_text_longer_than_any_code_is_refused(resolver_client):
    status, body = await scan(resolver_client, b"88.1/" + b"x" * MAX_SCAN_TEXT_CHARS, "text/plain")
    assert status == 400 and "MAX_SCAN_TEXT_CHARS" in body["message"]


async def test_a_handle_that_does_not_exist_is_a_404_with_what_was_scanned(resolver_client, hierarchy):
    status, body = await scan(resolver_client, b"88.118.2/NO-SUCH\r\n", "text/plain")
    assert status == 404
    assert body == {
        "responseCode": 100, "message": "Handle Not Found", "handle": "88.118.2/NO-SUCH",
        "scanned": {"text": "88.118.2/NO-SUCH", "handle": "88.118.2/NO-SUCH"},
    }
    # a lower-case suffix cannot survive Caps Lock: the reply says why it may not be found
    await put_record(hierarchy.enterprise, "88.118.2/prd-lower", [text_value(2001, "PRODUCT_NAME", "x")])
    status, body = await scan(resolver_client, b"HTTPS://ID.EXAMPLE.CN/88.118.2/PRD-LOWER\r\n", "text/plain")
    assert status == 404
    assert body["scanned"]["handle"] == "88.118.2/PRD-LOWER"
    assert "Caps Lock" in body["hint"]


# --- pictures ------------------------------------------------------------------------


async def test_a_png_from_the_qr_endpoint_scans_back_raw_and_as_a_form_upload(resolver_client):
    reply = await resolver_client.get(f"/qr/{HANDLE}.png")
    png = await reply.read()
    url = f"http://{resolver_client.server.host}:{resolver_client.server.port}/{HANDLE}"
    status, body = await scan(resolver_client, png, "image/png")
    assert status == 200, body
    assert body["scanned"] == {"text": url, "handle": HANDLE}
    assert body["values"] == (await record_of(resolver_client, HANDLE))["values"]

    form = aiohttp.FormData()
    form.add_field("note", "from the line 3 handheld")
    form.add_field("image", png, filename="scan.png", content_type="image/png")
    status, body = await scan(resolver_client, form)
    assert status == 200 and body["scanned"]["handle"] == HANDLE


async def test_a_photo_of_a_label_decodes(resolver_client, hierarchy):
    await put_record(hierarchy.enterprise, CHINESE, [text_value(2001, "PRODUCT_NAME", "谐波减速器")])
    payload = "https://id.example.cn/" + url_path(CHINESE)
    jpeg = photo_jpeg(label_png(payload, "88.118.2/..."))
    status, body = await scan(resolver_client, jpeg, "image/jpeg")
    assert status == 200, body
    assert body["scanned"] == {"text": payload, "handle": CHINESE}
    form = aiohttp.FormData()
    form.add_field("image", jpeg, filename="IMG_0001.JPG", content_type="image/jpeg")
    status, body = await scan(resolver_client, form)
    assert status == 200 and body["handle"] == CHINESE


async def test_pictures_without_a_code_or_not_pictures_are_400(resolver_client):
    blank = io.BytesIO()
    Image.new("L", (400, 300), 200).save(blank, "PNG")
    status, body = await scan(resolver_client, blank.getvalue(), "image/png")
    assert status == 400 and body["message"] == "no QR code found in the image"
    status, body = await scan(resolver_client, b"GIF89a but not really", "image/gif")
    assert status == 400 and "not an image" in body["message"]
    form = aiohttp.FormData()
    form.add_field("photo", png_bytes(make_symbol(HANDLE), ModuleSize.snapped()), filename="a.png")
    status, body = await scan(resolver_client, form)
    assert status == 400 and "no field named image" in body["message"]


# --- the body ------------------------------------------------------------------------


async def test_a_body_over_the_limit_is_413_declared_or_streamed(resolver_client):
    too_big = b"\xff" * (MAX_SCAN_BODY_BYTES + 1)
    status, body = await scan(resolver_client, io.BytesIO(too_big), "image/jpeg")
    assert status == 413 and "MAX_SCAN_BODY_BYTES" in body["message"]

    async def chunks():  # chunked: no Content-Length to refuse early
        for _ in range(11):
            yield b"\xff" * (1024 * 1024)

    status, body = await scan(resolver_client, chunks(), "image/jpeg")
    assert status == 413

    form = aiohttp.FormData()
    form.add_field("image", io.BytesIO(too_big), filename="big.jpg", content_type="image/jpeg")
    status, body = await scan(resolver_client, form)
    assert status == 413


@pytest.mark.parametrize(
    ("data", "content_type", "status", "fragment"),
    [
        (b"<scan/>", "application/xml", 415, "not a scan"),
        (b"{not json", "application/json", 400, "cannot be parsed"),
        (b'{"handle": "88.1/x"}', "application/json", 400, '{"text"'),
        (b"\xff\xfe88.1/x", "text/plain", 400, "not utf-8 text"),
        (b"88.1/x", "text/plain; charset=klingon", 400, "charset"),
        (b"handle=88.1/x", "application/x-www-form-urlencoded", 400, "no field named text"),
        (b"--x\r\n", "multipart/form-data", 400, "multipart"),
    ],
)
async def test_bodies_that_are_not_scans_are_refused_with_a_reason(resolver_client, data, content_type, status, fragment):
    got, body = await scan(resolver_client, data, content_type)
    assert got == status
    assert fragment in body["message"]


async def test_only_post(resolver_client):
    reply = await resolver_client.get("/api/scan")
    assert reply.status == 405 and reply.headers["Allow"] == "POST"
