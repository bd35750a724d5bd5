"""Authentication: proving an ``index:handle`` identity with its secret key.

The identity names an HS_SECKEY value (index 0: any HS_SECKEY of the
handle). The node keeps only a salted slow hash of each secret
(:mod:`registry.secret_hash`), so checking one costs tens of milliseconds;
it runs off the event loop, and a successful check is remembered, keyed by
a digest of the secret and tied to the stored hash it matched, so repeated
requests of one client cost a dictionary lookup and a changed or removed
secret is never accepted from memory.

HS_PUBKEY identities are recognised but need the public-key
challenge-response, which this node does not offer yet; they are refused
with a message saying so.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict

from idcore import limits
from idcore.errors import AuthenticationFailed, IdnodeError
from idcore.handle import Handle
from idcore.values import ValueReference, ValueType, type_is
from registry.secret_hash import run_hashing, verify_secret
from registry.store import Store

#: Verified (identity, secret) pairs remembered; oldest forgotten first.
MAX_REMEMBERED_LOGINS = 10_000

#: HS_SECKEY values tried for one login naming no index (each try is a
#: slow hash, so a handle with many keys must not multiply the cost).
MAX_KEYS_TRIED = 4


class Authenticator:
    """Checks HTTP Basic style credentials against HS_SECKEY values in a store."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._pepper = os.urandom(16)
        self._remembered: OrderedDict[tuple[str, int, bytes], bytes] = OrderedDict()

    async def authenticate(self, identity_text: str, secret: bytes) -> ValueReference:
        """The identity proven by ``secret``, with the index of the key it matched.

        Raises:
            AuthenticationFailed: malformed identity, unknown handle, no such
                key, or a wrong secret; the message says which, without
                revealing anything about the secret.
        """
        if len(secret) > limits.MAX_SECRET_BYTES:
            raise AuthenticationFailed(f"secret is longer than {limits.MAX_SECRET_BYTES} bytes")
        try:
            wanted = ValueReference.from_text(identity_text)
            handle = Handle.from_text(wanted.handle)
        except IdnodeError as exc:
            raise AuthenticationFailed(f"identity {identity_text!r} is malformed: {exc.message}") from None
        record = await self._store.get(handle.key)
        if record is None:
            raise AuthenticationFailed(f"identity handle {handle} is not on this node")
        values = [v for v in record.values() if wanted.index in (0, v.index)]
        keys = [v for v in values if type_is(v.type, ValueType.HS_SECKEY)][:MAX_KEYS_TRIED]
        if not keys:
            if any(type_is(v.type, ValueType.HS_PUBKEY) for v in values):
                raise AuthenticationFailed(
                    f"{identity_text} is a public key; this node accepts only HS_SECKEY identities"
                    " over HTTP Basic for now"
                )
            raise AuthenticationFailed(f"{identity_text} names no HS_SECKEY value")
        digest = hashlib.sha256(self._pepper + secret).digest()
        for key in keys:
            stored = key.data
            assert isinstance(stored, bytes)
            memo = (handle.key, key.index, digest)
            if self._remembered.get(memo) == stored:
                self._remembered.move_to_end(memo)
                return ValueReference(handle.to_text(), key.index)
            if await run_hashing(verify_secret, secret, stored):
                self._remember(memo, stored)
                return ValueReference(handle.to_text(), key.index)
        raise AuthenticationFailed(f"wrong secret for {identity_text}")

    def _remember(self, memo: tuple[str, int, bytes], stored: bytes) -> None:
        self._remembered[memo] = stored
        while len(self._remembered) > MAX_REMEMBERED_LOGINS:
            self._remembered.popitem(last=False)
