"""Go-style durations: parse_duration and format_duration."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from shadow_operator.api.durations import DURATION_PATTERN, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1h30m", 5400),
        ("500ms", 0.5),
        ("10m", 600),
        ("168h", 604800),
        ("2s", 2),
        ("1.5h", 5400),
        ("1m30s", 90),
        ("1h1ms", 3600.001),
        ("0s", 0),
        ("30m1h", 5400),  # Go accepts units in any order; so does the pattern
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)


def test_milliseconds_are_not_minutes():
    assert parse_duration("5ms") == timedelta(milliseconds=5)
    assert parse_duration("5m") == timedelta(minutes=5)


@pytest.mark.parametrize("text", ["1d", "", "10 minutes", "10", "m", "1h 30m", "-5m", "1H", "1w", "1us", ".5h"])
def test_parse_duration_refuses(text):
    with pytest.raises(ValueError, match=r"is not a duration: use a number and a unit ms, s, m or h"):
        parse_duration(text)


def test_parse_duration_names_the_text():
    with pytest.raises(ValueError, match=r"^'10 minutes' is not a duration"):
        parse_duration("10 minutes")


def test_parse_duration_refuses_none():
    with pytest.raises(ValueError):
        parse_duration(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(seconds=45), "45s"),
        (timedelta(minutes=10), "10m"),
        (timedelta(hours=3, minutes=5), "3h5m"),
        (timedelta(hours=1, seconds=1), "1h1s"),
        (timedelta(hours=168), "168h"),
        (timedelta(days=2, minutes=1), "48h1m"),
        (timedelta(hours=43, minutes=40, seconds=48), "43h40m48s"),
        (timedelta(seconds=59.9), "59s"),  # whole seconds: the fraction is dropped
    ],
)
def test_format_duration(value, text):
    assert format_duration(value) == text


@pytest.mark.parametrize("text", ["1h30m", "168h", "45s", "3h5m7s", "10m"])
def test_format_parses_back(text):
    assert format_duration(parse_duration(text)) == text


def test_formatted_durations_match_the_crd_pattern():
    for seconds in (0, 1, 59, 60, 61, 3599, 3600, 3661, 604800):
        assert re.fullmatch(DURATION_PATTERN, format_duration(timedelta(seconds=seconds)))
