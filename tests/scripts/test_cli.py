"""The idnode command line, run as real subprocesses against a real node."""

from __future__ import annotations

import json
import os

import orjson
import pytest

from scripts.node_process import NodeProcess, free_port, run_cli


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    data = tmp_path_factory.mktemp("cli-node")
    port = free_port()
    init = run_cli("init", "--data", str(data), "--prefix", "88.118.2", "--site-port", str(port))
    assert init.returncode == 0, init.stderr
    with NodeProcess(data, port) as process:
        yield process


def cli(node, *args, **kwargs):
    return run_cli(*args, "--server", node.url, "--credentials", str(node.data_dir / "admin.json"), **kwargs)


def test_init_writes_private_credentials_and_refuses_twice(tmp_path):
    first = run_cli("init", "--data", str(tmp_path), "--prefix", "88.200", "--secret", "given-secret")
    assert first.returncode == 0, first.stderr
    assert b"300:0.NA/88.200" in first.stdout
    credentials = tmp_path / "admin.json"
    assert oct(os.stat(credentials).st_mode & 0o777) == "0o600"
    assert json.loads(credentials.read_text()) == {"identity": "300:0.NA/88.200", "secret": "given-secret"}
    again = run_cli("init", "--data", str(tmp_path), "--prefix", "88.200")
    assert again.returncode == 4 and b"already homes 88.200" in again.stderr
    assert run_cli("init", "--data", str(tmp_path), "--prefix", "88.200", "--if-missing").returncode == 0
    bad = run_cli("init", "--data", str(tmp_path / "x"), "--prefix", "88..1")
    assert bad.returncode == 4 and b"empty segment" in bad.stderr


def test_put_get_delete_round_trip(node):
    put = cli(node, "put", "88.118.2/CLI-1", "--url", "https://e.example/1", "--value", "2001:PRODUCT_NAME=减速机")
    assert put.returncode == 0, put.stderr
    assert orjson.loads(put.stdout) == {"responseCode": 1, "handle": "88.118.2/CLI-1", "created": True}
    got = cli(node, "get", "88.118.2/CLI-1", "--type", "PRODUCT_NAME")
    assert got.returncode == 0
    assert orjson.loads(got.stdout)["values"][0]["data"]["value"] == "减速机"
    assert cli(node, "delete", "88.118.2/CLI-1").returncode == 0
    missing = cli(node, "get", "88.118.2/CLI-1")
    assert missing.returncode == 1 and b"response code 100" in missing.stderr


def test_list_and_mint(node):
    minted = cli(node, "put", "88.118.2", "--mint", "--url", "https://e.example/m")
    assert minted.returncode == 0
    handle = orjson.loads(minted.stdout)["handle"]
    listing = cli(node, "list", "88.118.2")
    assert handle in orjson.loads(listing.stdout)["handles"]


def test_batch_reports_progress_summary_and_errors(node, tmp_path):
    lines = [orjson.dumps({"handle": f"88.118.2/CB-{i}", "values": [{"index": 1, "type": "URL", "data": f"https://e/{i}"}]}) for i in range(500)]
    lines.insert(100, b"not json")
    source = tmp_path / "batch.ndjson"
    source.write_bytes(b"\n".join(lines) + b"\n")
    errors = tmp_path / "errors.ndjson"
    result = cli(node, "batch", str(source), "--errors", str(errors))
    assert result.returncode == 1
    assert b"501 lines: 500 created; 1 refused" in result.stdout
    assert b"line 101" in result.stderr  # shown, with its line number
    refused = [orjson.loads(line) for line in errors.read_bytes().splitlines()]
    assert [(r["line"], r["responseCode"]) for r in refused] == [(101, 4)]
    again = cli(node, "batch", str(source), "--quiet")
    assert b"500 unchanged" in again.stdout  # a re-sent batch is harmless


def test_exit_codes(node, tmp_path):
    unreachable = run_cli("get", "88.118.2/x", "--server", f"http://127.0.0.1:{free_port()}")
    assert unreachable.returncode == 3 and b"cannot reach" in unreachable.stderr
    refused = run_cli("put", "88.118.2/x", "--url", "https://e", "--server", node.url, "--id", "300:0.NA/88.118.2",
                      env={"IDNODE_SECRET": "wrong"})
    assert refused.returncode == 1 and b"response code 403" in refused.stderr
    bad_value = cli(node, "put", "88.118.2/x", "--value", "NOEQUALS")
    assert bad_value.returncode == 2
    assert run_cli("frobnicate").returncode == 2
    missing_file = cli(node, "batch", str(tmp_path / "none.ndjson"))
    assert missing_file.returncode == 4 and b"cannot read" in missing_file.stderr


def test_serve_refuses_bad_settings(tmp_path):
    no_db = run_cli("serve", "--data", str(tmp_path / "empty"))
    assert no_db.returncode == 4 and b"run 'idnode init" in no_db.stderr
    config = tmp_path / "node.toml"
    config.write_text('[node]\nport = "eighty"\n')
    bad = run_cli("serve", "--config", str(config))
    assert bad.returncode == 4 and b"port 'eighty' is not a number" in bad.stderr
    bad_env = run_cli("serve", env={"IDNODE_PORT": "99999"})
    assert bad_env.returncode == 4 and b"IDNODE_PORT" in bad_env.stderr


def test_serve_reads_a_toml_file(tmp_path):
    port = free_port()
    assert run_cli("init", "--data", str(tmp_path), "--prefix", "88.300").returncode == 0
    config = tmp_path / "node.toml"
    config.write_text(f'[node]\ndata_dir = "{tmp_path}"\nport = {port}\n')
    import subprocess
    import sys
    import time
    import urllib.request

    process = subprocess.Popen([sys.executable, "-m", "scripts.idnode", "serve", "--config", str(config)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/prefixes", timeout=1) as reply:
                    assert b"0.NA/88.300" in reply.read()
                    break
            except OSError:
                time.sleep(0.05)
        else:
            pytest.fail("node configured by TOML did not answer")
    finally:
        process.terminate()
        process.wait(timeout=30)
