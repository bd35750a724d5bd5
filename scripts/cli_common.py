"""What the ``idnode`` commands share: exit codes, errors, credentials."""

from __future__ import annotations

import contextlib
import os
import ssl
import tomllib
from pathlib import Path
from typing import Any, Iterator

import orjson

from idcore.errors import IdnodeError
from idcore.settings import ADMIN_CREDENTIALS_NAME
from resolver.rest_client import NodeClient, NodeReplyError, NodeUnreachable

EXIT_OK = 0
#: The node answered with an error (not found, refused, invalid ...).
EXIT_REFUSED = 1
#: The command line itself was wrong (argparse uses 2 as well).
EXIT_USAGE = 2
#: The node could not be reached.
EXIT_UNREACHABLE = 3
#: Local input was wrong: a file, a setting, a value.
EXIT_LOCAL = 4

#: Where client commands look for credentials when none are named.
DEFAULT_CREDENTIALS = Path("idnode-data") / ADMIN_CREDENTIALS_NAME


class CliError(Exception):
    """Ends a command with ``message`` on stderr and ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_LOCAL) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


@contextlib.contextmanager
def node_errors() -> Iterator[None]:
    """Turn client-side failures into CliErrors with the right exit code."""
    try:
        yield
    except NodeReplyError as exc:
        raise CliError(f"refused, response code {exc.response_code}: {exc.message}", EXIT_REFUSED) from None
    except NodeUnreachable as exc:
        raise CliError(exc.message, EXIT_UNREACHABLE) from None
    except IdnodeError as exc:
        raise CliError(exc.message, EXIT_LOCAL) from None


def read_secret(path: str | None, env: str) -> str | None:
    """A secret from the file ``path`` (stripped), else from the environment
    variable ``env``; None when neither gives one.

    Raises:
        CliError: the file cannot be read.
    """
    if not path:
        return os.environ.get(env)
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise CliError(f"cannot read secret file {path}: {exc.strerror}") from None


def explicit_credentials(args: Any) -> tuple[str | None, str | None]:
    """The identity and secret given by ``--id``/``--secret-file`` or the
    ``IDNODE_ID``/``IDNODE_SECRET``/``IDNODE_SECRET_FILE`` environment."""
    identity = args.identity or os.environ.get("IDNODE_ID")
    return identity, read_secret(args.secret_file or os.environ.get("IDNODE_SECRET_FILE"), "IDNODE_SECRET")


def credentials(args: Any) -> tuple[str | None, str | None]:
    """The identity and secret for a client command, from flags, environment
    or an ``admin.json`` written by ``idnode init``."""
    identity, secret = explicit_credentials(args)
    if identity and secret:
        return identity, secret
    path = Path(args.credentials) if args.credentials else DEFAULT_CREDENTIALS
    if args.credentials or path.is_file():
        try:
            stored = orjson.loads(path.read_bytes())
            return identity or stored["identity"], secret or stored["secret"]
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise CliError(f"cannot read credentials from {path}: {exc}") from None
    return identity, secret


def client_tls(args: Any) -> ssl.SSLContext | None:
    """The TLS context trusting ``--cacert`` (env ``IDNODE_CACERT``), or None
    for the system's trust store."""
    cacert = args.cacert or os.environ.get("IDNODE_CACERT")
    if not cacert:
        return None
    try:
        return ssl.create_default_context(cafile=cacert)
    except (OSError, ssl.SSLError) as exc:
        raise CliError(f"cannot use CA certificate {cacert}: {exc}") from None


def server_tls(cert: str | Path | None, key: str | Path | None) -> ssl.SSLContext | None:
    """The context to serve HTTPS with from a PEM certificate chain and its
    key (None, None: plain HTTP).

    Raises:
        CliError: only one of the two, or files that cannot be used.
    """
    if (cert is None) != (key is None):
        raise CliError("--tls-cert and --tls-key go together")
    if cert is None or key is None:
        return None
    from resolver.serve import tls_context  # the server stack, only for the commands that serve

    try:
        return tls_context(Path(cert), Path(key))
    except (OSError, ssl.SSLError) as exc:
        raise CliError(f"cannot use TLS certificate {cert} and key {key}: {exc}") from None


def client_for(args: Any) -> NodeClient:
    identity, secret = credentials(args)
    return NodeClient(args.server, identity=identity, secret=secret, tls=client_tls(args))


def read_config(path: str | None) -> dict[str, Any]:
    """The parsed TOML settings file at ``path`` (``{}`` for None).

    Raises:
        CliError: unreadable, or not valid TOML.
    """
    if not path:
        return {}
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise CliError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise CliError(f"config file {path} is not valid TOML: {exc}") from None
