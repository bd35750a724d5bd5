"""``idnode mirror`` killed with SIGKILL in the middle of catching up, then
restarted, ends with exactly the primary's records: no gap, no duplicate."""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from pathlib import Path

import orjson

from idcore.settings import DATABASE_NAME
from scripts.node_process import MirrorProcess, NodeProcess, run_cli

SECRET = "mirror-cli-secret"
RECORDS = 12_000

#: Seconds the mirror may take to catch up (and for the kill window to open).
CATCH_UP_TIMEOUT = 120


def records(database: Path) -> dict[str, tuple[str, bytes]]:
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT key, handle, vals FROM handles ORDER BY key").fetchall()
        homed = db.execute("SELECT prefix FROM prefixes").fetchall()
    return {**{key: (handle, vals) for key, handle, vals in rows}, "homed": (str(sorted(homed)), b"")}


def wait_for(condition, what: str, timeout: float = CATCH_UP_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_sigkill_mid_catch_up_then_restart_ends_with_the_primarys_records(tmp_path):
    primary_dir, mirror_dir = tmp_path / "primary", tmp_path / "mirror"
    assert run_cli("init", "--data", str(primary_dir), "--prefix", "88.118.2", "--secret", SECRET).returncode == 0
    source = tmp_path / "records.ndjson"
    source.write_bytes(b"".join(
        orjson.dumps({"handle": f"88.118.2/M-{i:06}", "values": [{"index": 1, "type": "URL", "data": f"https://e/{i}"}]})
        + b"\n" for i in range(RECORDS)
    ))
    with NodeProcess(primary_dir) as primary:
        loaded = run_cli("batch", str(source), "--quiet", "--server", primary.url, "--credentials",
                         str(primary_dir / "admin.json"))
        assert loaded.returncode == 0, loaded.stderr
        # changes after the creates: updates and deletes must be mirrored too
        for i in range(50):
            assert run_cli("delete", f"88.118.2/M-{i:06}", "--server", primary.url, "--credentials",
                           str(primary_dir / "admin.json")).returncode == 0
        assert run_cli("put", "88.118.2/M-000100", "--url", "https://changed", "--server", primary.url,
                       "--credentials", str(primary_dir / "admin.json")).returncode == 0

        mirror = MirrorProcess(mirror_dir, primary.url, batch=100)
        added = run_cli("site", "add-mirror", "--prefix", "88.118.2", "--address", "127.0.0.1", "--port",
                        str(mirror.port), "--server", primary.url, "--credentials", str(primary_dir / "admin.json"))
        assert added.returncode == 0 and b"added at index 2" in added.stdout, added.stderr
        mirror.start()
        try:
            def mid_way():
                status = mirror.status()
                return status["primarySeq"] and 0 < status["appliedSeq"] < status["primarySeq"] // 2 and status

            seen = wait_for(mid_way, "the mirror to be part-way through")
            mirror.kill()
            killed_at = orjson.loads((mirror_dir / "mirror.json").read_bytes())["applied_seq"]
            assert 0 < killed_at < seen["primarySeq"]

            mirror.start()
            final = wait_for(
                lambda: (s := mirror.status())["primarySeq"] and s["appliedSeq"] == s["primarySeq"] and s,
                "the mirror to catch up",
            )
            assert final["lagEntries"] == 0 and final["homedPrefixes"] == ["88.118.2"]
            sites = run_cli("get", "0.NA/88.118.2", "--type", "HS_SITE", "--server", mirror.url)
            assert sites.returncode == 0 and sites.stdout.count(b"HS_SITE") == 2, sites.stdout
            reply = run_cli("get", "88.118.2/M-000100", "--server", mirror.url)
            assert b"https://changed" in reply.stdout
            refused = run_cli("delete", "88.118.2/M-000100", "--server", mirror.url, "--credentials",
                              str(primary_dir / "admin.json"))
            assert refused.returncode == 1 and b"mirror of" in refused.stderr
        finally:
            mirror.stop()
    assert records(mirror_dir / DATABASE_NAME) == records(primary_dir / DATABASE_NAME)
    with sqlite3.connect(mirror_dir / DATABASE_NAME) as db:
        created = Counter(h for (h,) in db.execute("SELECT handle FROM journal WHERE op = 'create'"))
    assert max(created.values()) == 1  # the replayed page wrote nothing twice
