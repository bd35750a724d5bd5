"""One error hierarchy for idnode, mapped to Handle response codes.

Every error the node can answer with is an :class:`IdnodeError`. Each class
carries the Handle response code it stands for; :func:`http_status_for`
is the single place where a response code becomes an HTTP status, following
the Handle.Net REST API.

Errors are split by fault, as h11 does: :class:`RequestError` means the
caller sent something we refuse; :class:`NodeError` means this node failed;
:class:`UpstreamError` (used by the resolver) means another node misbehaved.
"""

from __future__ import annotations

from typing import Any


class ResponseCode:
    """Handle protocol response codes (RFC 3652, Handle.Net v9)."""

    SUCCESS = 1
    ERROR = 2
    SERVER_TOO_BUSY = 3
    PROTOCOL_ERROR = 4
    OPERATION_NOT_SUPPORTED = 5
    HANDLE_NOT_FOUND = 100
    HANDLE_ALREADY_EXISTS = 101
    INVALID_HANDLE = 102
    VALUES_NOT_FOUND = 200
    VALUE_ALREADY_EXISTS = 201
    INVALID_VALUE = 202
    SERVER_NOT_RESPONSIBLE = 301
    PREFIX_REFERRAL = 303
    INVALID_ADMIN = 400
    INSUFFICIENT_PERMISSIONS = 401
    AUTHENTICATION_NEEDED = 402
    AUTHENTICATION_FAILED = 403


#: HTTP status for each response code, as the Handle.Net REST API (CNRI
#: ``statusCodeFromResponse``) maps them. Referrals are 300 Multiple Choices;
#: a handle outside this node's prefixes is 400, not 404.
_HTTP_STATUS_BY_CODE = {
    ResponseCode.SUCCESS: 200,
    ResponseCode.ERROR: 500,
    ResponseCode.SERVER_TOO_BUSY: 503,
    ResponseCode.PROTOCOL_ERROR: 400,
    ResponseCode.OPERATION_NOT_SUPPORTED: 501,
    ResponseCode.HANDLE_NOT_FOUND: 404,
    ResponseCode.HANDLE_ALREADY_EXISTS: 409,
    ResponseCode.INVALID_HANDLE: 400,
    ResponseCode.VALUES_NOT_FOUND: 400,
    ResponseCode.VALUE_ALREADY_EXISTS: 409,
    ResponseCode.INVALID_VALUE: 400,
    ResponseCode.SERVER_NOT_RESPONSIBLE: 400,
    ResponseCode.PREFIX_REFERRAL: 300,
    ResponseCode.INVALID_ADMIN: 403,
    ResponseCode.INSUFFICIENT_PERMISSIONS: 403,
    ResponseCode.AUTHENTICATION_NEEDED: 401,
    ResponseCode.AUTHENTICATION_FAILED: 403,
}


def http_status_for(response_code: int, *, resolution: bool = False) -> int:
    """Return the HTTP status the REST API uses for ``response_code``.

    ``resolution`` marks the answer to a read: there "values not found" (an
    existing handle none of whose values pass the filter) is 200, elsewhere
    (removing absent values) 400. Unknown codes are 500: a code we cannot
    present is our fault, not the client's.
    """
    if resolution and response_code == ResponseCode.VALUES_NOT_FOUND:
        return 200
    return _HTTP_STATUS_BY_CODE.get(response_code, 500)


class IdnodeError(Exception):
    """Root of every idnode error.

    Attributes:
        response_code: the Handle response code this error answers with.
        http_status: HTTP status for the REST API; defaults to the mapping of
            ``response_code`` but a subclass may pin a more precise one
            (413, 415) where HTTP can say more than the Handle code.
        message: human-readable text naming the problem.
        handle: the handle concerned, when there is one.
        details: structured fields (position, limit, value index ...).
    """

    response_code: int = ResponseCode.ERROR
    http_status: int | None = None

    def __init__(self, message: str, *, handle: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.handle = handle
        self.details = details

    @property
    def status(self) -> int:
        """HTTP status to answer with."""
        if self.http_status is not None:
            return self.http_status
        return http_status_for(self.response_code)

    def to_json(self) -> dict[str, Any]:
        """The error body in Handle.Net REST shape.

        Key order follows the CNRI server: ``responseCode``, ``message``,
        then ``handle`` appended last when the request named one.
        """
        body: dict[str, Any] = {"responseCode": self.response_code, "message": self.message}
        if self.handle is not None:
            body["handle"] = self.handle
        return body


# --- the caller's fault ------------------------------------------------------


class RequestError(IdnodeError):
    """The request is malformed or not allowed; nothing was changed."""

    response_code = ResponseCode.PROTOCOL_ERROR
    http_status = None


class MalformedRequest(RequestError):
    """Body or parameters cannot be parsed (bad JSON, bad query value)."""


class OperationNotSupported(RequestError):
    """The node does not offer this operation (or not on this endpoint)."""

    response_code = ResponseCode.OPERATION_NOT_SUPPORTED


class RequestTooLarge(RequestError):
    """A body or line exceeds a named limit."""

    http_status = 413


class UnsupportedMediaType(RequestError):
    """The body is not in a content type the endpoint accepts."""

    http_status = 415


class InvalidHandle(RequestError):
    """Text that is not a valid handle, or names a handle we cannot accept.

    ``details`` may carry ``position`` (1-based, within the handle text),
    ``character`` and ``limit``.
    """

    response_code = ResponseCode.INVALID_HANDLE


class InvalidValue(RequestError):
    """A handle value that breaks the record model or a limit."""

    response_code = ResponseCode.INVALID_VALUE


class HandleNotFound(RequestError):
    """The handle does not exist on this node."""

    response_code = ResponseCode.HANDLE_NOT_FOUND


class HandleAlreadyExists(RequestError):
    """A create met an existing handle holding different values."""

    response_code = ResponseCode.HANDLE_ALREADY_EXISTS


class ValuesNotFound(RequestError):
    """The handle exists but holds no value matching the request."""

    response_code = ResponseCode.VALUES_NOT_FOUND


class ValueAlreadyExists(RequestError):
    """A value index that must be new is already taken."""

    response_code = ResponseCode.VALUE_ALREADY_EXISTS


class ServerNotResponsible(RequestError):
    """The handle's prefix does not live on this node."""

    response_code = ResponseCode.SERVER_NOT_RESPONSIBLE


class PrefixDisabled(RequestError):
    """The handle lies under a prefix its parent node has disabled: answered
    (instead of a referral) with response code 2 ERROR and HTTP 403."""

    response_code = ResponseCode.ERROR
    http_status = 403


class AuthenticationNeeded(RequestError):
    """A write came without credentials."""

    response_code = ResponseCode.AUTHENTICATION_NEEDED


class AuthenticationFailed(RequestError):
    """Credentials were given but do not prove the identity they name.

    Answered with 401 (as the Handle server's authentication filter does) so
    that clients ask for credentials again.
    """

    response_code = ResponseCode.AUTHENTICATION_FAILED
    http_status = 401


class InvalidAdmin(RequestError):
    """The identity is not an administrator of the handle or its prefix."""

    response_code = ResponseCode.INVALID_ADMIN


class InsufficientPermissions(RequestError):
    """The identity administers the handle but lacks this permission."""

    response_code = ResponseCode.INSUFFICIENT_PERMISSIONS


# --- this node's fault -------------------------------------------------------


class NodeError(IdnodeError):
    """This node could not complete a valid request (disk, bug, shutdown)."""

    response_code = ResponseCode.ERROR
    http_status = 500


class StorageError(NodeError):
    """The store failed; the change it was asked for did not happen."""

    http_status = 503


class ServerTooBusy(IdnodeError):
    """A bounded queue of this node is full (too much asked of it at once);
    the request may be repeated shortly. Shedding load is not a failure, so
    this is not a :class:`NodeError` and is not logged as one."""

    response_code = ResponseCode.SERVER_TOO_BUSY
    http_status = 503


# --- another node's fault ----------------------------------------------------


class UpstreamError(IdnodeError):
    """Another node answered with something we cannot use, or not at all."""

    response_code = ResponseCode.ERROR
    http_status = 502


class UpstreamUnavailable(UpstreamError):
    """No server that could answer did (refused, timed out, failed)."""

    http_status = 502


class BadUpstreamReply(UpstreamError):
    """A server answered with something malformed or hostile (not JSON, too
    large, about another handle, an unusable referral); never cached."""


class ReferralLoop(UpstreamError):
    """Referrals led back to a node already asked, or up the hierarchy."""


class ReferralDepthExceeded(UpstreamError):
    """More referrals than MAX_REFERRAL_DEPTH in one resolution."""


class ResolutionTimeout(UpstreamError):
    """The resolution's time budget ran out before an answer."""

    http_status = 504
