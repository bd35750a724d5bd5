"""Applications for a child prefix: credit codes, industry codes, contacts, sites."""

from __future__ import annotations

import pytest

from idcore.errors import InvalidValue
from registry.applicant import (
    CREDIT_CODE_CHARSET,
    Application,
    check_credit_code,
    check_industry_code,
    credit_code_check_character,
)
from registry.node_setup import site_for

#: Published codes: the GB 32100-2015 example, and two registered companies.
VALID_CODES = ("91350100M000100Y43", "91110108551385082Q", "913100007109339520")


def application_json(**changes):
    body = {
        "prefix": "88.118.9",
        "organisation": {
            "name": "示例智能装备有限公司",
            "creditCode": "91350100M000100Y43",
            "address": "江苏省苏州市工业园区星湖街 1 号",
            "industryCode": "C3421",
        },
        "contact": {"name": "张三", "phone": "+86 512-6666 8888", "email": "zhang@example.com"},
        "site": site_for("127.0.0.1", 8123).to_json(),
    }
    body.update(changes)
    return body


def test_charset_has_31_characters_without_i_o_s_v_z():
    assert len(CREDIT_CODE_CHARSET) == 31
    assert not set("IOSVZ") & set(CREDIT_CODE_CHARSET)


@pytest.mark.parametrize("code", VALID_CODES)
def test_published_codes_are_valid(code):
    assert check_credit_code(code) == code
    assert check_credit_code(code.lower()) == code


def test_check_character_zero_when_the_sum_is_a_multiple_of_31():
    # 31 - 0 = 31 wraps to "0"
    assert credit_code_check_character("0" * 17) == "0"


@pytest.mark.parametrize(
    ("code", "says"),
    [
        ("91350100M000100Y44", "check character"),  # one flipped check character
        ("91350100M000100Y4", "17 characters"),
        ("91350100I000100Y43", "position 9"),  # I is not in the charset
        ("91350100S000100Y43", "not allowed"),
        ("911100001000013934", "'L' expected"),
    ],
)
def test_bad_codes_are_refused_naming_the_field(code, says):
    with pytest.raises(InvalidValue, match=says) as caught:
        check_credit_code(code)
    assert "creditCode" in caught.value.message


def test_a_single_substitution_is_always_caught():
    code = VALID_CODES[1]
    for position in range(17):
        for char in CREDIT_CODE_CHARSET:
            if char != code[position]:
                with pytest.raises(InvalidValue):
                    check_credit_code(code[:position] + char + code[position + 1:])


@pytest.mark.parametrize("code", ["C", "C34", "C342", "C3421", "i6510"])
def test_industry_codes(code):
    assert check_industry_code(code) == code.upper()


@pytest.mark.parametrize("code", ["", "Z11", "C3", "C34211", "34", "CC34"])
def test_bad_industry_codes(code):
    with pytest.raises(InvalidValue, match="industryCode"):
        check_industry_code(code)


def test_application_round_trips():
    application = Application.from_json(application_json())
    assert application.site.servers[0].interfaces[0].port == 8123
    assert Application.from_json(application.to_json()) == application


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"prefix": "88.118 9"}, "prefix"),
        ({"prefix": None}, "prefix"),
        ({"site": {"servers": []}}, "site"),
        ({"contact": {"name": "x", "phone": "call me", "email": "a@b.cn"}}, "contact.phone"),
        ({"contact": {"name": "x", "phone": "13800138000", "email": "nobody"}}, "contact.email"),
        ({"contact": {"phone": "13800138000", "email": "a@b.cn"}}, "contact.name"),
        ({"organisation": None}, "organisation"),
        ({"publicKey": {"n": "x"}}, "publicKey"),
    ],
)
def test_malformed_applications_name_the_field(changes, field):
    with pytest.raises(InvalidValue) as caught:
        Application.from_json(application_json(**changes))
    assert caught.value.message.startswith(field)
