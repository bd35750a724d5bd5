"""The README's promise, with curl itself: a record PUT with credentials, a
URL and custom typed values comes back from GET in Handle.Net REST shape."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from scripts.node_process import NodeProcess, run_cli

SECRET = "curl-secret"


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    assert shutil.which("curl"), "curl is installed by scripts/test.sh"
    data = tmp_path_factory.mktemp("curl-node")
    assert run_cli("init", "--data", str(data), "--prefix", "88.118.2", "--secret", SECRET).returncode == 0
    with NodeProcess(data) as process:
        yield process


def curl(*args: str) -> tuple[int, bytes]:
    out = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", *args], capture_output=True, check=True, timeout=60).stdout
    body, _, status = out.rpartition(b"\n")
    return int(status), body


def test_curl_put_then_get_is_handle_net_json(node):
    body = json.dumps({"values": [
        {"index": 1, "type": "URL", "data": {"format": "string", "value": "https://example.com/p/123"}},
        {"index": 2001, "type": "PRODUCT_NAME", "data": {"format": "string", "value": "减速机 RV-40"}},
        {"index": 2002, "type": "WEIGHT_KG", "data": {"format": "string", "value": "12.5"}},
    ]}, ensure_ascii=False)
    status, reply = curl("-X", "PUT", "-u", f"300%3A0.NA%2F88.118.2:{SECRET}", "-H", "Content-Type: application/json",
                         "--data-binary", body, f"{node.url}/api/handles/88.118.2/PRD-2024-000123")
    assert (status, reply) == (201, b'{"responseCode":1,"handle":"88.118.2/PRD-2024-000123"}')

    status, reply = curl(f"{node.url}/api/handles/88.118.2/PRD-2024-000123")
    assert status == 200
    normalised = re.sub(rb'"timestamp":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"', b'"timestamp":"T"', reply)
    assert normalised == (
        '{"responseCode":1,"handle":"88.118.2/PRD-2024-000123","values":['
        '{"index":1,"type":"URL","data":{"format":"string","value":"https://example.com/p/123"},"ttl":86400,"timestamp":"T"},'
        '{"index":2001,"type":"PRODUCT_NAME","data":{"format":"string","value":"减速机 RV-40"},"ttl":86400,"timestamp":"T"},'
        '{"index":2002,"type":"WEIGHT_KG","data":{"format":"string","value":"12.5"},"ttl":86400,"timestamp":"T"},'
        '{"index":100,"type":"HS_ADMIN","data":{"format":"admin","value":{"handle":"0.NA/88.118.2","index":300,'
        '"permissions":"011111110011"}},"ttl":86400,"timestamp":"T"}]}'
    ).encode()


def test_curl_user_without_percent_encoding_and_proxy_redirect(node):
    status, _ = curl("-X", "PUT", "-u", f"300:0.NA/88.118.2:{SECRET}", "-H", "Content-Type: application/json",
                     "--data-binary", '[{"index":1,"type":"URL","data":"https://example.com/p/9"}]',
                     f"{node.url}/api/handles/88.118.2/PRD-9")
    assert status == 201
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", f"{node.url}/88.118.2/PRD-9"],
                         capture_output=True, check=True, timeout=60).stdout
    assert out == b"302 https://example.com/p/9"


def test_curl_without_credentials_is_told_to_authenticate(node):
    status, reply = curl("-X", "PUT", "-H", "Content-Type: application/json", "--data-binary", "[]",
                         f"{node.url}/api/handles/88.118.2/PRD-10")
    assert status == 401 and json.loads(reply)["responseCode"] == 402
