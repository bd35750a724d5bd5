"""The compact stored form keeps everything and serves the REST JSON exactly."""

from idcore.rest_json import dumps, values_from_json, values_to_json
from registry.records import StoredRecord, encode_record

VALUES = [
    {"index": 1, "type": "URL", "data": {"format": "string", "value": "https://e/1"}, "ttl": 86400, "timestamp": "2024-01-02T03:04:05Z"},
    {"index": 2, "type": "BLOB", "data": {"format": "base64", "value": "AAH/"}, "ttl": 600, "timestamp": "2024-01-02T03:04:05Z"},
    {"index": 3, "type": "NOTE", "data": {"format": "string", "value": "产品 a\u2028b"}, "permissions": "1100", "ttl": 86400,
     "timestamp": "2023-05-06T07:08:09Z", "references": [{"handle": "88.1/x", "index": 2}]},
    {"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": {"handle": "0.NA/88.1", "index": 300, "permissions": "011111110011"}},
     "ttl": 86400, "timestamp": "2024-01-02T03:04:05Z"},
    {"index": 200, "type": "HS_VLIST", "data": {"format": "vlist", "value": [{"handle": "0.NA/88.1", "index": 300}]}, "ttl": 86400},
    {"index": 5, "type": "HS_SITE", "data": {"format": "site", "value": {"version": 1, "protocolVersion": "2.10", "serialNumber": 1,
     "primarySite": True, "multiPrimary": False, "attributes": [], "servers": [{"serverId": 1, "address": "127.0.0.1",
     "publicKey": {"format": "base64", "value": ""}, "interfaces": [{"query": True, "admin": False, "protocol": "HTTP", "port": 8000}]}]}},
     "ttl": 86400, "timestamp": "2024-01-02T03:04:05Z"},
    {"index": 6, "type": "HS_PUBKEY", "data": {"format": "key", "value": {"kty": "RSA", "n": "u1", "e": "AQAB"}}, "ttl": 86400},
]


def test_stored_form_serves_exactly_the_rest_json():
    values = values_from_json(VALUES)
    record = encode_record("88.1/x", values)
    assert record.values_json == dumps(values_to_json(values))
    assert record.values() == values
    reopened = StoredRecord("88.1/x", record.blob)  # as read back from the database
    assert reopened.values() == values and reopened == record


def test_public_view_leaves_out_private_values():
    record = encode_record("88.1/x", values_from_json(VALUES))
    assert record.has_private_values
    assert b'"NOTE"' not in record.public_values_json and b'"NOTE"' in record.values_json
    plain = encode_record("88.1/y", values_from_json(VALUES[:2]))
    assert not plain.has_private_values and plain.public_values_json is plain.values_json


def test_stored_form_is_compact():
    values = values_from_json(VALUES[:4])
    record = encode_record("88.1/x", values)
    assert len(record.blob) < len(record.values_json) * 0.6


def test_public_answer_is_kept_per_asked_name():
    record = encode_record("88.1/x", values_from_json(VALUES[:1]))
    answer = record.public_answer("88.1/x")
    assert answer.startswith(b'{"responseCode":1,"handle":"88.1/x","values":[')
    assert record.public_answer("88.1/x") is answer
    assert record.public_answer("88.1/X").startswith(b'{"responseCode":1,"handle":"88.1/X"')
