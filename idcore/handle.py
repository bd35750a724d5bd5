"""Identifier syntax: the :class:`Handle` value and every input form it parses.

A handle is ``prefix/suffix``. The prefix is dot-separated segments whose
first is a numeric national code (``88.118.2``, ``0.NA``); prefixes compare
ASCII-case-insensitively. The suffix is printable UTF-8 and may contain ``/``.

:func:`parse` accepts what scanners and people send and normalises it to a
handle; :meth:`Handle.from_text` accepts only the plain ``prefix/suffix``
form. Both raise :class:`~idcore.errors.InvalidHandle` naming what is wrong:
which character at which position, or which limit.
"""

from __future__ import annotations

import functools
import re
from urllib.parse import quote, unquote_to_bytes

from idcore import limits
from idcore.errors import InvalidHandle

#: Prefix of the handles that describe prefixes (``0.NA/88.118.2``).
PREFIX_HANDLE_PREFIX = "0.NA"
_PREFIX_HANDLE_KEY = PREFIX_HANDLE_PREFIX.upper()

#: Checked prefixes remembered: a node sees few distinct prefixes, each
#: in millions of handles.
CHECKED_PREFIX_CACHE_SIZE = 4096

_SEGMENT_CHARS = "ASCII letters, digits, '-' and '_'"
_PREFIX_RE = re.compile(r"[0-9]+(?:\.[A-Za-z0-9_-]+)*")
_SEGMENT_RE = re.compile(r"[A-Za-z0-9_-]+")
_URL_SCHEME_RE = re.compile(r"(?i)https?://")
_HDL_SCHEME_RE = re.compile(r"(?i)hdl:")
_API_PATH_RE = re.compile(r"(?i)api/handles/")
#: AIM symbology identifier (ISO/IEC 15424): "]", the symbology's letter
#: (Q for QR Code) and a modifier character.
_AIM_ID_RE = re.compile(r"\][A-Za-z][0-9A-Za-z]")


class Handle:
    """An immutable, validated handle.

    Attributes:
        prefix: the prefix as written.
        suffix: the suffix, case preserved.
        key: the comparison and storage key: prefix upper-cased, ``/``,
            suffix unchanged (upper-cased too for ``0.NA/<prefix>``, whose
            suffix is a prefix). Two handles are equal when their keys are.
        prefix_key: the prefix upper-cased, for comparisons.
        is_prefix_handle: True for ``0.NA/<prefix>`` handles, which
            describe a prefix.
    """

    __slots__ = ("prefix", "suffix", "key", "prefix_key", "is_prefix_handle")

    prefix: str
    suffix: str
    key: str
    prefix_key: str
    is_prefix_handle: bool

    def __init__(self, prefix: str, suffix: str) -> None:
        check_prefix(prefix)
        _check_suffix(suffix, offset=len(prefix) + 1)
        _check_length(prefix, suffix)
        prefix_upper = prefix.upper()
        is_prefix_handle = prefix_upper == _PREFIX_HANDLE_KEY
        if is_prefix_handle:
            # 0.NA/<prefix> names a prefix, and prefixes ignore case.
            try:
                check_prefix(suffix)
            except InvalidHandle as exc:
                raise InvalidHandle(f"{prefix}/{suffix} must name a prefix: {exc.message}", **exc.details) from None
            key = prefix_upper + "/" + suffix.upper()
        else:
            key = prefix_upper + "/" + suffix
        setter = object.__setattr__
        setter(self, "prefix", prefix)
        setter(self, "suffix", suffix)
        setter(self, "key", key)
        setter(self, "prefix_key", prefix_upper)
        setter(self, "is_prefix_handle", is_prefix_handle)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Handle is immutable")

    @classmethod
    def from_text(cls, text: str) -> Handle:
        """Parse the plain ``prefix/suffix`` form; no other form is accepted.

        Raises:
            InvalidHandle: no ``/``, an empty part, a bad character or a
                length limit exceeded; the message says which.
        """
        if not isinstance(text, str):
            raise InvalidHandle(f"a handle must be text, not {type(text).__name__}")
        return _from_text(text)

    def to_text(self) -> str:
        """The handle as ``prefix/suffix``."""
        return self.prefix + "/" + self.suffix

    def __str__(self) -> str:
        return self.prefix + "/" + self.suffix

    def __repr__(self) -> str:
        return f"Handle({self.to_text()!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Handle) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)


def _from_text(text: str) -> Handle:
    slash = text.find("/")
    if slash < 0:
        raise InvalidHandle(f"{_show(text)} is not a handle: it has no '/' between prefix and suffix", text=text)
    return Handle(text[:slash], text[slash + 1 :])


def prefix_handle(prefix: str) -> Handle:
    """The ``0.NA/<prefix>`` handle that holds a prefix's site and admins."""
    check_prefix(prefix)
    return Handle(PREFIX_HANDLE_PREFIX, prefix)


def prefix_record_key(prefix: str) -> str:
    """Storage key of ``0.NA/<prefix>`` for an already valid ``prefix``."""
    return _PREFIX_HANDLE_KEY + "/" + prefix.upper()


@functools.lru_cache(maxsize=CHECKED_PREFIX_CACHE_SIZE)
def check_prefix(prefix: str) -> str:
    """Validate a prefix and return it unchanged.

    Raises:
        InvalidHandle: naming the empty segment, the bad character and its
            1-based position, or the limit exceeded.
    """
    if len(prefix) > limits.MAX_PREFIX_LENGTH:
        raise InvalidHandle(
            f"prefix {_show(prefix[:limits.MAX_PREFIX_LENGTH])}... is {len(prefix)} characters long;"
            f" the limit is {limits.MAX_PREFIX_LENGTH}",
            limit="MAX_PREFIX_LENGTH",
        )
    if _PREFIX_RE.fullmatch(prefix) is None:
        _explain_bad_prefix(prefix)
    segments = prefix.count(".") + 1
    if segments > limits.MAX_PREFIX_SEGMENTS:
        raise InvalidHandle(
            f"prefix {_show(prefix)} has {segments} segments; the limit is {limits.MAX_PREFIX_SEGMENTS}",
            limit="MAX_PREFIX_SEGMENTS",
        )
    for segment in prefix.split("."):
        if len(segment) > limits.MAX_PREFIX_SEGMENT_LENGTH:
            raise InvalidHandle(
                f"prefix segment {_show(segment)} is {len(segment)} characters long;"
                f" the limit is {limits.MAX_PREFIX_SEGMENT_LENGTH}",
                limit="MAX_PREFIX_SEGMENT_LENGTH",
            )
    return prefix


def prefix_ancestors(prefix: str) -> list[str]:
    """``prefix`` and each shorter prefix above it, longest first.

    >>> prefix_ancestors("88.118.2")
    ['88.118.2', '88.118', '88']
    """
    out = [prefix]
    while "." in prefix:
        prefix = prefix.rsplit(".", 1)[0]
        out.append(prefix)
    return out


def parse(text: str, *, base_path: str = "") -> Handle:
    """Normalise any input form a scanner or user may send to a handle.

    Accepted forms: ``88.118.2/PRD-1``; ``hdl:88.118.2/PRD-1``;
    ``https://<resolver>/88.118.2/PRD-1`` and ``.../api/handles/<handle>``,
    percent-encoded or not, with any query or fragment dropped. What
    scanners put around a read is dropped: white space and CR/LF, control
    characters framing it (STX/ETX, GS, a byte-order mark: nothing a handle
    may hold at either end) and an AIM symbology identifier (``]Q1`` for a
    QR code, sent by scanners set up to announce the symbology). Scheme,
    host and prefix are case-insensitive, so an upper-cased URL from a
    keyboard-wedge scanner parses too (its suffix stays as scanned: the
    case it had on the label cannot be recovered).

    ``base_path`` is the path of a resolver served below the root of its
    host (``/id`` for ``https://example.cn/id``): in a URL whose path starts
    with it (any case), the handle follows it.

    Raises:
        InvalidHandle: naming what is wrong with the input.
    """
    if not isinstance(text, str):
        raise InvalidHandle(f"a handle must be text, not {type(text).__name__}")
    stripped = _unframe(text)
    aim = _AIM_ID_RE.match(stripped)
    if aim is not None:  # a handle cannot start with "]": this is the scanner's
        stripped = _unframe(stripped[aim.end() :])
    if not stripped:
        raise InvalidHandle("empty input: expected a handle such as 88.118.2/PRD-1")
    if _URL_SCHEME_RE.match(stripped):
        return Handle.from_text(_handle_from_url(stripped, base_path.strip("/")))
    if _HDL_SCHEME_RE.match(stripped):
        return Handle.from_text(stripped[4:])
    return Handle.from_text(stripped)


def _unframe(text: str) -> str:
    """``text`` without white space or non-printable characters at either end."""
    start, end = 0, len(text)
    while start < end and _framing(text[start]):
        start += 1
    while end > start and _framing(text[end - 1]):
        end -= 1
    return text[start:end]


def _framing(ch: str) -> bool:
    return ch.isspace() or not ch.isprintable()


def _handle_from_url(url: str, base_path: str) -> str:
    """The percent-decoded handle in the path of a resolver URL, after
    ``base_path`` (no leading or trailing "/") when the path starts with it."""
    after_scheme = url[url.index("://") + 3 :]
    slash = after_scheme.find("/")
    if slash < 0 or slash == len(after_scheme) - 1:
        raise InvalidHandle(f"URL {_show(url)} has no handle in its path", text=url)
    if slash == 0:
        raise InvalidHandle(f"URL {_show(url)} has no host", text=url)
    path = after_scheme[slash + 1 :]
    for mark in ("?", "#"):
        cut = path.find(mark)
        if cut >= 0:
            path = path[:cut]
    if base_path and path[: len(base_path) + 1].lower() == base_path.lower() + "/":
        path = path[len(base_path) + 1 :]
    api = _API_PATH_RE.match(path)
    if api is not None:
        path = path[api.end() :]
    try:
        decoded = unquote_to_bytes(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidHandle(
            f"URL {_show(url)} percent-encodes bytes that are not UTF-8 (at byte {exc.start + 1} of the decoded path)",
            text=url,
        ) from None
    if not decoded:
        raise InvalidHandle(f"URL {_show(url)} has no handle in its path", text=url)
    return decoded


def _check_suffix(suffix: str, *, offset: int) -> None:
    if not suffix:
        raise InvalidHandle("the suffix is empty: expected text after the '/'")
    if not suffix.isprintable():
        for i, ch in enumerate(suffix):
            if not ch.isprintable():
                raise InvalidHandle(
                    f"character {_codepoint(ch)} at position {offset + i + 1} is not printable;"
                    " a suffix must be printable text",
                    position=offset + i + 1,
                    character=ch,
                )


def _check_length(prefix: str, suffix: str) -> None:
    length = len(prefix) + 1 + len(suffix)
    if length > limits.MAX_HANDLE_LENGTH:
        raise InvalidHandle(
            f"handle is {length} characters long; the limit is {limits.MAX_HANDLE_LENGTH}",
            limit="MAX_HANDLE_LENGTH",
        )


def _explain_bad_prefix(prefix: str) -> None:
    """Raise an InvalidHandle that says exactly what is wrong with ``prefix``."""
    if not prefix:
        raise InvalidHandle("the prefix is empty: expected e.g. 88.118.2 before the '/'")
    position = 1
    for number, segment in enumerate(prefix.split("."), start=1):
        if not segment:
            raise InvalidHandle(
                f"prefix {_show(prefix)} has an empty segment at position {position}",
                position=position,
            )
        bad = next((i for i, ch in enumerate(segment) if not "0" <= ch <= "9"), None)
        if number == 1 and bad is not None:
            raise InvalidHandle(
                f"prefix {_show(prefix)} must start with a numeric national code;"
                f" character {_codepoint(segment[bad])} at position {position + bad} is not a digit",
                position=position + bad,
                character=segment[bad],
            )
        for i, ch in enumerate(segment):
            if _SEGMENT_RE.fullmatch(ch) is None:
                raise InvalidHandle(
                    f"character {_codepoint(ch)} at position {position + i} is not allowed in a prefix"
                    f" (segments hold {_SEGMENT_CHARS})",
                    position=position + i,
                    character=ch,
                )
        position += len(segment) + 1
    raise InvalidHandle(f"prefix {_show(prefix)} is not valid")  # pragma: no cover - regex and walk agree


def _codepoint(ch: str) -> str:
    return f"{ch!r} (U+{ord(ch):04X})"


def _show(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")


#: Characters left unescaped when a handle goes into a URL path; ``/`` stays
#: so that ``prefix/suffix`` reads naturally (servers take the rest of the
#: path as the handle).
_URL_PATH_SAFE = "/:@!$&'()*+,;=-._~"


def url_path(text: str) -> str:
    """``text`` (a handle) percent-encoded for a URL path, with suffix
    segments ``.`` and ``..`` escaped too: URL libraries (yarl, browsers)
    resolve dot segments, and ``88.118.2/a/../b`` must not become
    ``88.118.2/b``. Send the result as an already encoded URL (for aiohttp,
    ``yarl.URL(url, encoded=True)``), or it is undone.

    >>> url_path("88.118.2/批次 1/..")
    '88.118.2/%E6%89%B9%E6%AC%A1%201/%2E%2E'
    """
    segments = quote(text, safe=_URL_PATH_SAFE).split("/")
    return "/".join(s.replace(".", "%2E") if s in (".", "..") else s for s in segments)
