"""framing/numbers.py: the one number parser of the framing and sticky lessons."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from framing.numbers import NumberError, parse_count

LIMIT = 16 * 2**20


@given(st.integers(0, LIMIT))
def test_every_number_in_range_round_trips(n):
    assert parse_count(str(n), LIMIT) == n


@given(st.integers(LIMIT + 1, 10**30))
def test_numbers_above_the_limit_are_refused(n):
    with pytest.raises(NumberError, match="too large|whole number"):
        parse_count(str(n), LIMIT)


@given(st.text(max_size=30))
def test_any_text_is_a_number_in_range_or_a_number_error(text):
    try:
        n = parse_count(text, LIMIT)
    except NumberError as exc:
        assert str(exc)                                         # never another exception
    else:
        assert set(text) <= set("0123456789") and 0 <= n <= LIMIT


@given(st.text(st.characters(categories=["Nd", "No"], exclude_characters="0123456789"), min_size=1))
def test_unicode_digits_are_not_ascii_digits(text):
    with pytest.raises(NumberError):
        parse_count(text, LIMIT)


@pytest.mark.parametrize("text", ["²", "³", "١٢", "９", "-1", "+1", " 5", "5 ", "1e3", "0x10", "1_000",
                                  "", "9" * 5000, "0" * 100 + "1"])
def test_known_traps(text):
    with pytest.raises(NumberError) as info:
        parse_count(text, LIMIT)
    assert len(str(info.value)) < 200                           # a long input is not echoed whole


def test_leading_zeros_and_limits():
    assert parse_count("0", LIMIT) == 0 and parse_count("007", 10) == 7
    assert parse_count(str(LIMIT), LIMIT) == LIMIT
    with pytest.raises(NumberError, match="at most 10"):
        parse_count("11", 10)
