"""Authentication against HS_SECKEY values kept as salted slow hashes."""

import pytest

from idcore.errors import AuthenticationFailed
from idcore.handle import Handle
from idcore.rest_json import values_from_json
from idcore.values import ValueReference
from registry.secret_hash import hash_secret, is_hashed, verify_secret
from tests.conftest import SECRET

ADMIN = ValueReference("0.NA/88.118.2", 300)


def test_hash_is_salted_and_verifies():
    a, b = hash_secret(b"pw"), hash_secret(b"pw")
    assert a != b and is_hashed(a)
    assert verify_secret(b"pw", a) and not verify_secret(b"pW", a)
    assert not verify_secret(b"pw", b"plain text")
    assert not verify_secret(b"pw", b"$scrypt$n=1073741824,r=8,p=1$AA==$AA==")  # refuses absurd cost


async def test_admin_authenticates_with_index_or_any_key(registry):
    auth = registry.authenticator
    assert await auth.authenticate("300:0.NA/88.118.2", SECRET.encode()) == ADMIN
    assert await auth.authenticate("0.NA/88.118.2", SECRET.encode()) == ADMIN  # index 0: any HS_SECKEY
    assert await auth.authenticate("300:0.na/88.118.2", SECRET.encode()) == ValueReference("0.na/88.118.2", 300)


@pytest.mark.parametrize(
    ("identity", "secret", "fragment"),
    [
        ("300:0.NA/88.118.2", "wrong", "wrong secret"),
        ("301:0.NA/88.118.2", SECRET, "names no HS_SECKEY"),
        ("300:0.NA/88.404", SECRET, "not on this node"),
        ("300:nonsense", SECRET, "malformed"),
        ("300:0.NA/88.118.2", "x" * 2000, "longer than"),
    ],
)
async def test_bad_credentials_are_refused(registry, identity, secret, fragment):
    with pytest.raises(AuthenticationFailed, match=fragment):
        await registry.authenticator.authenticate(identity, secret.encode())


async def test_a_changed_secret_is_not_accepted_from_memory(registry):
    handle = Handle.from_text("88.118.2/bot")
    await registry.put(handle, values_from_json([{"index": 300, "type": "HS_SECKEY", "data": "one"}]), ADMIN)
    auth = registry.authenticator
    await auth.authenticate("300:88.118.2/bot", b"one")
    await registry.put(handle, values_from_json([{"index": 300, "type": "HS_SECKEY", "data": "two"}]), ADMIN)
    with pytest.raises(AuthenticationFailed):
        await auth.authenticate("300:88.118.2/bot", b"one")
    assert await auth.authenticate("300:88.118.2/bot", b"two") == ValueReference("88.118.2/bot", 300)


async def test_public_key_identities_are_refused_with_a_reason(registry):
    key = {"index": 300, "type": "HS_PUBKEY", "data": {"format": "key", "value": {"kty": "RSA", "n": "AQAB", "e": "AQAB"}}}
    await registry.put(Handle.from_text("88.118.2/device"), values_from_json([key]), ADMIN)
    with pytest.raises(AuthenticationFailed, match="public key"):
        await registry.authenticator.authenticate("300:88.118.2/device", b"anything")
