"""Prefix administration at a parent node: applications, every transition
and refused transition, and what each does to the delegation record."""

from __future__ import annotations

import pytest

from idcore.errors import (
    AuthenticationNeeded,
    InsufficientPermissions,
    InvalidAdmin,
    InvalidValue,
    PrefixDisabled,
    ServerNotResponsible,
)
from idcore.handle import Handle, prefix_handle
from idcore.values import HandleValue, ValueReference, ValueType
from registry import prefix_admin
from registry.applicant import Application
from registry.node_setup import site_for
from registry.prefix_admin import (
    ACTIONS,
    STATES,
    InvalidTransition,
    PrefixAdmin,
    TooManyPending,
)
from registry.prefix_admin_store import MemoryApplications, SqliteApplications
from registry.secret_hash import hash_secret
from tests.conftest import ADMIN
from tests.registry.test_applicant import application_json

REVIEWER = ValueReference.from_text(ADMIN)
STRANGER = ValueReference("0.NA/88.999", 300)
CHILD = "88.118.2.7"
CHILD_SECRET = b"child-secret"

#: The actions that lead from pending_review to each state.
PATHS = {
    "pending_review": [],
    "approved": ["approve"],
    "rejected": ["reject"],
    "disabled": ["approve", "disable"],
    "enabled": ["approve", "disable", "enable"],
    "pending_deletion": ["approve", "request-deletion"],
    "deleted": ["approve", "request-deletion", "delete"],
}


@pytest.fixture(scope="module")
def child_secret_hash():
    return hash_secret(CHILD_SECRET)


@pytest.fixture(params=["memory", "sqlite"])
async def admin(request, registry, tmp_path):
    if request.param == "memory":
        yield PrefixAdmin(registry, MemoryApplications())
    else:
        async with SqliteApplications(tmp_path / "prefix_admin.sqlite3") as store:
            yield PrefixAdmin(registry, store)


def application(prefix=CHILD, **changes):
    return Application.from_json(application_json(prefix=prefix, **changes))


async def delegation(registry):
    record = await registry.store.get(prefix_handle(CHILD).key)
    return None if record is None else {v.index: v for v in record.values()}


async def drive(admin, state, secret_hash=None):
    row = await admin.apply(application(), secret_hash)
    for action in PATHS[state]:
        row = await admin.act(row.id, action, REVIEWER, reason=f"because {action}")
    assert row.state == state
    return row


def test_every_state_is_reachable_and_paths_follow_actions():
    assert set(PATHS) == set(STATES)
    for target, path in PATHS.items():
        state = "pending_review"
        for action in path:
            sources, state_after = ACTIONS[action]
            assert state in sources
            state = state_after
        assert state == target


async def test_apply_is_pending_review_with_history(admin):
    row = await admin.apply(application())
    assert (row.state, row.parent_prefix, row.prefix) == ("pending_review", "88.118.2", CHILD)
    [entry] = await admin.history(row.id)
    assert (entry.action, entry.from_state, entry.to_state, entry.actor) == ("apply", None, "pending_review", None)


async def test_apply_refusals(admin):
    await admin.apply(application())
    with pytest.raises(InvalidTransition, match="already has application"):
        await admin.apply(application())
    with pytest.raises(ServerNotResponsible, match="apply at its parent"):
        await admin.apply(application(prefix="77.1"))
    with pytest.raises(InvalidValue, match="homed at this node"):
        await admin.apply(application(prefix="88.118.2"))


async def test_pending_applications_are_capped(admin, monkeypatch):
    monkeypatch.setattr(prefix_admin, "MAX_PENDING_APPLICATIONS", 2)
    await admin.apply(application(prefix="88.118.2.1"))
    await admin.apply(application(prefix="88.118.2.2"))
    with pytest.raises(TooManyPending, match="2 applications"):
        await admin.apply(application(prefix="88.118.2.3"))


async def test_only_reviewers_may_see_or_act(admin):
    row = await admin.apply(application())
    with pytest.raises(AuthenticationNeeded):
        await admin.act(row.id, "approve", None)
    with pytest.raises(InvalidAdmin):
        await admin.act(row.id, "approve", STRANGER)
    with pytest.raises(InvalidAdmin):
        await admin.list(STRANGER)
    assert [r.id for r in await admin.list(REVIEWER)] == [row.id]
    assert await admin.list(REVIEWER, "approved") == []
    assert (await admin.get(row.id, REVIEWER)).state == "pending_review"


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("action", list(ACTIONS))
async def test_every_transition_and_refusal(admin, state, action):
    row = await drive(admin, state)
    sources, target = ACTIONS[action]
    if state in sources:
        moved = await admin.act(row.id, action, REVIEWER, reason="ok")
        assert moved.state == target
        last = (await admin.history(row.id))[-1]
        assert (last.action, last.from_state, last.to_state, last.actor, last.reason) == (
            action, state, target, ADMIN, "ok"
        )
        assert last.at > 0
    else:
        with pytest.raises(InvalidTransition) as caught:
            await admin.act(row.id, action, REVIEWER)
        assert state in caught.value.message and "Allowed next" in caught.value.message
        assert caught.value.status == 409
        assert caught.value.details["allowed"] == prefix_admin.allowed_actions(state)
        assert (await admin.get(row.id, REVIEWER)).state == state


async def test_unknown_action_is_refused(admin):
    row = await admin.apply(application())
    with pytest.raises(InvalidValue, match="not one of"):
        await admin.act(row.id, "promote", REVIEWER)


async def test_delegation_follows_the_lifecycle(admin, registry, child_secret_hash):
    handle = Handle.from_text(f"{CHILD}/PRD-1")
    row = await admin.apply(application(), child_secret_hash)
    with pytest.raises(ServerNotResponsible):
        await registry.resolve(handle)
    assert await delegation(registry) is None

    await admin.act(row.id, "approve", REVIEWER)
    values = await delegation(registry)
    assert values[1].type == "HS_SITE" and values[1].data.servers[0].interfaces[0].port == 8123
    assert values[100].data.handle == "0.NA/88.118.2"  # the parent's admin
    assert values[200].data.handle == f"0.NA/{CHILD}" and values[200].data.index == 300
    assert values[300].type == "HS_SECKEY" and values[300].data == child_secret_hash
    referral = await registry.resolve(handle)
    assert (referral.response_code, referral.referral) == (303, f"0.NA/{CHILD}")

    await admin.act(row.id, "disable", REVIEWER)
    with pytest.raises(PrefixDisabled, match=f"prefix {CHILD} is disabled") as caught:
        await registry.resolve(handle)
    assert (caught.value.response_code, caught.value.status) == (2, 403)

    await admin.act(row.id, "enable", REVIEWER)
    assert (await registry.resolve(handle)).response_code == 303
    assert not any(v.type == "HS_PREFIX_STATUS" for v in (await delegation(registry)).values())

    await admin.act(row.id, "request-deletion", REVIEWER)
    assert (await registry.resolve(handle)).response_code == 303  # still referred until deleted
    await admin.act(row.id, "delete", REVIEWER)
    assert await delegation(registry) is None
    with pytest.raises(ServerNotResponsible):
        await registry.resolve(handle)
    await admin.apply(application())  # the prefix may be applied for again


async def test_child_changes_its_site_but_not_the_disable_mark(admin, registry, child_secret_hash):
    row = await drive(admin, "disabled", child_secret_hash)
    child = await registry.authenticator.authenticate(f"300:0.NA/{CHILD}", CHILD_SECRET)
    record = prefix_handle(CHILD)
    new_site = HandleValue(1, ValueType.HS_SITE, site_for("127.0.0.2", 9000))
    await registry.add_values(record, [new_site], child)
    assert (await delegation(registry))[1].data.servers[0].address == "127.0.0.2"
    mark = next(v.index for v in (await delegation(registry)).values() if v.type == "HS_PREFIX_STATUS")
    with pytest.raises(InsufficientPermissions, match="read-only"):
        await registry.remove_values(record, [mark], child)
    with pytest.raises(InsufficientPermissions):  # nor take over the record's admins
        await registry.remove_values(record, [100], child)
    await admin.act(row.id, "enable", REVIEWER)
    referral = await registry.resolve(Handle.from_text(f"{CHILD}/X"))
    assert b"127.0.0.2" in referral.values_json


async def test_history_survives_reopening(registry, tmp_path):
    path = tmp_path / "prefix_admin.sqlite3"
    async with SqliteApplications(path) as store:
        row = await drive(PrefixAdmin(registry, store), "disabled")
    async with SqliteApplications(path) as store:
        admin = PrefixAdmin(registry, store)
        assert (await admin.get(row.id, REVIEWER)).state == "disabled"
        assert [h.action for h in await admin.history(row.id)] == ["apply", "approve", "disable"]
        assert [h.reason for h in await admin.history(row.id)][1:] == ["because approve", "because disable"]
