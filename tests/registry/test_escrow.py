"""Escrow at a parent: archives received, checked, listed per child, and
restored for takeover (issue 5, part 3), without HTTP."""

from __future__ import annotations

import os
import stat
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from idcore.errors import HandleNotFound, InvalidHandle
from idcore.handle import Handle
from registry.backup.archive import part_name
from registry.backup.create import create_backup
from registry.backup.manifest import DIFF, FULL
from registry.escrow import (
    BAD,
    OK,
    RECIPIENT_KEY_NAME,
    Escrow,
    EscrowConflict,
    KEEP_BAD_ARCHIVES,
    KEEP_FULL_BACKUPS,
    STATUS_NAME,
    EscrowUnavailable,
    check_archive_name,
)
from registry.memory_store import MemoryStore
from resolver.escrow_client import tar_archive
from tests.registry.test_backup import PREFIX, fill, remove

NODE_KEY = Ed25519PrivateKey.generate()


async def child_store(n: int, prefix: str = PREFIX) -> MemoryStore:
    store = MemoryStore()
    await store.transact(lambda txn: txn.set_homed(prefix, True, None))
    await fill(store, range(n))
    return store


async def make_archive(store, tmp_path, escrow, kind, since=None, recipient=None):
    recipient = recipient or escrow.recipient_key().public_key()
    return await create_backup(
        store, kind=kind, out_dir=tmp_path / "outbox", recipient=recipient, node_key=NODE_KEY, since=since
    )


def upload(escrow: Escrow, child: str, folder, *, tamper=None):
    """Send ``folder`` as the API would: tar into the reserved path, receive."""
    path = escrow.begin(child, folder.name)
    if tamper:
        tamper(folder)
    tar_archive(folder, path)
    return escrow.receive(child, folder.name, path.stat().st_size)


@pytest.fixture
def escrow(tmp_path):
    return Escrow(tmp_path / "parent")


async def test_recipient_key_is_created_once_and_private(escrow):
    key = escrow.recipient_key()
    path = escrow.data_dir / RECIPIENT_KEY_NAME
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert Escrow(escrow.data_dir).recipient_key().public_key().public_bytes_raw() == key.public_key().public_bytes_raw()


async def test_full_and_diff_are_listed_with_watermark_and_status(escrow, tmp_path):
    store = await child_store(30)
    full = await make_archive(store, tmp_path, escrow, FULL)
    entry, new = upload(escrow, PREFIX, full.folder)
    assert new and entry.status == OK and entry.kind == FULL
    await fill(store, range(25, 40), version=1)
    await remove(store, [0, 1])
    diff = await make_archive(store, tmp_path, escrow, DIFF, since=full.manifest.watermark_to)
    upload(escrow, PREFIX, diff.folder)

    listed = escrow.entries(PREFIX)
    assert [(e.kind, e.watermark_from, e.watermark_to, e.status) for e in listed] == [
        (FULL, 0, full.manifest.watermark_to, OK),
        (DIFF, full.manifest.watermark_to, diff.manifest.watermark_to, OK),
    ]
    assert (listed[0].records, listed[1].records, listed[1].deleted) == (30, 15, 2)
    assert listed[0].to_json()["kind"] == "FULL" and listed[0].to_json()["watermark"]["from"] == 0
    assert escrow.children() == [PREFIX]


async def test_the_same_archive_again_is_accepted_once(escrow, tmp_path):
    full = await make_archive(await child_store(3), tmp_path, escrow, FULL)
    upload(escrow, PREFIX, full.folder)
    entry, new = upload(escrow, PREFIX, full.folder)
    assert not new and entry.status == OK
    assert len(escrow.entries(PREFIX)) == 1


async def test_a_tampered_part_is_recorded_bad_naming_the_part(escrow, tmp_path):
    full = await make_archive(await child_store(50), tmp_path, escrow, FULL)

    def flip(folder):
        part = folder / part_name(1)
        data = bytearray(part.read_bytes())
        data[len(data) // 2] ^= 0x01
        part.write_bytes(bytes(data))

    entry, _ = upload(escrow, PREFIX, full.folder, tamper=flip)
    assert entry.status == BAD and part_name(1) in entry.reason
    assert escrow.entries(PREFIX)[0].status == BAD
    with pytest.raises(EscrowUnavailable):
        escrow.restore_chain(PREFIX)


async def test_an_archive_for_another_key_is_bad(escrow, tmp_path):
    other = X25519PrivateKey.generate().public_key()
    full = await make_archive(await child_store(2), tmp_path, escrow, FULL, recipient=other)
    entry, _ = upload(escrow, PREFIX, full.folder)
    assert entry.status == BAD and "recipient" in entry.reason


async def test_an_archive_claiming_another_prefix_is_bad(escrow, tmp_path):
    full = await make_archive(await child_store(2, prefix="88.999"), tmp_path, escrow, FULL)
    entry, _ = upload(escrow, PREFIX, full.folder)
    assert entry.status == BAD and "88.999" in entry.reason


async def test_a_tar_with_a_path_is_refused_unpacked(escrow, tmp_path):
    import tarfile

    path = escrow.begin(PREFIX, "evil")
    (tmp_path / "x").write_bytes(b"x")
    with tarfile.open(path, "w") as tar:
        tar.add(tmp_path / "x", arcname="../x")
    entry, _ = escrow.receive(PREFIX, "evil", path.stat().st_size)
    assert entry.status == BAD and "../x" in entry.reason
    assert not (escrow.folder / "x").exists()


async def test_names_and_concurrent_uploads(escrow):
    for bad in ("../x", ".hidden", "a/b", "x.partial", ""):
        with pytest.raises(InvalidHandle):
            check_archive_name(bad)
    escrow.begin(PREFIX, "one")
    with pytest.raises(EscrowConflict):
        escrow.begin(PREFIX, "one")
    escrow.abandon(PREFIX, "one")
    escrow.begin(PREFIX, "one")


async def test_retention_keeps_the_newest_fulls_and_the_diffs_that_follow_them(escrow, tmp_path):
    store = await child_store(3)
    archives, fulls = [], []
    for round in range(KEEP_FULL_BACKUPS + 2):
        full = await make_archive(store, tmp_path, escrow, FULL)
        await fill(store, [100 + round])
        diff = await make_archive(store, tmp_path, escrow, DIFF, since=full.manifest.watermark_to)
        await fill(store, [200 + round])
        for backup in (full, diff):
            upload(escrow, PREFIX, backup.folder)
        archives.append((full.folder.name, diff.folder.name))
        fulls.append(full)

    listed = {e.archive for e in escrow.entries(PREFIX)}
    kept_rounds = archives[-KEEP_FULL_BACKUPS:]
    assert listed == {name for pair in kept_rounds for name in pair}
    for full_name, diff_name in archives[:-KEEP_FULL_BACKUPS]:
        assert not (escrow.child_folder(PREFIX) / full_name).exists()
        assert not (escrow.child_folder(PREFIX) / diff_name).exists()
    # the newest chain is whole: the last FULL and its DIFF
    assert [p.name for p in escrow.restore_chain(PREFIX)] == list(archives[-1])


@pytest.fixture
def ticking_clock(monkeypatch):
    """time.gmtime a second later at every call: archive names, creation and
    receipt times in order, as they are in life, though the test is fast."""
    seconds = iter(range(1_750_000_000, 1_760_000_000))
    real = time.gmtime
    monkeypatch.setattr(time, "gmtime", lambda *_: real(next(seconds)))


async def test_retention_keeps_only_the_newest_bad_archives(escrow, tmp_path, ticking_clock):
    store = await child_store(2)
    other = X25519PrivateKey.generate().public_key()
    bad_names = []
    for n in range(KEEP_BAD_ARCHIVES + 3):
        await fill(store, [300 + n])
        bad = await make_archive(store, tmp_path, escrow, FULL, recipient=other)
        entry, _ = upload(escrow, PREFIX, bad.folder)
        assert entry.status == BAD
        bad_names.append(bad.folder.name)
    good = await make_archive(store, tmp_path, escrow, FULL)
    upload(escrow, PREFIX, good.folder)
    kept = {e.archive for e in escrow.entries(PREFIX) if e.status == BAD}
    assert kept == set(bad_names[-KEEP_BAD_ARCHIVES:])
    assert [e.archive for e in escrow.entries(PREFIX) if e.status == OK] == [good.folder.name]


async def test_a_child_rebuilt_from_scratch_is_kept_and_restored_though_its_watermark_is_lower(
    escrow, tmp_path, ticking_clock
):
    old = await child_store(40)
    for n in range(KEEP_FULL_BACKUPS):
        await fill(old, [500 + n])
        upload(escrow, PREFIX, (await make_archive(old, tmp_path, escrow, FULL)).folder)
    rebuilt = await child_store(3)  # a new journal: its watermark is far below the old ones
    fresh = await make_archive(rebuilt, tmp_path, escrow, FULL)
    assert fresh.manifest.watermark_to < 40
    entry, new = upload(escrow, PREFIX, fresh.folder)
    assert new and entry.status == OK
    listed = [e.archive for e in escrow.entries(PREFIX)]
    assert fresh.folder.name in listed and len(listed) == KEEP_FULL_BACKUPS
    assert escrow.restore_chain(PREFIX) == [escrow.child_folder(PREFIX) / fresh.folder.name]


async def test_what_a_crash_left_is_removed_when_the_escrow_opens(escrow, tmp_path):
    full = await make_archive(await child_store(3), tmp_path, escrow, FULL)
    upload(escrow, PREFIX, full.folder)
    folder = escrow.child_folder(PREFIX)
    (folder / "next.upload").write_bytes(b"half a tar")
    (folder / "next.partial").mkdir()
    (folder / "next.partial" / "manifest.json").write_bytes(b"{}")
    half_deleted = folder / "old"
    half_deleted.mkdir()
    (half_deleted / part_name(1)).write_bytes(b"x")

    reopened = Escrow(escrow.data_dir)
    assert sorted(p.name for p in folder.iterdir()) == [full.folder.name]
    assert (folder / full.folder.name / STATUS_NAME).exists()
    assert [e.archive for e in reopened.entries(PREFIX)] == [full.folder.name]


async def test_takeover_answers_from_full_and_diffs(escrow, tmp_path):
    store = await child_store(10)
    full = await make_archive(store, tmp_path, escrow, FULL)
    upload(escrow, PREFIX, full.folder)
    await fill(store, range(10, 12))
    await remove(store, [3])
    diff = await make_archive(store, tmp_path, escrow, DIFF, since=full.manifest.watermark_to)
    upload(escrow, PREFIX, diff.folder)

    applied = await escrow.set_takeover(PREFIX, True)
    assert [m.kind for m in applied] == [FULL, DIFF]
    handle = Handle.from_text(f"{PREFIX}/PRD-00000011")
    child = escrow.taken_over(handle)
    assert child == PREFIX
    assert (await escrow.resolve(handle, child)).response_code == 1
    with pytest.raises(HandleNotFound):
        await escrow.resolve(Handle.from_text(f"{PREFIX}/PRD-00000003"), child)
    assert escrow.taken_over(Handle.from_text("88.118/X")) is None

    again = Escrow(escrow.data_dir)  # takeover survives a restart, restored on first use
    assert again.takeover == (PREFIX,)
    assert (await again.resolve(handle, PREFIX)).response_code == 1
    await again.close()

    await escrow.set_takeover(PREFIX, False)
    assert escrow.taken_over(handle) is None and not escrow.active
    await escrow.close()


async def test_takeover_without_an_intact_full_is_refused(escrow):
    with pytest.raises(EscrowUnavailable):
        await escrow.set_takeover(PREFIX, True)
    assert not escrow.active
