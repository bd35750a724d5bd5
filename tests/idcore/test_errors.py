"""One error hierarchy, mapped to Handle response codes and HTTP statuses in one place."""

import pytest

from idcore import errors
from idcore.errors import ResponseCode, http_status_for


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (1, 200), (2, 500), (100, 404), (101, 409), (102, 400), (200, 400), (201, 409), (202, 400),
        (301, 400), (303, 300), (400, 403), (401, 403), (402, 401), (403, 403), (4, 400), (999, 500),
    ],
)
def test_response_codes_map_to_http_as_the_handle_rest_api_does(code, status):
    assert http_status_for(code) == status


def test_values_not_found_is_a_successful_lookup():
    assert http_status_for(ResponseCode.VALUES_NOT_FOUND, resolution=True) == 200


@pytest.mark.parametrize(
    ("cls", "code", "status"),
    [
        (errors.InvalidHandle, 102, 400),
        (errors.InvalidValue, 202, 400),
        (errors.HandleNotFound, 100, 404),
        (errors.HandleAlreadyExists, 101, 409),
        (errors.ValueAlreadyExists, 201, 409),
        (errors.ValuesNotFound, 200, 400),
        (errors.ServerNotResponsible, 301, 400),
        (errors.InvalidAdmin, 400, 403),
        (errors.InsufficientPermissions, 401, 403),
        (errors.AuthenticationNeeded, 402, 401),
        (errors.AuthenticationFailed, 403, 401),
        (errors.MalformedRequest, 4, 400),
        (errors.RequestTooLarge, 4, 413),
        (errors.UnsupportedMediaType, 4, 415),
        (errors.StorageError, 2, 503),
        (errors.ServerTooBusy, 3, 503),
    ],
)
def test_each_error_carries_its_code_and_status(cls, code, status):
    error = cls("what went wrong", handle="88.1/x", position=3)
    assert isinstance(error, errors.IdnodeError)
    assert (error.response_code, error.status) == (code, status)
    assert error.details == {"position": 3}
    assert list(error.to_json()) == ["responseCode", "message", "handle"]
    assert error.to_json()["message"] == "what went wrong"


def test_errors_split_by_fault():
    assert issubclass(errors.InvalidHandle, errors.RequestError)
    assert issubclass(errors.StorageError, errors.NodeError)
    assert not issubclass(errors.NodeError, errors.RequestError)
    assert issubclass(errors.UpstreamError, errors.IdnodeError)
