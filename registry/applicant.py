"""An application for a child prefix: who applies, whom to contact, and
where the child node's servers are. Pure values, checked on construction.

The JSON shape (``POST /api/prefix-applications``)::

    {"prefix": "88.118.9",
     "organisation": {"name": ..., "creditCode": ..., "address": ..., "industryCode": ...},
     "contact": {"name": ..., "phone": ..., "email": ...},
     "site": <HS_SITE JSON, see idcore.site>,
     "publicKey": <JWK, optional: the child identity's HS_PUBKEY>}

The unified social credit code (统一社会信用代码) is checked with its GB
32100-2015 check character; the industry code is a GB/T 4754 code (a
section letter, then 2, 3 or 4 digits for division, group or class).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from idcore.errors import IdnodeError, InvalidValue
from idcore.handle import check_prefix
from idcore.pubkey import PublicKey
from idcore.site import Site

#: The characters of a credit code; their positions are their values (I, O,
#: Z, S and V are left out as too easily misread): 31 characters, as the
#: mod-31 check needs.
CREDIT_CODE_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"

#: GB 32100-2015 weights of the first 17 characters (3^i mod 31).
CREDIT_CODE_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)

CREDIT_CODE_LENGTH = 18

#: Longest organisation name, address or contact name accepted (characters);
#: enough for any registered Chinese company name, small enough to store.
MAX_TEXT_LENGTH = 200

_INDUSTRY_CODE = re.compile(r"[A-T](?:[0-9]{2}|[0-9]{3}|[0-9]{4})?")
_PHONE = re.compile(r"\+?[0-9][0-9 \-]{4,22}[0-9]")
_EMAIL = re.compile(r"[^@\s]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)+")


def credit_code_check_character(first17: str) -> str:
    """The GB 32100-2015 check character of a credit code's first 17 characters.

    Raises:
        InvalidValue: not 17 characters of :data:`CREDIT_CODE_CHARSET`.
    """
    if len(first17) != CREDIT_CODE_LENGTH - 1:
        raise InvalidValue("creditCode: the check character is computed over 17 characters", field="creditCode")
    total = 0
    for position, (char, weight) in enumerate(zip(first17, CREDIT_CODE_WEIGHTS), start=1):
        value = CREDIT_CODE_CHARSET.find(char)
        if value < 0:
            raise InvalidValue(
                f"creditCode: character {char!r} at position {position} is not allowed"
                f" (digits and {CREDIT_CODE_CHARSET[10:]} only)",
                field="creditCode",
                position=position,
            )
        total += value * weight
    return CREDIT_CODE_CHARSET[(31 - total % 31) % 31]


def check_credit_code(code: Any) -> str:
    """Validate a unified social credit code and return it (upper-cased).

    Raises:
        InvalidValue: wrong length, a character outside the charset, or a
            check character that does not match; naming the field.
    """
    if not isinstance(code, str):
        raise InvalidValue("creditCode must be text", field="creditCode")
    code = code.strip().upper()
    if len(code) != CREDIT_CODE_LENGTH:
        raise InvalidValue(
            f"creditCode {code!r} has {len(code)} characters; a unified social credit code has 18",
            field="creditCode",
        )
    expected = credit_code_check_character(code[:17])
    if code[17] != expected:
        raise InvalidValue(
            f"creditCode {code!r} fails its check character: {code[17]!r} given, {expected!r} expected",
            field="creditCode",
        )
    return code


def check_industry_code(code: Any) -> str:
    """Validate a GB/T 4754 industry code (``C``, ``C34``, ``C342``, ``C3421``).

    Raises:
        InvalidValue: naming the field.
    """
    if not isinstance(code, str) or not _INDUSTRY_CODE.fullmatch(code.strip().upper()):
        raise InvalidValue(
            f"industryCode {code!r} is not a GB/T 4754 code: a section letter A-T, optionally followed by"
            " 2, 3 or 4 digits (e.g. C3421)",
            field="industryCode",
        )
    return code.strip().upper()


def _text(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InvalidValue(f"{where}.{key} is required (non-empty text)", field=f"{where}.{key}")
    value = value.strip()
    if len(value) > MAX_TEXT_LENGTH:
        raise InvalidValue(
            f"{where}.{key} is {len(value)} characters long; the limit is {MAX_TEXT_LENGTH}", field=f"{where}.{key}"
        )
    return value


def _object(obj: Any, key: str) -> dict[str, Any]:
    value = obj.get(key)
    if not isinstance(value, dict):
        raise InvalidValue(f"{key} is required (an object)", field=key)
    return value


@dataclass(frozen=True, slots=True)
class Organisation:
    """The applicant organisation."""

    name: str
    credit_code: str
    address: str
    industry_code: str

    def __post_init__(self) -> None:
        check_credit_code(self.credit_code)
        check_industry_code(self.industry_code)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "creditCode": self.credit_code,
            "address": self.address,
            "industryCode": self.industry_code,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Organisation:
        return cls(
            _text(obj, "name", "organisation"),
            check_credit_code(obj.get("creditCode")),
            _text(obj, "address", "organisation"),
            check_industry_code(obj.get("industryCode")),
        )


@dataclass(frozen=True, slots=True)
class Contact:
    """Whom the reviewers talk to."""

    name: str
    phone: str
    email: str

    def __post_init__(self) -> None:
        if not _PHONE.fullmatch(self.phone):
            raise InvalidValue(
                f"contact.phone {self.phone!r} is not a phone number (digits, spaces, '-', optional leading '+')",
                field="contact.phone",
            )
        if not _EMAIL.fullmatch(self.email):
            raise InvalidValue(f"contact.email {self.email!r} is not an e-mail address", field="contact.email")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "phone": self.phone, "email": self.email}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Contact:
        return cls(_text(obj, "name", "contact"), _text(obj, "phone", "contact"), _text(obj, "email", "contact"))


@dataclass(frozen=True, slots=True)
class Application:
    """An application for ``prefix``: organisation, contact, the child's site
    and, optionally, the public key of the child's identity."""

    prefix: str
    organisation: Organisation
    contact: Contact
    site: Site
    public_key: PublicKey | None = None

    def __post_init__(self) -> None:
        check_prefix(self.prefix)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "prefix": self.prefix,
            "organisation": self.organisation.to_json(),
            "contact": self.contact.to_json(),
            "site": self.site.to_json(),
        }
        if self.public_key is not None:
            out["publicKey"] = self.public_key.to_json()
        return out

    @classmethod
    def from_json(cls, obj: Any) -> Application:
        """Parse an application.

        Raises:
            InvalidValue: a missing or malformed field, named.
        """
        if not isinstance(obj, dict):
            raise InvalidValue("an application must be a JSON object")
        prefix = obj.get("prefix")
        if not isinstance(prefix, str):
            raise InvalidValue("prefix is required (the child prefix applied for, e.g. 88.118.9)", field="prefix")
        try:
            check_prefix(prefix)
        except IdnodeError as exc:
            raise InvalidValue(f"prefix: {exc.message}", field="prefix") from None
        try:
            site = Site.from_json(_object(obj, "site"))
        except InvalidValue as exc:
            raise InvalidValue(f"site: {exc.message}", field="site") from None
        key = obj.get("publicKey")
        try:
            public_key = None if key is None else PublicKey.from_json(key)
        except InvalidValue as exc:
            raise InvalidValue(f"publicKey: {exc.message}", field="publicKey") from None
        return cls(
            prefix,
            Organisation.from_json(_object(obj, "organisation")),
            Contact.from_json(_object(obj, "contact")),
            site,
            public_key,
        )
