"""HS_SECKEY secrets kept only as salted, deliberately slow hashes.

A node never stores a secret key as given: on write it becomes
``$scrypt$n=<N>,r=<r>,p=<p>$<salt>$<hash>`` (base64 parts), and a client's
secret is checked against that. Checks run on a small pool of their own
(:data:`HASH_WORKERS`), so a flood of logins cannot take every thread. scrypt is memory-hard, so a stolen database
or backup does not give the secrets away cheaply.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

T = TypeVar("T")

#: scrypt cost parameters: about 50 ms and 16 MiB per check on a current
#: core, which is slow for an attacker's guessing and fine for logins
#: (verified identities are remembered; see registry.auth).
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1

#: Random salt per secret.
SALT_BYTES = 16

#: Length of the derived hash.
HASH_BYTES = 32

_MARK = b"$scrypt$"

#: Threads that run scrypt; logins beyond that wait their turn.
HASH_WORKERS = 2

_pool = ThreadPoolExecutor(HASH_WORKERS, thread_name_prefix="scrypt")


async def run_hashing(fn: Callable[..., T], *args: Any) -> T:
    """Run a hashing function on the hashing pool, off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(_pool, fn, *args)


def is_hashed(data: bytes) -> bool:
    """True when ``data`` is already a hash in this module's format."""
    return data.startswith(_MARK)


_PARAMS = f"n={SCRYPT_N},r={SCRYPT_R},p={SCRYPT_P}".encode()


def hash_secret(secret: bytes) -> bytes:
    """The salted slow hash of ``secret``, in the stored text format."""
    salt = os.urandom(SALT_BYTES)
    digest = hashlib.scrypt(secret, salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=HASH_BYTES)
    return b"$".join([b"", b"scrypt", _PARAMS, base64.b64encode(salt), base64.b64encode(digest)])


def verify_secret(secret: bytes, stored: bytes) -> bool:
    """True when ``secret`` hashes to ``stored``; False for any mismatch, and
    for a stored value that is not a hash this module writes (other cost
    parameters included: a stored hash must not choose how much CPU and
    memory a login may burn)."""
    try:
        _, name, params, salt_b64, digest_b64 = stored.split(b"$")
        salt, digest = base64.b64decode(salt_b64, validate=True), base64.b64decode(digest_b64, validate=True)
    except ValueError:
        return False
    if name != b"scrypt" or params != _PARAMS or len(salt) != SALT_BYTES or len(digest) != HASH_BYTES:
        return False
    candidate = hashlib.scrypt(secret, salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=HASH_BYTES)
    return hmac.compare_digest(candidate, digest)
