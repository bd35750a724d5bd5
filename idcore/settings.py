"""Node settings: one frozen object built at the edge from defaults, a TOML
file, the environment and command-line flags (later sources win).

Nothing here reads the environment or a file by itself: the caller passes
the parsed TOML table, the environment mapping and the flags, so building
settings is pure and testable.

TOML layout::

    [node]
    data_dir = "idnode-data"
    host = "127.0.0.1"
    port = 8000
    auto_admin = true
    log_level = "info"
    tls_cert = "/etc/idnode/node.crt"   # both or neither: serve HTTPS
    tls_key = "/etc/idnode/node.key"
    # the public resolver whose URL the node's QR codes carry (GET /qr/...)
    resolver_url = "https://id.example.cn"

Environment: ``IDNODE_DATA_DIR``, ``IDNODE_HOST``, ``IDNODE_PORT``,
``IDNODE_AUTO_ADMIN``, ``IDNODE_LOG_LEVEL``, ``IDNODE_TLS_CERT``,
``IDNODE_TLS_KEY``, ``IDNODE_RESOLVER_URL``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

#: Name of the node's database file inside its data folder.
DATABASE_NAME = "idnode.sqlite3"

#: Where ``idnode init`` leaves the first admin identity and its secret, as
#: JSON ``{"identity": ..., "secret": ...}`` readable by the owner only; the
#: client commands use it by default.
ADMIN_CREDENTIALS_NAME = "admin.json"

LOG_LEVELS = ("debug", "info", "warning", "error")

#: Resolver whose URL a node's QR codes carry unless configured: the demo's
#: recursive node. The same as ``qr.payload.DEFAULT_RESOLVER_URL`` (the core
#: imports nothing above it; a test keeps the two equal).
DEFAULT_RESOLVER_URL = "http://127.0.0.1:8000"


class SettingsError(ValueError):
    """A setting has a value it cannot take; the message names the source."""


@dataclass(frozen=True, slots=True)
class NodeSettings:
    """How one node runs.

    Attributes:
        data_dir: folder with the node's database and admin secret.
        host: address the HTTP server listens on.
        port: HTTP port (0 picks a free one).
        auto_admin: give handles created without HS_ADMIN one naming their creator.
        log_level: one of LOG_LEVELS.
        tls_cert, tls_key: PEM certificate chain and private key; with
            both, the node serves HTTPS, so that secrets sent with HTTP
            Basic never cross a network in the clear.
        resolver_url: base URL (``http(s)://host[:port][/path]``) of the
            public resolver that the URL form of this node's QR codes
            points phones to.
    """

    data_dir: Path = Path("idnode-data")
    host: str = "127.0.0.1"
    port: int = 8000
    auto_admin: bool = True
    log_level: str = "info"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    resolver_url: str = DEFAULT_RESOLVER_URL

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise SettingsError("tls_cert and tls_key go together: give both to serve HTTPS, or neither")

    @property
    def database(self) -> Path:
        return self.data_dir / DATABASE_NAME

    @property
    def admin_credentials(self) -> Path:
        return self.data_dir / ADMIN_CREDENTIALS_NAME


_FIELDS = {f.name: f for f in dataclasses.fields(NodeSettings)}


def build_settings(
    toml: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> NodeSettings:
    """Merge the sources into one :class:`NodeSettings`.

    Args:
        toml: the parsed TOML document (its ``[node]`` table is read).
        env: environment variables (``IDNODE_*`` are read).
        flags: command-line values; None entries mean "not given".

    Raises:
        SettingsError: an unknown key or a value of the wrong kind, naming
            where it came from.
    """
    values: dict[str, Any] = {}
    table = (toml or {}).get("node", {})
    if not isinstance(table, Mapping):
        raise SettingsError("config file: [node] must be a table")
    for key, raw in table.items():
        if key not in _FIELDS:
            raise SettingsError(f"config file: unknown setting node.{key} (known: {', '.join(_FIELDS)})")
        values[key] = _convert(key, raw, f"config file node.{key}")
    for key in _FIELDS:
        name = "IDNODE_" + key.upper()
        if env and name in env:
            values[key] = _convert(key, env[name], f"environment {name}")
    for key, raw in (flags or {}).items():
        if raw is not None:
            values[key] = _convert(key, raw, f"--{key.replace('_', '-')}")
    return NodeSettings(**values)


def _convert(key: str, raw: Any, source: str) -> Any:
    if key in ("data_dir", "tls_cert", "tls_key"):
        return Path(raw)
    if key == "port":
        try:
            port = int(raw)
        except (TypeError, ValueError):
            raise SettingsError(f"{source}: port {raw!r} is not a number") from None
        if not 0 <= port <= 65535:
            raise SettingsError(f"{source}: port {port} is outside 0..65535")
        return port
    if key == "auto_admin":
        if isinstance(raw, bool):
            return raw
        text = str(raw).lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{source}: {raw!r} is not true or false")
    if key == "log_level":
        level = str(raw).lower()
        if level not in LOG_LEVELS:
            raise SettingsError(f"{source}: log level {raw!r} is not one of {', '.join(LOG_LEVELS)}")
        return level
    if key == "resolver_url":
        return _resolver_url(str(raw), source)
    return str(raw)


def _resolver_url(url: str, source: str) -> str:
    # The shape qr.payload.resolver_base accepts (which normalises it when a
    # code is made); checked here so that a bad value names its source.
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        parts = None
    if (
        parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname
        or parts.query or parts.fragment or "@" in parts.netloc
    ):
        raise SettingsError(f"{source}: resolver URL {url!r} must be http(s)://host[:port][/path]")
    return url.strip()
