"""HS_SECKEY secrets kept only as salted, deliberately slow hashes.

A node never stores a secret key as given: on write it becomes
``$scrypt$n=<N>,r=<r>,p=<p>$<salt>$<hash>`` (base64 parts), and a client's
secret is checked against that. scrypt is memory-hard, so a stolen database
or backup does not give the secrets away cheaply.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

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


def is_hashed(data: bytes) -> bool:
    """True when ``data`` is already a hash in this module's format."""
    return data.startswith(_MARK)


def hash_secret(secret: bytes) -> bytes:
    """The salted slow hash of ``secret``, in the stored text format."""
    salt = os.urandom(SALT_BYTES)
    digest = hashlib.scrypt(secret, salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=HASH_BYTES)
    params = f"n={SCRYPT_N},r={SCRYPT_R},p={SCRYPT_P}".encode()
    return b"$".join([b"", b"scrypt", params, base64.b64encode(salt), base64.b64encode(digest)])


def verify_secret(secret: bytes, stored: bytes) -> bool:
    """True when ``secret`` hashes to ``stored``; False for any mismatch or
    a stored value that is not a hash this module wrote."""
    try:
        _, name, params, salt_b64, digest_b64 = stored.split(b"$")
        if name != b"scrypt":
            return False
        cost = dict(item.split(b"=") for item in params.split(b","))
        n, r, p = int(cost[b"n"]), int(cost[b"r"]), int(cost[b"p"])
        salt, digest = base64.b64decode(salt_b64), base64.b64decode(digest_b64)
    except (ValueError, KeyError):
        return False
    if n > 2**20 or r > 32 or p > 16:  # refuse parameters that would burn the CPU
        return False
    candidate = hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, dklen=len(digest), maxmem=2**30)
    return hmac.compare_digest(candidate, digest)
