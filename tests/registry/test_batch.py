"""Batch lines: parsing never raises, every line gets a result, retries succeed."""

import orjson
import pytest

from idcore.errors import MalformedRequest
from idcore.values import ValueReference
from registry.batch import BatchLineError, BatchOp, parse_line

ADMIN = ValueReference("0.NA/88.118.2", 300)


def line(**obj):
    return orjson.dumps(obj)


@pytest.mark.parametrize(
    ("raw", "code", "fragment"),
    [
        (b"{nope", 4, "not valid JSON"),
        (b"[1,2]", 4, "JSON object"),
        (line(values=[]), 4, "'handle' string"),
        (line(op="merge", handle="88.118.2/x", values=[]), 4, "'op' must be one of"),
        (line(handle="88.118.2 /x", values=[]), 102, "position 9"),
        (line(handle="88.118.2/x"), 4, "needs 'values'"),
        (line(handle="88.118.2/x", values=[{"index": -1, "type": "URL", "data": "u"}]), 202, "index -1"),
        (line(op="delete", handle="88.118.2/x", index=["a"]), 4, "non-empty list of value indexes"),
    ],
)
def test_bad_lines_become_errors(raw, code, fragment):
    parsed = parse_line(7, raw)
    assert isinstance(parsed, BatchLineError)
    assert parsed.line == 7 and parsed.error.response_code == code and fragment in parsed.error.message


def test_op_defaults_to_create_and_hdl_forms_are_normalised():
    parsed = parse_line(1, line(handle="hdl:88.118.2/x", values=[{"index": 1, "type": "URL", "data": "u"}]))
    assert isinstance(parsed, BatchOp) and parsed.op == "create" and parsed.handle.to_text() == "88.118.2/x"


async def test_a_chunk_mixes_results_in_input_order(registry):
    value = [{"index": 1, "type": "URL", "data": "u"}]
    items = [
        parse_line(1, line(handle="88.118.2/a", values=value)),
        parse_line(2, line(handle="88.118.2/a", values=value)),  # retried line: unchanged
        parse_line(3, line(handle="88.118.2/a", values=[{"index": 1, "type": "URL", "data": "other"}])),
        parse_line(4, b"garbage"),
        parse_line(5, line(op="update", handle="88.118.2/a", values=[{"index": 2, "type": "EMAIL", "data": "e"}])),
        parse_line(6, line(op="put", handle="88.118.2/b", values=value)),
        parse_line(7, line(op="delete", handle="88.118.2/b")),
        parse_line(8, line(op="delete", handle="88.118.2/b")),
        parse_line(9, line(op="delete", handle="88.118.2/a", index=[2])),
        parse_line(10, line(handle="88.7/z", values=value)),
    ]
    results = await registry.apply_batch(items, ADMIN)
    assert [r["line"] for r in results] == list(range(1, 11))
    assert [(r["responseCode"], r.get("status")) for r in results] == [
        (1, "created"), (1, "unchanged"), (101, None), (4, None), (1, "updated"),
        (1, "created"), (1, "deleted"), (100, None), (1, "updated"), (301, None),
    ]
    assert await registry.store.get("88.118.2/b") is None


async def test_a_batch_without_identity_writes_nothing(registry):
    before = len(await registry.store.journal())
    results = await registry.apply_batch([parse_line(1, line(handle="88.118.2/a", values=[]))], None)
    assert results[0]["responseCode"] == 402
    assert len(await registry.store.journal()) == before


def test_malformed_request_is_the_protocol_error_code():
    assert MalformedRequest("x").response_code == 4


@pytest.mark.parametrize(
    "value",
    [
        {"index": "--1", "type": "URL", "data": "u"},
        {"index": "9" * 5000, "type": "URL", "data": "u"},
        {"index": 1, "type": "URL", "data": "u", "timestamp": "2024-13-01T00:00:00Z"},
        {"index": 1, "type": "URL", "data": "u", "timestamp": "0000-01-01T00:00:00Z"},
        {"index": 1, "type": "URL", "data": {"format": "base64", "value": "产品"}},
    ],
)
def test_lines_that_trip_a_parser_are_errors_not_crashes(value):
    parsed = parse_line(3, line(handle="88.118.2/x", values=[value]))
    assert isinstance(parsed, BatchLineError)
    assert parsed.error.response_code in (4, 202)


@pytest.mark.parametrize("index", [[], 0, None, "", False, [0], ["2"]])
def test_a_delete_with_a_bad_index_list_deletes_nothing(index):
    parsed = parse_line(1, line(op="delete", handle="88.118.2/x", index=index))
    assert isinstance(parsed, BatchLineError) and "non-empty list" in parsed.error.message
