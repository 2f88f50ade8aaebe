"""The pieces every grammar is built of: ``Pattern`` (one regex for the check and for
JSON Schema), ``GrammarError`` (a stable code and a message) and number ranges written as
regexes, for the schema, which cannot compare numbers inside text.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from pockestrator.specs.errors import ErrorCode


class Pattern:
    """One regular expression, written once, for the grammar's check and for JSON Schema.

    ``regex`` is the compiled check; ``json`` is the same text anchored as JSON Schema's
    ``pattern`` wants it (``^(?:...)$``: a JSON Schema pattern matches anywhere, a check
    here matches the whole value). The API's strict bodies and the OpenAPI document state
    ``json`` (through the spec's types), so what clients are told is what is checked.
    Keep the text within what ECMA-262, Python's ``re`` and pydantic's Rust regex read
    alike: classes, groups, counted repeats and four-digit Unicode escapes; no
    look-arounds, no back-references.
    """

    __slots__ = ("json", "regex", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.regex = re.compile(text, re.ASCII)
        self.json = f"^(?:{text})$"

    def fullmatch(self, value: str) -> re.Match[str] | None:
        return self.regex.fullmatch(value)

    def __repr__(self) -> str:
        return f"Pattern({self.text!r})"


def _digit_class(low: int, high: int) -> str:
    return str(low) if low == high else f"[{low}-{high}]"


def _any_digits(count: int) -> str:
    return "" if count == 0 else "[0-9]" if count == 1 else f"[0-9]{{{count}}}"


def _same_length_range(low: str, high: str) -> str:
    """A regex for the numbers from ``low`` to ``high``, both written with as many digits."""
    if low == high:
        return low
    rest = len(low) - 1
    if low[0] == high[0]:
        return low[0] + _same_length_range(low[1:], high[1:])
    first, last = int(low[0]), int(high[0])
    parts = []
    if low[1:] != "0" * rest:  # the first digit's numbers that are not all of them
        parts.append(low[0] + _same_length_range(low[1:], "9" * rest))
        first += 1
    whole_last = high[1:] == "9" * rest
    top = last if whole_last else last - 1
    if first <= top:
        parts.append(_digit_class(first, top) + _any_digits(rest))
    if not whole_last:
        parts.append(high[0] + _same_length_range("0" * rest, high[1:]))
    return parts[0] if len(parts) == 1 else "(?:" + "|".join(parts) + ")"


def decimal_range(low: int, high: int, *, digits: int | None = None) -> str:
    """A regex for the whole numbers from ``low`` (at least 1) to ``high``, in decimal.

    With ``digits``, leading zeros are allowed up to that many digits in all (``0512`` in
    four); without, none is. For JSON Schema, which cannot compare numbers inside text.
    """
    alternatives = []
    for length in range(len(str(low)), len(str(high)) + 1):
        if digits is not None and length > digits:
            break
        first, last = max(low, 10 ** (length - 1)), min(high, 10**length - 1)
        padding = (digits or length) - length
        zeros = f"0{{0,{padding}}}" if padding > 1 else "0?" if padding == 1 else ""
        alternatives.append(zeros + _same_length_range(str(first), str(last)))
    return "(?:" + "|".join(alternatives) + ")"


class GrammarError(ValueError):
    """A value does not fit its grammar; ``code`` is the stable error code."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def value_once_parsed(parse: Callable[[str], object]) -> Callable[[str], str]:
    """The check of a value that ``parse`` reads (refusing it with ``GrammarError``): the
    value itself, unchanged, once it parses."""

    def check(value: str) -> str:
        parse(value)
        return value

    return check


def check_pattern(
    value: str, pattern: Pattern, code: ErrorCode, message: str, *, longest: int | None = None
) -> str:
    """``value`` when ``pattern`` matches it whole (and it has at most ``longest``
    characters, checked first: no regex runs over an overlong value), else
    ``GrammarError(code, message)``."""
    if (longest is not None and len(value) > longest) or not pattern.fullmatch(value):
        raise GrammarError(code, message)
    return value
