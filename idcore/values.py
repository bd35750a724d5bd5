"""The record model: Handle values and the typed data they carry.

A handle's record is a list of :class:`HandleValue`. Each value has an
index (unique within the handle), a type, data, a time-to-live, a
timestamp, four permission bits and optional references to other values.

What ``data`` holds depends on the type, as in the Handle system:

==============================  ==========================================
type                            ``data``
==============================  ==========================================
``HS_ADMIN``                    :class:`AdminRef`
``HS_VLIST``                    ``tuple`` of :class:`ValueReference`
``HS_SITE``, ``HS_SITE.PREFIX``  :class:`~idcore.site.Site`
``HS_PUBKEY``                   :class:`PublicKey` (JWK members)
anything else                   ``bytes``
==============================  ==========================================

Values are immutable; change one with :meth:`HandleValue.replace`.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass
from typing import Any, Iterable, NamedTuple, Union

from idcore import limits
from idcore.errors import InvalidValue, ValueAlreadyExists
from idcore.pubkey import PublicKey
from idcore.site import Site

#: Distinct type names whose data class is remembered.
TYPE_CACHE_SIZE = 4096

# The constructor of HandleValue takes a parameter named ``type`` (the JSON
# member), and its class has a field of that name; keep the builtin at hand.
_builtin_type = type


class ValueType:
    """Type names the Handle system reserves."""

    HS_ADMIN = "HS_ADMIN"
    HS_SITE = "HS_SITE"
    HS_SITE_PREFIX = "HS_SITE.PREFIX"
    HS_NA_DELEGATE = "HS_NA_DELEGATE"
    HS_PUBKEY = "HS_PUBKEY"
    HS_SECKEY = "HS_SECKEY"
    HS_VLIST = "HS_VLIST"
    HS_SIGNATURE = "HS_SIGNATURE"
    HS_CERT = "HS_CERT"
    HS_ALIAS = "HS_ALIAS"
    URL = "URL"
    EMAIL = "EMAIL"


class ReservedIndex:
    """Value indexes reserved by Handle and IDIS practice."""

    #: HS_ADMIN values of a handle or prefix.
    ADMIN = 100
    #: HS_PUBKEY / HS_SECKEY values naming an identity.
    AUTH = 300
    #: HS_SIGNATURE / HS_CERT values.
    SIGNATURE = 400
    #: The metadata template a record follows.
    TEMPLATE = 1001
    #: First index of application fields when a metadata template applies.
    FIRST_APPLICATION = 2000


#: Value permissions given when a value names none: admin read, admin write,
#: public read, no public write (the Handle default, shown as "1110").
DEFAULT_PERMISSIONS = "1110"

#: Value permissions for secrets: administrators only.
PRIVATE_PERMISSIONS = "1100"


def type_is(value_type: str, wanted: str) -> bool:
    """True when ``value_type`` is ``wanted`` or one of its subtypes.

    Case-insensitive, as Handle's ``hasType``: ``HS_SITE.PREFIX`` is an
    ``HS_SITE`` and ``url`` is a ``URL``.
    """
    t, w = value_type.upper(), wanted.upper()
    return t == w or t.startswith(w + ".")


def type_in_filter(value_type: str, wanted: Iterable[str]) -> bool:
    """The REST API's ``type=`` filter (Handle's ``isParentTypeInArray``).

    A filter entry ending in ``.`` (``URL.``) matches that type and every
    subtype; one without (``URL``) matches only that exact type. Case is
    ignored.
    """
    t = value_type.upper()
    for w in wanted:
        w = w.upper()
        if w.endswith("."):
            if t == w[:-1] or t.startswith(w):
                return True
        elif t == w:
            return True
    return False


class AdminPermission(enum.IntFlag):
    """The twelve HS_ADMIN permission bits (Handle wire mask values).

    In JSON the mask is a 12-character bit string written most significant
    bit first, so the leftmost character is LIST_HANDLES and the rightmost
    ADD_HANDLE (``"011111110011"``).
    """

    ADD_HANDLE = 0x001
    DELETE_HANDLE = 0x002
    ADD_DERIVED_PREFIX = 0x004
    DELETE_DERIVED_PREFIX = 0x008
    MODIFY_VALUE = 0x010
    REMOVE_VALUE = 0x020
    ADD_VALUE = 0x040
    MODIFY_ADMIN = 0x080
    REMOVE_ADMIN = 0x100
    ADD_ADMIN = 0x200
    READ_VALUE = 0x400
    LIST_HANDLES = 0x800


ALL_ADMIN_PERMISSIONS = AdminPermission(0xFFF)


def admin_permissions_to_text(mask: int) -> str:
    """The 12-character bit string of an HS_ADMIN permission mask."""
    return format(mask & 0xFFF, "012b")


def admin_permissions_from_json(obj: Any) -> AdminPermission:
    """Parse HS_ADMIN ``permissions`` as Handle clients send them.

    Accepts a bit string read right-aligned (``"11"`` is ADD_HANDLE and
    DELETE_HANDLE), ``"*"`` or ``true`` for all, ``false`` for none, an integer
    mask, or an array of twelve flags indexed by bit number.

    Raises:
        InvalidValue: anything else, naming the offending input.
    """
    if obj is True or obj == "*":
        return ALL_ADMIN_PERMISSIONS
    if obj is False:
        return AdminPermission(0)
    if isinstance(obj, str):
        if not obj or len(obj) > 12 or obj.strip("01"):
            raise InvalidValue(
                f"admin permissions {obj!r} must be up to 12 characters of '0' and '1'"
            )
        return AdminPermission(int(obj, 2))
    if isinstance(obj, int):
        if not 0 <= obj <= 0xFFF:
            raise InvalidValue(f"admin permission mask {obj} is outside 0..4095")
        return AdminPermission(obj)
    if isinstance(obj, list):
        if len(obj) > 12:
            raise InvalidValue(f"admin permissions list has {len(obj)} entries; at most 12")
        mask = 0
        for bit, flag in enumerate(obj):
            if flag:
                mask |= 1 << bit
        return AdminPermission(mask)
    raise InvalidValue(f"admin permissions must be a bit string, not {type(obj).__name__}")


_JSON_INT_TEXT = re.compile(r"-?[0-9]{1,18}")


def json_int(obj: Any) -> Any:
    """A JSON integer as Handle servers read one: a number, or a string of
    digits (some clients, pyhandle among them, send indexes as strings).
    Anything else is returned unchanged for the caller's check to refuse."""
    if type(obj) is str and _JSON_INT_TEXT.fullmatch(obj):
        return int(obj)
    return obj


class ValueReference(NamedTuple):
    """A pointer to one value of a handle (``index:handle``); also how an
    identity is named."""

    handle: str
    index: int

    def to_text(self) -> str:
        """The Handle notation ``index:handle``."""
        return f"{self.index}:{self.handle}"

    @classmethod
    def from_text(cls, text: str) -> ValueReference:
        """Parse ``index:handle``; a bare ``handle`` means index 0 (any value).

        Raises:
            InvalidValue: empty handle or an index out of range.
        """
        head, colon, tail = text.partition(":")
        if colon and head.isdigit() and head.isascii():
            index, handle = int(head), tail
        else:
            index, handle = 0, text
        if not handle or index > limits.MAX_VALUE_INDEX:
            raise InvalidValue(f"{text!r} is not an identity of the form index:handle (e.g. 300:0.NA/88.118.2)")
        return cls(handle, index)

    def to_json(self) -> dict[str, Any]:
        return {"handle": self.handle, "index": self.index}

    @classmethod
    def from_json(cls, obj: Any, *, what: str = "reference") -> ValueReference:
        """Parse ``{"handle": ..., "index": ...}``.

        Raises:
            InvalidValue: not an object, handle not text, index not an integer.
        """
        if not isinstance(obj, dict):
            raise InvalidValue(f"{what} must be an object with 'handle' and 'index'")
        handle, index = obj.get("handle"), json_int(obj.get("index", 0))
        if not isinstance(handle, str) or not handle:
            raise InvalidValue(f"{what} needs a non-empty 'handle' string")
        if type(index) is not int or not 0 <= index <= limits.MAX_VALUE_INDEX:
            raise InvalidValue(f"{what} index {index!r} must be an integer in 0..{limits.MAX_VALUE_INDEX}")
        return cls(handle, index)


@dataclass(frozen=True, slots=True)
class AdminRef:
    """HS_ADMIN data: the identity ``index:handle`` and what it may do.

    ``index`` 0 means any HS_PUBKEY/HS_SECKEY value of ``handle``; an
    HS_VLIST at ``index:handle`` grants to every member of the group.
    """

    handle: str
    index: int
    permissions: AdminPermission

    def grants(self, permission: AdminPermission) -> bool:
        return bool(self.permissions & permission)

    def to_json(self) -> dict[str, Any]:
        return {
            "handle": self.handle,
            "index": self.index,
            "permissions": admin_permissions_to_text(self.permissions),
        }

    @classmethod
    def from_json(cls, obj: Any) -> AdminRef:
        """Parse ``{"handle", "index", "permissions"}``.

        Raises:
            InvalidValue: a missing or malformed member, named.
        """
        ref = ValueReference.from_json(obj, what="HS_ADMIN value")
        if "permissions" not in obj:
            raise InvalidValue("HS_ADMIN value needs 'permissions'")
        return cls(ref.handle, ref.index, admin_permissions_from_json(obj["permissions"]))


ValueData = Union[bytes, AdminRef, Site, PublicKey, tuple]


class _ValueFields(NamedTuple):
    index: int
    type: str
    data: Any
    ttl: int
    permissions: str
    timestamp: int
    references: tuple[ValueReference, ...]


class HandleValue(_ValueFields):
    """One value of a handle record. Immutable; checked on construction.

    A tuple underneath (values are made by the million in batches, and a
    tuple is the cheapest immutable object with named fields).

    Attributes:
        index: 1..MAX_VALUE_INDEX, unique within a record.
        type: the type name (``URL``, ``HS_ADMIN``, ``EMAIL.work`` ...).
        data: bytes, or the structured data its type calls for (see module doc).
        ttl: seconds a resolver may cache the value.
        permissions: four bits "admin read, admin write, public read, public write".
        timestamp: seconds since the epoch of the last change, 0 if unknown.
        references: values this one points at.
    """

    __slots__ = ()

    def __new__(
        cls,
        index: int,
        type: str,
        data: ValueData,
        *,
        ttl: int = limits.DEFAULT_TTL_SECONDS,
        permissions: str = DEFAULT_PERMISSIONS,
        timestamp: int = 0,
        references: tuple[ValueReference, ...] = (),
    ) -> HandleValue:
        if _builtin_type(index) is not int or not 1 <= index <= limits.MAX_VALUE_INDEX:
            raise InvalidValue(
                f"value index {index!r} must be an integer in 1..{limits.MAX_VALUE_INDEX}", index=index
            )
        if _builtin_type(type) is not str or not type or len(type) > limits.MAX_TYPE_LENGTH or not type.isprintable():
            raise InvalidValue(
                f"value {index}: type must be printable text of 1..{limits.MAX_TYPE_LENGTH} characters",
                index=index,
            )
        if _builtin_type(ttl) is not int or not 0 <= ttl <= limits.MAX_TTL_SECONDS:
            raise InvalidValue(
                f"value {index}: ttl {ttl!r} must be whole seconds in 0..{limits.MAX_TTL_SECONDS}",
                index=index,
            )
        if len(permissions) != 4 or permissions.strip("01"):
            raise InvalidValue(
                f"value {index}: permissions {permissions!r} must be four '0'/'1' characters"
                " (admin read, admin write, public read, public write)",
                index=index,
            )
        if len(references) > limits.MAX_REFERENCES_PER_VALUE:
            raise InvalidValue(
                f"value {index}: {len(references)} references; the limit is {limits.MAX_REFERENCES_PER_VALUE}",
                index=index,
            )
        _check_data(index, type, data)
        return tuple.__new__(cls, (index, type, data, ttl, permissions, timestamp, references))

    def replace(self, **changes: Any) -> HandleValue:
        """A copy with ``changes`` applied (and checked)."""
        fields = self._asdict()
        fields.update(changes)
        return HandleValue(fields.pop("index"), fields.pop("type"), fields.pop("data"), **fields)

    @property
    def public_read(self) -> bool:
        return self.permissions[2] == "1"

    @property
    def admin_write(self) -> bool:
        return self.permissions[1] == "1"

    def same_content(self, other: HandleValue) -> bool:
        """Equal in everything but the timestamp (Handle's ``equalsIgnoreTimestamp``)."""
        return self[:5] == other[:5] and self[6] == other[6]

    def __repr__(self) -> str:
        return f"HandleValue({self.index}, {self.type!r}, {self.data!r})"


@functools.lru_cache(maxsize=TYPE_CACHE_SIZE)
def data_class_for(value_type: str) -> type:
    """The class of data a value of ``value_type`` holds (see the module doc)."""
    if type_is(value_type, ValueType.HS_ADMIN):
        return AdminRef
    if type_is(value_type, ValueType.HS_VLIST):
        return tuple
    if type_is(value_type, ValueType.HS_SITE) or type_is(value_type, ValueType.HS_NA_DELEGATE):
        return Site
    if type_is(value_type, ValueType.HS_PUBKEY):
        return PublicKey
    return bytes


@functools.lru_cache(maxsize=TYPE_CACHE_SIZE)
def is_secret_key_type(value_type: str) -> bool:
    """True for HS_SECKEY (and its subtypes): data that must never be stored
    or shown in the clear."""
    return type_is(value_type, ValueType.HS_SECKEY)


def _check_data(index: int, value_type: str, data: Any) -> None:
    """Check that ``data`` is what ``value_type`` calls for."""
    expected = data_class_for(value_type)
    if not isinstance(data, expected):
        raise InvalidValue(
            f"value {index} of type {value_type} needs {_DATA_NAMES[expected]} data",
            index=index,
        )
    if expected is bytes and len(data) > limits.MAX_VALUE_DATA_BYTES:
        raise InvalidValue(
            f"value {index}: data is {len(data)} bytes; the limit is {limits.MAX_VALUE_DATA_BYTES}",
            index=index,
            limit="MAX_VALUE_DATA_BYTES",
        )
    if expected is tuple:
        if not all(isinstance(member, ValueReference) for member in data):
            raise InvalidValue(f"value {index}: HS_VLIST data must be references to values", index=index)
        if len(data) > limits.MAX_VLIST_MEMBERS:
            raise InvalidValue(
                f"value {index}: HS_VLIST lists {len(data)} members; the limit is {limits.MAX_VLIST_MEMBERS}",
                index=index,
                limit="MAX_VLIST_MEMBERS",
            )


_DATA_NAMES: dict[Any, str] = {
    AdminRef: "'admin'",
    tuple: "'vlist'",
    PublicKey: "'key'",
    bytes: "'string', 'base64' or 'hex'",
    Site: "'site'",
}


def check_record(values: list[HandleValue]) -> None:
    """Check the rules that span a record: unique indexes, value count.

    Raises:
        InvalidValue: too many values.
        ValueAlreadyExists: two values share an index.
    """
    if len(values) > limits.MAX_VALUES_PER_HANDLE:
        raise InvalidValue(
            f"{len(values)} values; the limit is {limits.MAX_VALUES_PER_HANDLE} per handle",
            limit="MAX_VALUES_PER_HANDLE",
        )
    seen: set[int] = set()
    for value in values:
        if value.index in seen:
            raise ValueAlreadyExists(f"Index conflict for {value.index}", index=value.index)
        seen.add(value.index)
