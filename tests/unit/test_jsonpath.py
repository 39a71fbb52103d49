"""The JSONPath subset: child and index steps, errors that say where, MISSING for anything absent."""

from __future__ import annotations

import pytest

from shadow_operator.contract.jsonpath import MISSING, JsonPathError, compile_path, extract


@pytest.mark.parametrize(
    ("path", "steps"),
    [
        ("$", ()),
        ("$.a.b", ("a", "b")),
        ("$.features.purchase_count", ("features", "purchase_count")),
        ("$.items[0]", ("items", 0)),
        ("$.items[-1]", ("items", -1)),
        ("$[0][12]", (0, 12)),
        ("$['key with space']", ("key with space",)),
        ('$["x"].y', ("x", "y")),
        ("$['it\\'s']", ("it's",)),
        ("$['a.b']['c']", ("a.b", "c")),
        ("$.x-request-id", ("x-request-id",)),
        ("$._private", ("_private",)),
    ],
)
def test_compile_path(path, steps):
    assert compile_path(path) == steps


def test_index_steps_are_ints_and_quoted_steps_are_strings():
    assert compile_path("$['0'][0]") == ("0", 0)
    assert [type(step) for step in compile_path("$['0'][0]")] == [str, int]


@pytest.mark.parametrize(
    ("path", "position", "rest"),
    [
        ("$.a[*]", 4, "'[*]'"),
        ("$..a", 2, "'..a'"),
        ("$.", 2, "'.'"),
        ("$.a.", 4, "'.'"),
        ("$.a[?(@.b)]", 4, "'[?(@.b)]'"),
        ("$.1abc", 2, "'.1abc'"),
        ("$a", 2, "'a'"),
        ("$['unterminated]", 2, '"[\'unterminated]"'),
    ],
)
def test_unreadable_paths_name_the_character(path, position, rest):
    with pytest.raises(JsonPathError) as caught:
        compile_path(path)
    message = str(caught.value)
    assert f"cannot be read at character {position} ({rest})" in message
    assert "wildcards and filters are not supported" in message


@pytest.mark.parametrize("path", ["a.b", "", ".a", "features.x"])
def test_paths_must_start_with_dollar(path):
    with pytest.raises(JsonPathError, match=r"must start with '\$'"):
        compile_path(path)


def test_non_string_path_is_refused():
    with pytest.raises(JsonPathError):
        compile_path(None)  # type: ignore[arg-type]


def test_json_path_error_is_a_value_error():
    assert issubclass(JsonPathError, ValueError)


DOCUMENT = {
    "prediction": 0.73,
    "features": {"purchase_count": 0, "last_seen_days": None, "tags": ["new", "mobile"]},
    "items": [{"id": "a"}, {"id": "b"}],
    "key with space": True,
}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("$", DOCUMENT),
        ("$.prediction", 0.73),
        ("$.features.purchase_count", 0),
        ("$.features.last_seen_days", None),
        ("$.features.tags[1]", "mobile"),
        ("$.features.tags[-1]", "mobile"),
        ("$.features.tags[-2]", "new"),
        ("$.items[0].id", "a"),
        ("$['key with space']", True),
    ],
)
def test_extract_returns_the_value(path, value):
    assert extract(DOCUMENT, compile_path(path)) == value


@pytest.mark.parametrize(
    "path",
    [
        "$.absent",
        "$.features.absent",
        "$.prediction.value",  # a number has no fields
        "$.features[0]",  # a map has no index
        "$.items.id",  # a list has no fields
        "$.features.tags[2]",
        "$.features.tags[-3]",
        "$.features.last_seen_days.x",  # null has no fields
        "$.features.tags[0][0]",  # a string is not a list
    ],
)
def test_extract_returns_missing(path):
    assert extract(DOCUMENT, compile_path(path)) is MISSING


def test_missing_is_distinct_from_null_and_falsy_values():
    assert extract({"a": None}, ("a",)) is None
    assert extract({"a": 0}, ("a",)) == 0
    assert extract({}, ("a",)) is MISSING
    assert MISSING is not None


def test_extract_on_non_document():
    assert extract("text", ("a",)) is MISSING
    assert extract(None, (0,)) is MISSING
    assert extract([1, 2], ()) == [1, 2]
