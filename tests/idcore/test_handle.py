"""Identifier syntax: every input form, normalisation, and errors that say what is wrong."""

import pytest

from idcore import limits
from idcore.errors import InvalidHandle
from idcore.handle import Handle, parse, prefix_ancestors, prefix_handle, prefix_record_key


@pytest.mark.parametrize(
    "text",
    [
        "88.118.2/PRD-2024-000123",
        "hdl:88.118.2/PRD-2024-000123",
        "HDL:88.118.2/PRD-2024-000123",
        "https://resolver.example.cn/88.118.2/PRD-2024-000123",
        "http://resolver.example.cn/88.118.2/PRD-2024-000123",
        "https://resolver.example.cn/88.118.2%2FPRD-2024-000123",
        "https://resolver.example.cn/88.118.2/PRD%2D2024%2D000123",
        "https://resolver.example.cn/api/handles/88.118.2/PRD-2024-000123",
        "https://resolver.example.cn/88.118.2/PRD-2024-000123?noredirect#top",
        "88.118.2/PRD-2024-000123\r\n",
        "  88.118.2/PRD-2024-000123 \n",
        "HTTPS://RESOLVER.EXAMPLE.CN/88.118.2/PRD-2024-000123\r",
        "HTTPS://RESOLVER.EXAMPLE.CN/API/HANDLES/88.118.2/PRD-2024-000123",
        # scanner framing: AIM symbology identifiers, STX/ETX, a byte-order
        # mark, an ideographic space from a Chinese input method, a tab
        "]Q188.118.2/PRD-2024-000123",
        "]Q1HTTPS://RESOLVER.EXAMPLE.CN/88.118.2/PRD-2024-000123\r\n",
        " ]Q3 hdl:88.118.2/PRD-2024-000123",
        "\x02hdl:88.118.2/PRD-2024-000123\x03",
        "\ufeff88.118.2/PRD-2024-000123",
        "\u300088.118.2/PRD-2024-000123\t",
    ],
)
def test_every_input_form_normalises_to_the_handle(text):
    handle = parse(text)
    assert handle.to_text() == "88.118.2/PRD-2024-000123"
    assert handle.prefix == "88.118.2"
    assert handle.suffix == "PRD-2024-000123"


def test_suffix_may_hold_slashes_and_unicode():
    handle = parse("https://r.example/88.118.2/%E6%89%B9%E6%AC%A1/2024/%E4%BA%A7%E5%93%81-1")
    assert handle.suffix == "批次/2024/产品-1"
    assert Handle.from_text("88.118.2/a/b/c").suffix == "a/b/c"


def test_prefix_compares_case_insensitively_suffix_does_not():
    assert Handle.from_text("88.abc/X") == Handle.from_text("88.ABC/X")
    assert Handle.from_text("88.abc/X").key == "88.ABC/X"
    assert Handle.from_text("88.1/x") != Handle.from_text("88.1/X")
    assert Handle.from_text("88.abc/X").prefix == "88.abc"  # as written


def test_prefix_handles_name_a_prefix_and_ignore_its_case():
    assert prefix_handle("88.abc").key == "0.NA/88.ABC"
    assert Handle.from_text("0.na/88.Abc").key == prefix_record_key("88.ABC")
    assert Handle.from_text("0.NA/88.118").is_prefix_handle
    assert not Handle.from_text("88.118/0.NA").is_prefix_handle
    with pytest.raises(InvalidHandle, match="must name a prefix"):
        Handle.from_text("0.NA/not a prefix")


@pytest.mark.parametrize(
    ("text", "fragment", "position"),
    [
        ("88.118.2 /PRD-1", "' ' (U+0020) at position 9", 9),
        ("88..2/X", "empty segment at position 4", 4),
        ("A8.118/X", "numeric national code", 1),
        ("88.1#8/X", "'#' (U+0023) at position 5", 5),
        ("88.118/PRD\x07-1", "U+0007", 11),
    ],
)
def test_errors_name_the_character_and_its_position(text, fragment, position):
    with pytest.raises(InvalidHandle) as caught:
        Handle.from_text(text)
    assert fragment in caught.value.message
    assert caught.value.details["position"] == position


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty input"),
        ("   \r\n", "empty input"),
        ("\x02\x03\r\n", "empty input"),
        ("]Q1\r\n", "empty input"),
        ("]Q1]Q188.1/x", "not allowed in a prefix|numeric national code"),
        ("88.118.2", "no '/'"),
        ("/PRD-1", "prefix is empty"),
        ("88.118.2/", "suffix is empty"),
        ("https://resolver.example/", "no handle in its path"),
        ("https://resolver.example", "no handle in its path"),
        ("https:///88.1/x", "no host"),
        ("https://r.example/88.1/%FF%FE", "not UTF-8"),
    ],
)
def test_malformed_inputs_are_refused_with_a_reason(text, fragment):
    with pytest.raises(InvalidHandle, match=fragment):
        parse(text)


def test_length_limits_are_named():
    long_prefix = "88." + "1." * 40 + "1"
    with pytest.raises(InvalidHandle) as caught:
        Handle.from_text(long_prefix + "/x")
    assert caught.value.details["limit"] == "MAX_PREFIX_LENGTH"

    suffix = "x" * (limits.MAX_HANDLE_LENGTH - len("88.1/") + 1)
    with pytest.raises(InvalidHandle) as caught:
        Handle.from_text("88.1/" + suffix)
    assert caught.value.details["limit"] == "MAX_HANDLE_LENGTH"
    assert len(Handle.from_text("88.1/" + suffix[:-1]).to_text()) == limits.MAX_HANDLE_LENGTH

    with pytest.raises(InvalidHandle) as caught:
        Handle.from_text(".".join(["8"] * (limits.MAX_PREFIX_SEGMENTS + 1)) + "/x")
    assert caught.value.details["limit"] == "MAX_PREFIX_SEGMENTS"

    with pytest.raises(InvalidHandle) as caught:
        Handle.from_text("88." + "9" * (limits.MAX_PREFIX_SEGMENT_LENGTH + 1) + "/x")
    assert caught.value.details["limit"] == "MAX_PREFIX_SEGMENT_LENGTH"


def test_non_text_is_refused():
    with pytest.raises(InvalidHandle, match="must be text"):
        parse(88)  # type: ignore[arg-type]


def test_handles_are_immutable():
    handle = Handle.from_text("88.1/x")
    with pytest.raises(AttributeError):
        handle.suffix = "y"  # type: ignore[misc]


def test_prefix_hierarchy_helpers():
    assert prefix_ancestors("88.118.2") == ["88.118.2", "88.118", "88"]
    assert prefix_ancestors("88") == ["88"]


@pytest.mark.parametrize(
    "text",
    [
        "https://example.cn/id/88.118.2/PRD-1",
        "HTTPS://EXAMPLE.CN/ID/88.118.2/PRD-1\r\n",
        "https://example.cn/id/api/handles/88.118.2/PRD-1",
        "https://example.cn/88.118.2/PRD-1",  # the same resolver at the root still parses
    ],
)
def test_a_resolver_below_the_root_of_its_host_is_read_past_its_path(text):
    assert parse(text, base_path="/id/").to_text() == "88.118.2/PRD-1"


def test_without_the_base_path_its_segment_is_not_a_prefix():
    with pytest.raises(InvalidHandle, match="numeric national code"):
        parse("https://example.cn/id/88.118.2/PRD-1")
