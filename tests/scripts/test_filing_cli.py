"""``idnode filing run`` against a real parent process that is killed with
SIGKILL mid-filing and restarted: the parent ends with exactly the child's
journal (no gap, no duplicate); status, list and statistics from the CLI."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
import urllib.request
from pathlib import Path

import orjson

from idcore.settings import DATABASE_NAME
from registry.filing_store import FILINGS_NAME
from scripts.node_process import IDNODE, NodeProcess, run_cli

PARENT, CHILD = "88.118", "88.118.2"
RECORDS = 6000

#: Seconds the filer may take to catch up (and for the kill window to open).
CATCH_UP_TIMEOUT = 120


def wait_for(condition, what: str, timeout: float = CATCH_UP_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except OSError:  # the parent is restarting
            value = None
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def lag(parent: NodeProcess) -> dict:
    with urllib.request.urlopen(f"{parent.url}/api/filings/lag?child={CHILD}", timeout=2) as reply:
        rows = json.loads(reply.read())["children"]
    return rows[0] if rows else {"filedSeq": 0, "childLastSeq": 0}


def child_master_data_seqs(data: Path) -> list[int]:
    with sqlite3.connect(data / DATABASE_NAME) as db:
        rows = db.execute(
            "SELECT seq FROM journal WHERE op IN ('create', 'update', 'delete') AND upper(handle) LIKE ? ORDER BY seq",
            (CHILD + "/%",),
        ).fetchall()
    return [seq for (seq,) in rows]


def child_last_seq(data: Path) -> int:
    with sqlite3.connect(data / DATABASE_NAME) as db:
        return db.execute("SELECT max(seq) FROM journal").fetchone()[0]


def test_parent_sigkilled_mid_filing_then_restarted_has_every_entry_once(tmp_path):
    parent_dir, child_dir = tmp_path / "parent", tmp_path / "child"
    assert run_cli("init", "--data", str(parent_dir), "--prefix", PARENT, "--secret", "parent-secret").returncode == 0
    assert run_cli("init", "--data", str(child_dir), "--prefix", CHILD, "--secret", "child-secret").returncode == 0
    parent_creds = ["--credentials", str(parent_dir / "admin.json")]
    child_creds = ["--credentials", str(child_dir / "admin.json")]
    delegation = tmp_path / "delegation.json"
    delegation.write_text(json.dumps([{"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": {
        "handle": f"0.NA/{PARENT}", "index": 300, "permissions": "111111111111"}}}]))
    source = tmp_path / "records.ndjson"
    source.write_bytes(b"".join(
        orjson.dumps({"handle": f"{CHILD}/F-{i:06}", "values": [{"index": 1, "type": "URL", "data": f"https://e/{i}"},
                                                                 {"index": 2, "type": "TEMPLATE", "data": "product-v1"}]})
        + b"\n" for i in range(RECORDS)
    ))
    parent = NodeProcess(parent_dir).start()
    child = NodeProcess(child_dir).start()
    filer = None
    try:
        put = run_cli("put", f"0.NA/{CHILD}", "--values-json", str(delegation), "--server", parent.url, *parent_creds)
        assert put.returncode == 0, put.stderr
        granted = run_cli("filing", "grant", "--server", parent.url, "--child-data", str(child_dir), *parent_creds)
        assert granted.returncode == 0 and b"may now file" in granted.stdout, granted.stderr
        loaded = run_cli("batch", str(source), "--quiet", "--server", child.url, *child_creds)
        assert loaded.returncode == 0, loaded.stderr
        for i in range(20):  # deletes are master data too
            assert run_cli("delete", f"{CHILD}/F-{i:06}", "--server", child.url, *child_creds).returncode == 0
        for i in range(20, 30):  # resolutions for the statistics
            with urllib.request.urlopen(f"{child.url}/api/handles/{CHILD}/F-{i:06}", timeout=5) as reply:
                assert reply.status == 200

        with open(tmp_path / "filer.log", "wb") as log:  # the filer keeps its own descriptor
            filer = subprocess.Popen(
                [*IDNODE, "filing", "run", "--data", str(child_dir), "--parent", parent.url, "--batch", "10",
                 "--poll", "0.05", "--max-backoff", "0.5"], stdout=log, stderr=subprocess.STDOUT,
            )
        last = child_last_seq(child_dir)
        seen = wait_for(lambda: (row := lag(parent)) and 0 < row["filedSeq"] < last // 2 and row, "filing part-way")
        parent.kill()
        time.sleep(1.0)  # the filer fails and backs off; the child keeps serving
        with urllib.request.urlopen(f"{child.url}/api/handles/{CHILD}/F-000100", timeout=5) as reply:
            assert reply.status == 200
        parent = NodeProcess(parent_dir, port=parent.port).start()
        killed_at = lag(parent)["filedSeq"]
        assert seen["filedSeq"] <= killed_at < last
        final = wait_for(lambda: (row := lag(parent))["filedSeq"] == last and row, "the filer to catch up")
        assert final["lagEntries"] == 0 and final["childLastSeq"] == last

        status = run_cli("filing", "status", "--server", parent.url)
        assert status.returncode == 0 and CHILD in status.stdout.decode(), status.stderr
        listed = run_cli("filing", "list", "--server", parent.url, "--child", CHILD, "--handle", f"{CHILD}/F-000005")
        assert listed.returncode == 0 and listed.stdout.count(b"F-000005") == 2  # created, then deleted
        assert b"create" in listed.stdout and b"delete" in listed.stdout
    finally:
        if filer is not None:
            filer.send_signal(signal.SIGINT)
            try:
                filer.wait(timeout=30)
            except subprocess.TimeoutExpired:
                filer.kill()
        child.stop()
        parent.stop()
    with sqlite3.connect(parent_dir / FILINGS_NAME) as db:
        filed = [seq for (seq,) in db.execute("SELECT seq FROM filed_entries WHERE child = ? ORDER BY seq", (CHILD,))]
        # a handle deleted since was filed with no summary (its record is gone)
        template = db.execute(
            "SELECT DISTINCT template FROM filed_entries WHERE op = 'create' AND types IS NOT NULL"
        ).fetchall()
    expected = child_master_data_seqs(child_dir)
    assert len(expected) == RECORDS + 20
    assert filed == expected  # no gap, no duplicate
    assert template == [("product-v1",)]

    # the child node saved its counters on shutdown; file today's report on demand
    with NodeProcess(parent_dir, port=parent.port) as parent:
        once = run_cli("filing", "run", "--data", str(child_dir), "--parent", parent.url, "--once", "--statistics")
        assert once.returncode == 0 and b"filed 0 journal entries" in once.stdout, once.stderr
        with urllib.request.urlopen(f"{parent.url}/api/filings?child={CHILD}&statistics", timeout=5) as reply:
            reports = json.loads(reply.read())["statistics"]
    # the running filer filed no past day (the child's journal begins today); --statistics today's so far
    [report] = reports
    assert report["registrations"]["day"] == RECORDS and report["registrations"]["total"] == RECORDS - 20
    assert report["resolution"]["requests"] >= 11 and report["resolution"]["successes"] >= 11
