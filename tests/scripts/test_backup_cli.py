"""``idnode backup``: keygen, create (FULL, DIFF), verify, restore and
digest, run as real subprocesses over a real node folder."""

from __future__ import annotations

import os
import re
from pathlib import Path

from idcore.settings import DATABASE_NAME
from registry.backup.archive import part_name
from registry.sqlite_store import SqliteStore
from registry.store import Op
from scripts.node_process import run_cli
from tests.registry.test_backup import product


async def put_products(data, numbers, version=0, delete=()):
    async with SqliteStore(data / DATABASE_NAME) as store:
        def write(txn):
            for i in numbers:
                key, record = product(i, version)
                txn.put(key, record, Op.UPDATE, None)
            for i in delete:
                key, record = product(i)
                txn.delete(key, record.handle, None)

        await store.transact(write)


def archive_of(result) -> str:
    return re.search(rb"archive:\s+(\S+)", result.stdout).group(1).decode()


def digest_of(result) -> bytes:
    return re.search(rb"digest: (sha256:[0-9a-f]{64}) \((\d+) records\)", result.stdout).group(0)


async def test_backup_create_verify_restore_digest(tmp_path):
    src, keys, out = tmp_path / "src", tmp_path / "keys", tmp_path / "out"
    assert run_cli("init", "--data", str(src), "--prefix", "88.118.2").returncode == 0
    assert oct(os.stat(src / "node_key.pem").st_mode & 0o777) == "0o600"
    keygen = run_cli("backup", "keygen", "--out", str(keys))
    assert keygen.returncode == 0, keygen.stderr
    assert oct(os.stat(keys / "recipient_key.pem").st_mode & 0o777) == "0o600"
    pub, priv = str(keys / "recipient_pub.pem"), str(keys / "recipient_key.pem")

    diff_first = run_cli("backup", "create", "--data", str(src), "--diff", "--to", str(out), "--recipient", pub)
    assert diff_first.returncode == 4 and b"make a FULL backup first" in diff_first.stderr

    await put_products(src, range(200))
    full = run_cli("backup", "create", "--data", str(src), "--full", "--to", str(out), "--recipient", pub,
                   "--volume-size", "4096")
    assert full.returncode == 0, full.stderr
    assert b"201 records, 0 deletions" in full.stdout
    await put_products(src, range(10), version=1, delete=range(50, 60))
    diff = run_cli("backup", "create", "--data", str(src), "--diff", "--to", str(out), "--recipient", pub)
    assert diff.returncode == 0, diff.stderr
    assert b"10 records, 10 deletions" in diff.stdout

    node_pub = run_cli("backup", "node-pub", "--data", str(src))
    (tmp_path / "node.pem").write_bytes(node_pub.stdout)
    ok = run_cli("backup", "verify", archive_of(full), "--recipient-key", priv, "--signer-pub", str(tmp_path / "node.pem"))
    assert ok.returncode == 0 and b"OK: full" in ok.stdout, ok.stderr

    restored = run_cli("backup", "restore", "--data", str(tmp_path / "dst"), archive_of(diff), archive_of(full),
                       "--recipient-key", priv)
    assert restored.returncode == 0, restored.stderr
    source_digest = run_cli("backup", "digest", "--data", str(src))
    assert digest_of(restored) == digest_of(source_digest)
    assert b"(191 records)" in digest_of(restored)

    again = run_cli("backup", "restore", "--data", str(tmp_path / "dst"), archive_of(full), "--recipient-key", priv)
    assert again.returncode == 4 and b"not empty" in again.stderr

    other = run_cli("backup", "keygen", "--out", str(tmp_path / "other"))
    assert other.returncode == 0
    wrong = run_cli("backup", "verify", archive_of(full), "--recipient-key", str(tmp_path / "other" / "recipient_key.pem"))
    assert wrong.returncode == 4 and b"is encrypted for recipient" in wrong.stderr

    part = Path(archive_of(full)) / part_name(2)
    data = bytearray(part.read_bytes())
    data[100] ^= 0x80
    part.write_bytes(bytes(data))
    bad = run_cli("backup", "verify", archive_of(full), "--recipient-key", priv)
    assert bad.returncode == 4
    assert b"part 2 (records-0002.ndjson.enc): SHA-256 mismatch" in bad.stderr

    broken = run_cli("backup", "restore", "--data", str(tmp_path / "dst2"), archive_of(full), "--recipient-key", priv)
    assert broken.returncode == 4
    assert b"part 2 (records-0002.ndjson.enc): SHA-256 mismatch; the restore stopped part way" in broken.stderr
