"""HS_PUBKEY data: a public key as JSON Web Key members.

The Handle.Net REST API shows public keys as JWK objects (``kty``, ``n``,
``e`` for RSA; base64url without padding). The node keeps them as given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from idcore.errors import InvalidValue


@dataclass(frozen=True, slots=True)
class PublicKey:
    """HS_PUBKEY data as JSON Web Key members (``kty``, ``n``, ``e`` ...).

    Kept as the JWK the client gave, members in order, so that it goes back
    out byte for byte.
    """

    jwk: tuple[tuple[str, Any], ...]

    @property
    def kty(self) -> str:
        return dict(self.jwk)["kty"]

    def to_json(self) -> dict[str, Any]:
        return dict(self.jwk)

    @classmethod
    def from_json(cls, obj: Any) -> PublicKey:
        """Parse a JWK object.

        Raises:
            InvalidValue: not an object, or no textual ``kty``.
        """
        if not isinstance(obj, dict) or not isinstance(obj.get("kty"), str):
            raise InvalidValue("HS_PUBKEY data must be a JSON Web Key object with a 'kty' member")
        for name, member in obj.items():
            if not isinstance(member, str):
                raise InvalidValue(f"JWK member {name!r} must be a base64url string")
        return cls(tuple(obj.items()))
