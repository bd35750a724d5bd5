"""Credentials on HTTP requests: ``Authorization: Basic`` with an
``index:handle`` user name and the secret key as password.

As the Handle.Net REST API does, the user name is percent-decoded
(``300%3A0.NA%2F88.118.2`` works, ``+`` stays ``+``) and the password is
taken as raw bytes, not decoded. Basic puts the user name before the first
colon, so Handle clients percent-encode the colon of ``index:handle``; a
user name that is a bare index (``curl -u 300:0.NA/88.118.2:secret``) can
mean nothing else, so there the handle runs to the next colon.
"""

from __future__ import annotations

import base64
from urllib.parse import unquote

from aiohttp import web

from idcore.errors import AuthenticationFailed, AuthenticationNeeded
from idcore.values import ValueReference
from registry.service import Registry


def basic_credentials(header: str) -> tuple[str, bytes]:
    """The ``(identity, secret)`` of an ``Authorization: Basic`` header.

    Raises:
        AuthenticationFailed: another scheme, or a malformed Basic value.
    """
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise AuthenticationFailed(f"authorization scheme {scheme!r} is not supported; use Basic")
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except ValueError:  # binascii.Error, or non-ASCII text
        raise AuthenticationFailed("Basic credentials are not valid base64") from None
    user, colon, secret = decoded.partition(b":")
    if user.isdigit():
        handle, colon, secret = secret.partition(b":")
        user = user + b":" + handle
    if not colon or not user:
        raise AuthenticationFailed("Basic credentials must be 'index:handle' and the secret, separated by a colon")
    try:
        identity = unquote(user.decode("utf-8"), errors="strict")
    except UnicodeDecodeError:
        raise AuthenticationFailed("Basic user name is not UTF-8") from None
    return identity, secret


async def request_identity(request: web.Request, registry: Registry, *, required: bool) -> ValueReference | None:
    """The authenticated identity of ``request``, or None when it carries no
    credentials and none are ``required``.

    Raises:
        AuthenticationNeeded: ``required`` and no credentials.
        AuthenticationFailed: credentials that do not prove their identity.
    """
    header = request.headers.get("Authorization")
    if header is None:
        if required:
            raise AuthenticationNeeded("this operation needs credentials (HTTP Basic, index:handle and secret)")
        return None
    identity, secret = basic_credentials(header)
    return await registry.authenticator.authenticate(identity, secret)
