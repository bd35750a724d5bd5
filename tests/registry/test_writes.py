"""Write operations and Handle-style authorisation, over the memory store."""

from __future__ import annotations

import pytest

import orjson

from idcore.errors import (
    AuthenticationFailed,
    AuthenticationNeeded,
    HandleAlreadyExists,
    HandleNotFound,
    InsufficientPermissions,
    InvalidAdmin,
    InvalidValue,
    ServerNotResponsible,
    ValueAlreadyExists,
    ValuesNotFound,
)
from idcore.handle import Handle
from idcore.rest_json import values_from_json
from idcore.values import HandleValue, ValueReference
from registry.batch import parse_line
from tests.conftest import home

ADMIN = ValueReference("0.NA/88.118.2", 300)
STRANGER = ValueReference("0.NA/88.999", 300)


def vals(*items):
    return values_from_json([{"index": i, "type": t, "data": d} for i, t, d in items])


def h(text):
    return Handle.from_text(text)


async def record(registry, text):
    stored = await registry.store.get(h(text).key)
    return None if stored is None else {v.index: v for v in stored.values()}


async def journal_length(registry):
    return len(await registry.store.journal(limit=10_000))


async def test_create_stamps_values_and_adds_an_admin(registry):
    result = await registry.put(h("88.118.2/P-1"), vals((1, "URL", "https://e/1")), ADMIN)
    assert result.status == "created"
    values = await record(registry, "88.118.2/P-1")
    assert values[1].timestamp > 0
    assert values[100].data.to_json() == {"handle": "0.NA/88.118.2", "index": 300, "permissions": "011111110011"}


async def test_replace_keeps_timestamps_of_unchanged_values(registry):
    await registry.put(h("88.118.2/P-1"), vals((1, "URL", "https://e/1"), (2, "EMAIL", "a@b")), ADMIN)
    before = await record(registry, "88.118.2/P-1")
    old_admin = {"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": {"handle": "0.NA/88.118.2", "index": 300, "permissions": "001111110011"}}}
    new = values_from_json([{"index": 1, "type": "URL", "data": "https://e/1"}, {"index": 3, "type": "NAME", "data": "x"}, old_admin])
    result = await registry.put(h("88.118.2/P-1"), new, ADMIN)
    after = await record(registry, "88.118.2/P-1")
    assert result.status == "replaced"
    assert sorted(after) == [1, 3, 100]
    assert after[1].timestamp == before[1].timestamp


async def test_create_only_refuses_an_existing_handle(registry):
    await registry.put(h("88.118.2/P-1"), vals((1, "URL", "u")), ADMIN)
    with pytest.raises(HandleAlreadyExists):
        await registry.put(h("88.118.2/P-1"), vals((1, "URL", "u")), ADMIN, overwrite=False)


async def test_anonymous_and_foreign_writes_are_refused_and_change_nothing(registry, admin_secret_hash):
    await home(registry, admin_secret_hash, "88.999")
    count = await journal_length(registry)
    with pytest.raises(AuthenticationNeeded):
        await registry.put(h("88.118.2/P-1"), vals((1, "URL", "u")), None)
    with pytest.raises(InvalidAdmin, match="not an administrator"):
        await registry.put(h("88.118.2/P-1"), vals((1, "URL", "u")), STRANGER)
    with pytest.raises(ServerNotResponsible):
        await registry.put(h("88.7/P-1"), vals((1, "URL", "u")), ADMIN)
    assert await registry.store.get(h("88.118.2/P-1").key) is None
    assert await journal_length(registry) == count


async def test_handle_admins_and_prefix_admins_both_authorise(registry, admin_secret_hash):
    await home(registry, admin_secret_hash, "88.999")
    granted = {"index": 101, "type": "HS_ADMIN", "data": {"format": "admin", "value": {"handle": "0.NA/88.999", "index": 300, "permissions": "000001110000"}}}
    values = values_from_json([{"index": 1, "type": "URL", "data": "u"}, granted])
    await registry.put(h("88.118.2/P-1"), values, ADMIN)
    # the stranger may now add/modify/remove values, but not delete the handle
    await registry.add_values(h("88.118.2/P-1"), vals((2, "EMAIL", "a@b")), STRANGER)
    with pytest.raises(InsufficientPermissions):
        await registry.delete(h("88.118.2/P-1"), STRANGER)
    # the prefix admin (HS_ADMIN of 0.NA/88.118.2) may, though not named on the handle
    await registry.delete(h("88.118.2/P-1"), ADMIN)
    assert await registry.store.get(h("88.118.2/P-1").key) is None


async def test_group_admins_through_an_hs_vlist(registry, admin_secret_hash):
    await home(registry, admin_secret_hash, "88.999")
    group = values_from_json([
        {"index": 200, "type": "HS_VLIST", "data": {"format": "vlist", "value": [{"handle": "0.NA/88.999", "index": 300}]}},
    ])
    await registry.put(h("88.118.2/ops-group"), group, ADMIN)
    admin_by_group = {"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": {"handle": "88.118.2/ops-group", "index": 200, "permissions": "011111110011"}}}
    await registry.put(h("88.118.2/P-2"), values_from_json([{"index": 1, "type": "URL", "data": "u"}, admin_by_group]), ADMIN)
    await registry.add_values(h("88.118.2/P-2"), vals((5, "NOTE", "by group")), STRANGER)
    assert 5 in await record(registry, "88.118.2/P-2")


async def test_read_only_values_cannot_change(registry):
    frozen = values_from_json([{"index": 1, "type": "URL", "data": "u", "permissions": "1010"}])
    await registry.put(h("88.118.2/P-1"), frozen, ADMIN)
    with pytest.raises(InsufficientPermissions, match="read-only"):
        await registry.put(h("88.118.2/P-1"), vals((1, "URL", "changed")), ADMIN)


async def test_add_values_and_index_conflicts(registry):
    await registry.put(h("88.118.2/P-1"), vals((1, "URL", "u"), (2, "A", "a")), ADMIN)
    with pytest.raises(ValueAlreadyExists, match="Index conflict for 2"):
        await registry.add_values(h("88.118.2/P-1"), vals((2, "A", "b")), ADMIN, overwrite=False)
    result = await registry.add_values(h("88.118.2/P-1"), vals((2, "A", "b"), (3, "B", "c")), ADMIN)
    assert result.status == "replaced"
    values = await record(registry, "88.118.2/P-1")
    assert values[2].data == b"b" and values[3].data == b"c"
    with pytest.raises(HandleNotFound):
        await registry.add_values(h("88.118.2/none"), vals((2, "A", "b")), ADMIN)


async def test_remove_values(registry):
    await registry.put(h("88.118.2/P-1"), vals((1, "URL", "u"), (2, "A", "a")), ADMIN)
    with pytest.raises(ValuesNotFound, match="no value at index 9"):
        await registry.remove_values(h("88.118.2/P-1"), [2, 9], ADMIN)
    assert 2 in await record(registry, "88.118.2/P-1")
    await registry.remove_values(h("88.118.2/P-1"), [2], ADMIN)
    assert 2 not in await record(registry, "88.118.2/P-1")


async def test_mint_makes_unique_lower_case_uuid_suffixes(registry):
    first = await registry.mint("88.118.2", vals((1, "URL", "u")), ADMIN)
    second = await registry.mint("88.118.2/PRD-", vals((1, "URL", "u")), ADMIN)
    assert first.handle.startswith("88.118.2/") and len(first.handle.split("/", 1)[1]) == 36
    assert second.handle.startswith("88.118.2/PRD-")
    assert first.handle != second.handle and first.handle.lower() == first.handle


async def test_secrets_are_stored_hashed_and_private(registry):
    await registry.put(h("88.118.2/bot"), vals((300, "HS_SECKEY", "bot-secret")), ADMIN)
    stored = (await record(registry, "88.118.2/bot"))[300]
    assert stored.data.startswith(b"$scrypt$") and b"bot-secret" not in stored.data
    assert stored.permissions == "1100"
    identity = await registry.authenticator.authenticate("300:88.118.2/bot", b"bot-secret")
    assert identity == ValueReference("88.118.2/bot", 300)
    # writing the same secret again keeps the stored hash (no change)
    await registry.put(h("88.118.2/bot"), vals((300, "HS_SECKEY", "bot-secret")), ADMIN)
    assert (await record(registry, "88.118.2/bot"))[300].data == stored.data


async def test_delegation_records_and_referrals(registry):
    site = {"index": 1, "type": "HS_SITE", "data": {"format": "site", "value": {"servers": [
        {"serverId": 1, "address": "127.0.0.1", "interfaces": [{"protocol": "HTTP", "port": 9001}]}]}}}
    await registry.put(h("0.NA/88.118.2.5"), values_from_json([site]), ADMIN)
    resolution = await registry.resolve(h("88.118.2.5/P-1"))
    assert resolution.response_code == 303
    assert b'"port":9001' in resolution.values_json
    deeper = await registry.resolve(h("88.118.2.5.7/P-1"))
    assert deeper.response_code == 303
    own = await registry.resolve(h("0.NA/88.118.2.5"))
    assert own.response_code == 1
    with pytest.raises(HandleNotFound):
        await registry.resolve(h("0.NA/88.118.2.6"))
    with pytest.raises(ServerNotResponsible):
        await registry.resolve(h("88.118.2.6/P-1"))
    with pytest.raises(ServerNotResponsible):
        await registry.resolve(h("86.1/P-1"))
    # delegating needs ADD_DERIVED_PREFIX on the parent prefix
    with pytest.raises((InvalidAdmin, AuthenticationNeeded)):
        await registry.put(h("0.NA/88.118.2.8"), values_from_json([site]), None)


async def test_private_values_need_read_permission(registry):
    values = values_from_json([{"index": 1, "type": "URL", "data": "u"}, {"index": 7, "type": "COST", "data": "12.5", "permissions": "1100"}])
    await registry.put(h("88.118.2/P-1"), values, ADMIN)
    public = await registry.resolve(h("88.118.2/P-1"))
    assert b"COST" not in public.values_json
    private = await registry.resolve(h("88.118.2/P-1"), identity=ADMIN)
    assert b"COST" in private.values_json
    stranger = await registry.resolve(h("88.118.2/P-1"), identity=STRANGER)
    assert b"COST" not in stranger.values_json


async def test_listing_needs_list_permission(registry):
    await registry.check_list_permission("88.118.2", ADMIN)
    with pytest.raises(AuthenticationNeeded):
        await registry.check_list_permission("88.118.2", None)
    with pytest.raises(ServerNotResponsible):
        await registry.check_list_permission("88.7", ADMIN)


async def test_handle_values_are_immutable():
    value = HandleValue(1, "URL", b"u")
    with pytest.raises(AttributeError):
        value.index = 2  # type: ignore[misc]
    assert value.replace(index=2).index == 2


async def test_cyclic_and_wide_groups_cost_bounded_work(registry, admin_secret_hash):
    await home(registry, admin_secret_hash, "88.999")
    # a group that lists itself many times, and is its own admin
    members = [{"handle": "88.118.2/g", "index": 1}] * 1000
    group = values_from_json([
        {"index": 1, "type": "HS_VLIST", "data": {"format": "vlist", "value": members}},
        {"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": {"handle": "88.118.2/g", "index": 1, "permissions": "011111110011"}}},
    ])
    await registry.put(h("88.118.2/g"), group, ADMIN)
    import time

    started = time.perf_counter()
    with pytest.raises(InvalidAdmin):
        await registry.add_values(h("88.118.2/g"), vals((5, "NOTE", "x")), STRANGER)
    assert time.perf_counter() - started < 5  # generous: the bound is visits, not seconds
    too_many = [{"handle": "0.NA/88.999", "index": 300}] * 1001
    with pytest.raises(InvalidValue, match="the limit is 1000"):
        values_from_json([{"index": 1, "type": "HS_VLIST", "data": {"format": "vlist", "value": too_many}}])


async def test_a_client_cannot_plant_a_hash_of_its_own(registry):
    from registry.secret_hash import hash_secret

    planted = hash_secret(b"attacker-knows-this").decode()
    await registry.put(h("88.118.2/bot"), vals((300, "HS_SECKEY", planted)), ADMIN)
    stored = (await record(registry, "88.118.2/bot"))[300].data
    assert stored != planted.encode()  # the text was hashed as a secret
    with pytest.raises(AuthenticationFailed):
        await registry.authenticator.authenticate("300:88.118.2/bot", b"attacker-knows-this")


async def test_only_admins_learn_whether_values_match(registry, admin_secret_hash):
    await home(registry, admin_secret_hash, "88.999")
    await registry.put(h("88.118.2/P-1"), vals((1, "URL", "u")), ADMIN)
    for guess in ("u", "not u"):
        items = [parse_line(1, orjson.dumps({"handle": "88.118.2/P-1", "values": [{"index": 1, "type": "URL", "data": guess}]}))]
        result = (await registry.apply_batch(items, STRANGER))[0]
        assert result["responseCode"] == 400  # the same answer, match or not
    with pytest.raises(InvalidAdmin):
        await registry.remove_values(h("88.118.2/P-1"), [77], STRANGER)  # not "no value at index 77"


async def test_changing_keys_and_groups_needs_admin_permissions(registry, admin_secret_hash):
    await home(registry, admin_secret_hash, "88.999")
    editor = {"index": 101, "type": "HS_ADMIN", "data": {"format": "admin", "value": {"handle": "0.NA/88.999", "index": 300, "permissions": "000001110000"}}}
    await registry.put(h("88.118.2/bot"), values_from_json([{"index": 1, "type": "URL", "data": "u"}, editor]), ADMIN)
    await registry.add_values(h("88.118.2/bot"), vals((2, "NOTE", "value rights suffice")), STRANGER)
    with pytest.raises(InsufficientPermissions):
        await registry.add_values(h("88.118.2/bot"), vals((300, "HS_SECKEY", "mine now")), STRANGER)


async def test_records_are_bounded_in_size(registry):
    big = "x" * 60_000
    await registry.put(h("88.118.2/big"), vals(*((i, "BLOB", big) for i in range(1, 15))), ADMIN)
    with pytest.raises(InvalidValue, match="MAX_RECORD_BYTES|per record"):
        await registry.add_values(h("88.118.2/big"), vals(*((i, "BLOB", big) for i in range(15, 30))), ADMIN)


async def test_no_prefix_record_below_a_delegated_prefix(registry):
    site = {"index": 1, "type": "HS_SITE", "data": {"format": "site", "value": {"servers": [
        {"serverId": 1, "address": "127.0.0.1", "interfaces": [{"protocol": "HTTP", "port": 9001}]}]}}}
    await registry.put(h("0.NA/88.118.2.5"), values_from_json([site]), ADMIN)
    with pytest.raises(ServerNotResponsible, match="delegated to another node"):
        await registry.put(h("0.NA/88.118.2.5.1"), values_from_json([site]), ADMIN)
