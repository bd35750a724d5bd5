"""An existing Handle.Net REST client (EUDAT's pyhandle) reads and writes
this node as it would a Handle.Net server."""

from __future__ import annotations

import asyncio

import pytest

from scripts.node_process import NodeProcess, run_cli

pyhandle = pytest.importorskip("pyhandle.handleclient", reason="pyhandle comes with the test extra")

SECRET = "compat-secret"


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    data = tmp_path_factory.mktemp("compat-node")
    assert run_cli("init", "--data", str(data), "--prefix", "88.118.2", "--secret", SECRET).returncode == 0
    with NodeProcess(data) as process:
        yield process


def make_client(node):
    return pyhandle.PyHandleClient("rest").instantiate_with_username_and_password(
        node.url, "300:0.NA/88.118.2", SECRET, HTTPS_verify=False
    )


def test_register_read_modify_delete_with_pyhandle(node):
    client = make_client(node)
    handle = client.register_handle("88.118.2/COMPAT-1", "https://example.com/c/1", PRODUCT_NAME="减速机", BATCH="B-7")
    assert handle == "88.118.2/COMPAT-1"
    assert client.get_value_from_handle(handle, "URL") == "https://example.com/c/1"
    assert client.get_value_from_handle(handle, "PRODUCT_NAME") == "减速机"
    record = client.retrieve_handle_record_json(handle)
    assert record["responseCode"] == 1 and record["handle"] == handle
    client.modify_handle_value(handle, BATCH="B-8")
    assert client.get_value_from_handle(handle, "BATCH") == "B-8"
    client.delete_handle_value(handle, "BATCH")
    assert client.get_value_from_handle(handle, "BATCH") is None
    client.delete_handle(handle)
    assert client.retrieve_handle_record_json(handle) is None


def test_pyhandle_sees_existing_handles_as_existing(node):
    client = make_client(node)
    client.register_handle("88.118.2/COMPAT-2", "https://example.com/c/2")
    from pyhandle.handleexceptions import HandleAlreadyExistsException

    with pytest.raises(HandleAlreadyExistsException):
        client.register_handle("88.118.2/COMPAT-2", "https://example.com/c/2b")
    generated = client.generate_and_register_handle("88.118.2", "https://example.com/c/3")
    assert generated.startswith("88.118.2/")
    assert client.get_value_from_handle(generated, "URL") == "https://example.com/c/3"


def test_wrong_password_is_refused(node):
    from pyhandle.handleexceptions import HandleAuthenticationError

    client = pyhandle.PyHandleClient("rest").instantiate_with_username_and_password(
        node.url, "300:0.NA/88.118.2", "wrong", HTTPS_verify=False
    )
    with pytest.raises(HandleAuthenticationError):
        client.register_handle("88.118.2/COMPAT-X", "https://example.com/x")
    assert make_client(node).retrieve_handle_record_json("88.118.2/COMPAT-X") is None


def test_module_runs_without_an_event_loop():
    # pyhandle is synchronous; these tests must not run inside a loop.
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()
