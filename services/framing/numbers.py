"""Numbers from the network: ASCII digits only, a length limit, a maximum. Shared by lessons.

Why not ``if text.isdigit(): n = int(text)``? Because ``str.isdigit()`` says yes to far more
than 0-9: ``"²"`` and ``"³"`` (superscripts) are digits to it, yet ``int("²")`` raises
ValueError, and an exception nobody expected closes the connection without a word. And
``int()`` happily reads 5000 nines, which costs time (CPython refuses more than 4300 digits
with another ValueError). So: check the characters ourselves, check the length *before*
converting, then check the value.
"""
from __future__ import annotations

ASCII_DIGITS = frozenset("0123456789")


class NumberError(ValueError):
    """The text is not a whole number in range; the message says what was expected."""


def parse_count(text: str, limit: int) -> int:
    """Return ``int(text)`` if text is 1+ ASCII digits worth at most ``limit``, else NumberError.

    The length limit is the number of digits of ``limit`` (plus a few leading zeros), so no
    huge string is ever handed to ``int()``.
    """
    shown = text if len(text) <= 20 else text[:20] + "..."
    expected = f"expected a whole number from 0 to {limit} (digits 0-9 only), got {shown!r}"
    if not text or len(text) > len(str(limit)) + 3 or not set(text) <= ASCII_DIGITS:
        raise NumberError(expected)
    n = int(text)
    if n > limit:
        raise NumberError(f"{n} is too large (at most {limit})")
    return n
