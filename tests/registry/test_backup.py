"""Backups: FULL and DIFF archives, their checks, and restores that give
exactly the source's records (issue 5, part 3)."""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from idcore.values import HandleValue
from registry.backup.archive import MANIFEST_NAME, part_name
from registry.backup.create import create_backup
from registry.backup.digest import records_digest
from registry.backup.errors import (
    ArchiveInvalid,
    RestoreRefused,
    SignatureInvalid,
    WrongRecipientKey,
)
from registry.backup.manifest import DIFF, FULL
from registry.backup.restore import restore_archives
from registry.backup.verify import verify_archive
from registry.memory_store import MemoryStore
from registry.records import encode_record
from registry.sqlite_store import SqliteStore
from registry.store import Op

PREFIX = "88.118.2"


def product(i: int, version: int = 0):
    handle = f"{PREFIX}/PRD-{i:08d}"
    values = [
        HandleValue(1, "URL", f"https://trace.example.com/p/{i:08d}?v={version}".encode()),
        HandleValue(2001, "PRODUCT_NAME", "RV-40 减速机".encode()),
    ]
    return handle.upper(), encode_record(handle, values, [1732600000 + version] * 2)


async def fill(store, numbers, version: int = 0, batch: int = 10_000) -> None:
    numbers = list(numbers)
    for start in range(0, len(numbers), batch):
        chunk = numbers[start : start + batch]

        def write(txn, chunk=chunk):
            for i in chunk:
                key, record = product(i, version)
                txn.put(key, record, Op.UPDATE if version else Op.CREATE, None)

        await store.transact(write)


async def remove(store, numbers) -> None:
    def write(txn):
        for i in numbers:
            key, record = product(i)
            txn.delete(key, record.handle, None)

    await store.transact(write)


@pytest.fixture
def keys():
    return X25519PrivateKey.generate(), Ed25519PrivateKey.generate()


async def source_store(n: int) -> MemoryStore:
    store = MemoryStore()
    await store.transact(lambda txn: txn.set_homed(PREFIX, True, None))
    await fill(store, range(n))
    return store


async def backup(store, tmp_path, keys, kind, since=None, volume=64 * 1024 * 1024):
    recipient, node = keys
    return await create_backup(
        store, kind=kind, out_dir=tmp_path / "out", recipient=recipient.public_key(), node_key=node,
        since=since, volume_bytes=volume,
    )


async def test_full_then_diffs_restore_to_the_same_digest_with_updates_and_deletes(tmp_path, keys):
    source = await source_store(500)
    full = await backup(source, tmp_path, keys, FULL)
    assert (full.manifest.records, full.manifest.deleted, full.manifest.prefixes) == (500, 0, (PREFIX,))

    await fill(source, range(50), version=1)          # updates
    await remove(source, range(100, 120))                # deletes
    await fill(source, range(500, 530))                  # creates
    await fill(source, range(530, 540))
    await remove(source, range(530, 540))                # created and deleted between backups
    diff1 = await backup(source, tmp_path, keys, DIFF, since=full.manifest.watermark_to)
    assert diff1.manifest.watermark_from == full.manifest.watermark_to
    assert (diff1.manifest.records, diff1.manifest.deleted) == (80, 30)

    await remove(source, range(10))
    await fill(source, range(10, 20), version=2)
    diff2 = await backup(source, tmp_path, keys, DIFF, since=diff1.manifest.watermark_to)

    target = MemoryStore()
    applied = await restore_archives(target, [diff2.folder, full.folder, diff1.folder], keys[0])  # any order
    assert [m.kind for m in applied] == [FULL, DIFF, DIFF]
    assert await records_digest(target) == await records_digest(source)
    assert (await records_digest(target))[1] == 500 + 30 - 20 - 10
    assert await target.homed_prefixes() == [PREFIX]
    assert await target.get(product(15)[0]) == product(15, 2)[1]


async def test_restore_of_a_full_alone_reproduces_the_source_in_sqlite(tmp_path, keys):
    source = await source_store(1000)
    full = await backup(source, tmp_path, keys, FULL, volume=20_000)
    assert len(full.manifest.parts) > 3
    assert sum(p.lines for p in full.manifest.parts) == 1000
    assert all(p.name == part_name(n) for n, p in enumerate(full.manifest.parts, 1))
    async with SqliteStore(tmp_path / "restored.sqlite3") as target:
        await restore_archives(target, [full.folder], keys[0], keys[1].public_key())
        assert await records_digest(target) == await records_digest(source)


async def test_backups_of_the_same_watermark_in_the_same_second_get_their_own_folders(tmp_path, keys, monkeypatch):
    source = await source_store(20)
    second = time.gmtime()
    monkeypatch.setattr(time, "gmtime", lambda *_: second)  # the archive name's time
    made = [await backup(source, tmp_path, keys, FULL) for _ in range(3)]
    folders = [m.folder for m in made]
    assert len(set(folders)) == 3, folders
    for m in made:
        verify_archive(m.folder, keys[0], keys[1].public_key())


async def test_volumes_respect_the_volume_size(tmp_path, keys):
    source = await source_store(300)
    full = await backup(source, tmp_path, keys, FULL, volume=4096)
    assert len(full.manifest.parts) >= 5
    for part in full.manifest.parts:
        # encrypted size = plaintext + 20 bytes per chunk (one chunk here) + the empty last chunk
        assert part.size <= 4096 + 40
    assert verify_archive(full.folder, keys[0]).records == 300


async def test_a_flipped_byte_in_a_part_names_that_part(tmp_path, keys):
    source = await source_store(300)
    full = await backup(source, tmp_path, keys, FULL, volume=4096)
    third = full.folder / part_name(3)
    data = bytearray(third.read_bytes())
    data[len(data) // 2] ^= 0x01
    third.write_bytes(bytes(data))
    with pytest.raises(ArchiveInvalid, match=r"^part 3 \(records-0003\.ndjson\.enc\): SHA-256 mismatch$") as caught:
        verify_archive(full.folder, keys[0])
    assert caught.value.details == {"part": 3, "name": "records-0003.ndjson.enc"}
    with pytest.raises(ArchiveInvalid, match=r"part 3 \(records-0003"):
        await restore_archives(MemoryStore(), [full.folder], keys[0])


async def test_a_flipped_byte_in_the_manifest_fails_the_signature(tmp_path, keys):
    source = await source_store(10)
    full = await backup(source, tmp_path, keys, FULL)
    manifest = full.folder / MANIFEST_NAME
    data = bytearray(manifest.read_bytes())
    at = data.index(b'"records": 10') + len(b'"records": ')
    data[at] = ord("9")
    manifest.write_bytes(bytes(data))
    with pytest.raises(SignatureInvalid):
        verify_archive(full.folder, keys[0])


async def test_another_nodes_key_is_refused_when_pinned(tmp_path, keys):
    full = await backup(await source_store(10), tmp_path, keys, FULL)
    with pytest.raises(SignatureInvalid):
        verify_archive(full.folder, keys[0], Ed25519PrivateKey.generate().public_key())


async def test_the_wrong_recipient_key_is_refused(tmp_path, keys):
    full = await backup(await source_store(10), tmp_path, keys, FULL)
    with pytest.raises(WrongRecipientKey, match="encrypted for recipient sha256:"):
        verify_archive(full.folder, X25519PrivateKey.generate())
    with pytest.raises(WrongRecipientKey):
        await restore_archives(MemoryStore(), [full.folder], X25519PrivateKey.generate())


async def test_restore_into_a_non_empty_node_is_refused(tmp_path, keys):
    full = await backup(await source_store(10), tmp_path, keys, FULL)
    target = MemoryStore()
    await fill(target, [1])
    with pytest.raises(RestoreRefused, match="not empty"):
        await restore_archives(target, [full.folder], keys[0])
    assert (await records_digest(target))[1] == 1


async def test_a_diff_without_its_full_or_with_a_gap_is_refused(tmp_path, keys):
    source = await source_store(10)
    full = await backup(source, tmp_path, keys, FULL)
    await fill(source, [20])
    diff1 = await backup(source, tmp_path, keys, DIFF, since=full.manifest.watermark_to)
    await fill(source, [21])
    diff2 = await backup(source, tmp_path, keys, DIFF, since=diff1.manifest.watermark_to)
    with pytest.raises(RestoreRefused, match="no FULL archive"):
        await restore_archives(MemoryStore(), [diff1.folder], keys[0])
    with pytest.raises(RestoreRefused, match=f"a gap in the chain: {full.folder.name} ends at watermark"):
        await restore_archives(MemoryStore(), [full.folder, diff2.folder], keys[0])
    target = MemoryStore()
    await restore_archives(target, [full.folder, diff1.folder, diff2.folder], keys[0])
    assert await records_digest(target) == await records_digest(source)


@pytest.mark.slow
async def test_full_and_diff_restore_of_100000_identifiers_gives_the_same_digest(tmp_path, keys):
    began = time.monotonic()
    async with SqliteStore(tmp_path / "source.sqlite3", synchronous="NORMAL") as source:
        await source.transact(lambda txn: txn.set_homed(PREFIX, True, None))
        await fill(source, range(100_000))
        full = await backup(source, tmp_path, keys, FULL, volume=4 * 1024 * 1024)
        await fill(source, range(5_000), version=1)
        await remove(source, range(5_000, 6_000))
        await fill(source, range(100_000, 102_000))
        diff = await backup(source, tmp_path, keys, DIFF, since=full.manifest.watermark_to)
        assert (diff.manifest.records, diff.manifest.deleted) == (7_000, 1_000)
        expected = await records_digest(source)
    assert expected[1] == 101_000
    assert len(full.manifest.parts) > 1
    async with SqliteStore(tmp_path / "restored.sqlite3", synchronous="NORMAL") as target:
        await restore_archives(target, [full.folder, diff.folder], keys[0], keys[1].public_key())
        assert await records_digest(target) == expected
    assert time.monotonic() - began < 60
