"""What a QR code on a label says: the resolver URL of a handle, or the handle.

Two forms (:class:`PayloadForm`):

- ``url``: ``https://<resolver host>/<handle>``, which a phone's camera opens
  as a web page (the recursive node's page of the record). Scheme and host
  are lower-cased; the handle is percent-encoded only where a URI must be
  (spaces, non-ASCII, ``%``, ``?``, ``#`` and dot segments), so a label of
  an upper-case handle stays short;
- ``handle``: the handle itself (``88.118.2/PRD-2024-000123``), for line
  scanners feeding software that resolves it. A handle of digits, upper-case
  letters and ``$%*+-./:`` and space fits QR's alphanumeric mode, about 45 %
  denser than bytes; :mod:`qr.symbol` lets the encoder pick modes per segment.

Both decode back to the handle with :func:`idcore.handle.parse`.
"""

from __future__ import annotations

import enum
from urllib.parse import urlsplit, urlunsplit

from idcore.errors import InvalidValue
from idcore.handle import Handle, url_path

#: Resolver base URL used when none is configured: the demo's recursive node.
DEFAULT_RESOLVER_URL = "http://127.0.0.1:8000"


class PayloadForm(enum.Enum):
    """Which text a code carries."""

    URL = "url"
    HANDLE = "handle"


def resolver_base(url: str) -> str:
    """``url`` checked as a resolver base (``http(s)://host[:port][/path]``),
    scheme and host lower-cased, no trailing slash.

    Raises:
        InvalidValue: not an http(s) URL with a host, or with a query or fragment.
    """
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise InvalidValue(f"resolver URL {url!r} must be http(s)://host[:port][/path]")
    if parts.query or parts.fragment:
        raise InvalidValue(f"resolver URL {url!r} must not carry a query or fragment")
    if "@" in parts.netloc:
        raise InvalidValue(f"resolver URL {url!r} must not carry credentials (they would be printed on labels)")
    # the host is case-insensitive, the port digits: the whole authority lower-cases
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), "", ""))


def url_payload(handle: Handle, resolver_url: str) -> str:
    """``<resolver>/<handle>`` (see the module doc)."""
    return resolver_base(resolver_url) + "/" + url_path(handle.to_text())


def payload_for(handle: Handle, form: PayloadForm, resolver_url: str = DEFAULT_RESOLVER_URL) -> str:
    """The text a code for ``handle`` carries in ``form``."""
    if form is PayloadForm.URL:
        return url_payload(handle, resolver_url)
    return handle.to_text()
