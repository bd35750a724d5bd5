"""The Handle.Net REST JSON codec: byte-exact output, every input format, checks."""

import base64

import orjson
import pytest

from idcore.errors import InvalidValue, MalformedRequest, ValueAlreadyExists
from idcore.rest_json import (
    dumps,
    filter_values_json,
    format_timestamp,
    parse_timestamp,
    value_from_json,
    value_to_json,
    values_from_json,
    values_from_put_body,
    values_to_json,
)
from idcore.site import Site
from idcore.values import AdminPermission, AdminRef, HandleValue, type_in_filter, type_is

TS = parse_timestamp("2015-06-18T16:45:51Z")


def test_record_encodes_byte_for_byte_like_the_handle_server():
    values = [
        HandleValue(1, "URL", b"https://example.org/", timestamp=TS),
        HandleValue(100, "HS_ADMIN", AdminRef("0.NA/20.500.123", 200, AdminPermission(0x7F3)), timestamp=TS),
    ]
    expected = (
        b'[{"index":1,"type":"URL","data":{"format":"string","value":"https://example.org/"},"ttl":86400,'
        b'"timestamp":"2015-06-18T16:45:51Z"},{"index":100,"type":"HS_ADMIN","data":{"format":"admin",'
        b'"value":{"handle":"0.NA/20.500.123","index":200,"permissions":"011111110011"}},"ttl":86400,'
        b'"timestamp":"2015-06-18T16:45:51Z"}]'
    )
    assert dumps(values_to_json(values)) == expected


def test_optional_members_appear_only_when_not_default():
    secret = HandleValue(300, "HS_SECKEY", b"s3cret", permissions="1100", timestamp=TS)
    assert list(value_to_json(secret)) == ["index", "type", "data", "permissions", "ttl", "timestamp"]
    plain = HandleValue(2, "EMAIL", b"a@b.c")
    assert list(value_to_json(plain)) == ["index", "type", "data", "ttl"]
    referencing = value_from_json(
        {"index": 3, "type": "DESC", "data": "x", "references": [{"handle": "88.1/y", "index": 1}]}
    )
    assert value_to_json(referencing)["references"] == [{"handle": "88.1/y", "index": 1}]


def test_binary_data_goes_out_as_base64_text_as_string():
    assert value_to_json(HandleValue(5, "BLOB", b"\x00\x01\xff"))["data"] == {"format": "base64", "value": "AAH/"}
    # 0x09..0x13 count as text for the Handle server (looksLikeBinary)
    assert value_to_json(HandleValue(5, "NOTE", b"a\tb\nc"))["data"]["format"] == "string"
    assert value_to_json(HandleValue(5, "NOTE", "产品".encode()))["data"] == {"format": "string", "value": "产品"}


def test_every_input_format_decodes():
    def data(obj):
        return value_from_json({"index": 7, "type": "X", "data": obj}).data

    assert data("plain") == b"plain"
    assert data({"format": "string", "value": "s"}) == b"s"
    assert data({"format": "BASE64", "value": base64.b64encode(b"\x00\x01").decode()}) == b"\x00\x01"
    assert data({"format": "hex", "value": "00ff"}) == b"\x00\xff"


def test_structured_formats_belong_to_their_types():
    admin = value_from_json(
        {"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": {"handle": "0.NA/88.1", "index": 300, "permissions": "011"}}}
    )
    assert admin.data == AdminRef("0.NA/88.1", 300, AdminPermission.ADD_HANDLE | AdminPermission.DELETE_HANDLE)
    vlist = value_from_json(
        {"index": 200, "type": "HS_VLIST", "data": {"format": "vlist", "value": [{"handle": "0.NA/88.1", "index": 300}]}}
    )
    assert vlist.data[0].handle == "0.NA/88.1"
    key = value_from_json({"index": 300, "type": "HS_PUBKEY", "data": {"format": "key", "value": {"kty": "RSA", "n": "u1", "e": "AQAB"}}})
    assert value_to_json(key)["data"] == {"format": "key", "value": {"kty": "RSA", "n": "u1", "e": "AQAB"}}
    with pytest.raises(InvalidValue, match="HS_ADMIN data must have format 'admin'"):
        value_from_json({"index": 100, "type": "HS_ADMIN", "data": "text"})
    with pytest.raises(InvalidValue, match="belong to their HS_ types"):
        value_from_json({"index": 1, "type": "URL", "data": {"format": "admin", "value": {}}})


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({"index": 0, "type": "URL", "data": "x"}, "must be an integer in 1.."),
        ({"index": "one", "type": "URL", "data": "x"}, "must be an integer"),
        ({"index": 1, "data": "x"}, "'type' must be text"),
        ({"index": 1, "type": "URL"}, "'data' is missing"),
        ({"index": 1, "type": "URL", "data": 5}, "'data' must be text or"),
        ({"index": 1, "type": "URL", "data": {"format": "base64", "value": "%%%"}}, "not valid base64"),
        ({"index": 1, "type": "URL", "data": {"format": "hex", "value": "0g"}}, "not valid hex"),
        ({"index": 1, "type": "URL", "data": {"format": "zip", "value": "x"}}, "format 'zip' is not one of"),
        ({"index": 1, "type": "URL", "data": "x", "ttl": -1}, "ttl -1"),
        ({"index": 1, "type": "URL", "data": "x", "ttl": "2030-01-01T00:00:00Z"}, "absolute TTLs"),
        ({"index": 1, "type": "URL", "data": "x", "permissions": "11"}, "four '0'/'1'"),
        ({"index": 1, "type": "URL", "data": "x", "timestamp": "yesterday"}, "YYYY-MM-DDTHH:MM:SSZ"),
        ({"index": 1, "type": "", "data": "x"}, "type must be printable"),
        ({"index": 1, "type": "URL", "data": {"format": "string", "value": "x" * 70000}}, "the limit is 65536"),
        ([1, 2], "must be an object"),
    ],
)
def test_bad_values_are_refused_naming_the_problem(value, fragment):
    with pytest.raises(InvalidValue, match=fragment):
        value_from_json(value)


def test_record_rules():
    with pytest.raises(ValueAlreadyExists, match="Index conflict for 1"):
        values_from_json([{"index": 1, "type": "A", "data": "x"}, {"index": 1, "type": "B", "data": "y"}])
    with pytest.raises(InvalidValue, match="limit is 1000"):
        values_from_json([{"index": i, "type": "A", "data": "x"} for i in range(1, 1002)])


def test_put_bodies_in_every_shape_handle_clients_send():
    one = {"index": 1, "type": "URL", "data": "https://x"}
    assert values_from_put_body({"values": [one], "handle": "88.1/x"})[1] == "88.1/x"
    assert len(values_from_put_body([one])[0]) == 1
    assert len(values_from_put_body(one)[0]) == 1
    with pytest.raises(MalformedRequest):
        values_from_put_body({"nothing": True})
    with pytest.raises(MalformedRequest):
        values_from_put_body("text")


def test_round_trip_keeps_everything():
    original = [
        {"index": 1, "type": "URL", "data": {"format": "string", "value": "https://e/1"}, "ttl": 600, "timestamp": "2024-01-02T03:04:05Z"},
        {"index": 300, "type": "HS_SECKEY", "data": {"format": "string", "value": "k"}, "permissions": "1100", "ttl": 86400},
        {"index": 9, "type": "BIN", "data": {"format": "base64", "value": "AAE="}, "ttl": 86400, "references": [{"handle": "88.1/r", "index": 2}]},
    ]
    assert values_to_json(values_from_json(original)) == original


def test_timestamps():
    assert format_timestamp(0) == "1970-01-01T00:00:00Z"
    assert parse_timestamp("2015-06-18T16:45:51Z") == 1434645951
    assert parse_timestamp("2015-06-18T16:45:51.123Z") == 1434645951


def test_dumps_escapes_line_separators_and_pretty_prints_like_gson():
    assert dumps({"v": "a\u2028b\u2029c/é"}) == '{"v":"a\\u2028b\\u2029c/é"}'.encode()
    assert dumps({"a": [1]}, pretty=True) == b'{\n  "a": [\n    1\n  ]\n}'


def test_type_rules():
    assert type_is("HS_SITE.PREFIX", "HS_SITE") and type_is("url", "URL")
    assert not type_is("URLX", "URL")
    assert type_in_filter("URL", ["URL."]) and type_in_filter("url.mobile", ["URL."])
    assert not type_in_filter("URL.mobile", ["URL"])
    assert type_in_filter("EMAIL", ["url", "email"])


def test_filter_is_the_union_of_types_and_indexes():
    values = [
        HandleValue(1, "URL", b"u"),
        HandleValue(2, "URL.mobile", b"m"),
        HandleValue(3, "EMAIL", b"e"),
    ]
    body = dumps(values_to_json(values))
    kept = lambda types, indexes: [v["index"] for v in orjson.loads(filter_values_json(body, types, indexes))]  # noqa: E731
    assert kept(["URL"], []) == [1]
    assert kept(["URL."], []) == [1, 2]
    assert kept(["URL"], [3]) == [1, 3]
    assert kept([], [2]) == [2]


def test_site_json_matches_the_rest_api_and_picks_servers_by_hash():
    site_json = {
        "version": 1,
        "protocolVersion": "2.10",
        "serialNumber": 3,
        "primarySite": True,
        "multiPrimary": False,
        "hashOption": 0,
        "attributes": [{"name": "desc", "value": "enterprise node"}],
        "servers": [
            {"serverId": i, "address": f"192.0.2.{i}", "publicKey": {"format": "base64", "value": ""},
             "interfaces": [{"query": True, "admin": True, "protocol": "HTTP", "port": 8000}]}
            for i in (1, 2, 3)
        ],
    }
    site = Site.from_json(site_json)
    assert site.to_json() == site_json
    # hashOption 2 (whole handle) is the default and is left out
    assert "hashOption" not in Site.from_json({**site_json, "hashOption": 2}).to_json()
    # by prefix: every handle of one prefix goes to one server, case-insensitively
    chosen = {site.server_for(f"88.118.2/P-{i}").server_id for i in range(50)}
    assert len(chosen) == 1
    assert site.server_for("88.118.2/x") == site.server_for("88.118.2/Y")
    whole = Site.from_json({**site_json, "hashOption": 2})
    assert len({whole.server_for(f"88.118.2/P-{i}").server_id for i in range(50)}) == 3
    with pytest.raises(InvalidValue, match="not an IPv4 or IPv6"):
        Site.from_json({**site_json, "servers": [{**site_json["servers"][0], "address": "node.example"}]})


def test_server_choice_follows_the_handle_rule():
    # MD5("88.118.2/ABC") = ...; the last four bytes as a signed big-endian
    # integer, made non-negative, modulo the server count.
    import hashlib

    site = Site.from_json(
        {"servers": [{"serverId": i, "address": "127.0.0.1", "interfaces": [{"protocol": "HTTP", "port": 1}]} for i in range(7)]}
    )
    digest = hashlib.md5(b"88.118.2/ABC").digest()
    expected = abs(int.from_bytes(digest[12:], "big", signed=True)) % 7
    assert site.server_for("88.118.2/abc").server_id == expected


def test_numeric_strings_are_read_as_handle_servers_read_them():
    # pyhandle sends HS_ADMIN indexes as strings; the Handle server accepts them
    value = value_from_json(
        {"index": "100", "type": "HS_ADMIN", "ttl": "600", "data": {"format": "admin", "value": {"handle": "0.NA/88.1", "index": "200", "permissions": "011111110011"}}}
    )
    assert (value.index, value.ttl, value.data.index) == (100, 600, 200)
    with pytest.raises(InvalidValue):
        value_from_json({"index": "1.5", "type": "URL", "data": "u"})
    with pytest.raises(InvalidValue):
        value_from_json({"index": True, "type": "URL", "data": "u"})
