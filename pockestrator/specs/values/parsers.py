"""How a value type of a spec is made: parsers that keep the grammar's stable code and
take what YAML writes, and the markers the API's derived shapes read (``InSchema``: what
the parser enforces, stated for JSON Schema; ``InApi`` and ``Derived``: which shapes carry
a field).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BeforeValidator, Field, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError

from pockestrator.specs import grammar
from pockestrator.specs.errors import ErrorCode
from pockestrator.specs.grammar import GrammarError

# Every bounded whole number of a spec fits in six digits; longer digit strings are out of
# range without being converted (int() of a megabyte of digits is slow).
_NUMBER_DIGITS_MAX = 6
_OUT_OF_EVERY_RANGE: int = 10**_NUMBER_DIGITS_MAX


def grammar_validator(check: Any) -> Any:
    """Wrap a grammar check as a pydantic validator that keeps the stable code."""

    def validate(value: Any) -> Any:
        if not isinstance(value, str):
            raise PydanticCustomError(str(ErrorCode.INVALID_TYPE), "must be a string")
        try:
            return check(value)
        except GrammarError as exc:
            raise PydanticCustomError(str(exc.code), exc.message) from None

    return validate


def _whole_number(value: Any) -> int | None:
    """An int, or text of ASCII digits read as one (YAML users quote numbers); else None.

    Booleans are not numbers here, although Python says so. Digit strings of any length are
    numbers; one with more than six significant digits stands as a number beyond every
    range of a spec, without being converted.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        significant = value.lstrip("0")
        if len(significant) > _NUMBER_DIGITS_MAX:
            return _OUT_OF_EVERY_RANGE
        return int(significant or "0")
    return None


def _bounded_number(
    field: str, low: int, high: int, unit: str = "", code: ErrorCode = ErrorCode.INVALID_FLAG_VALUE
) -> Any:
    """A whole number: every bad value, wrong kind or out of bounds, gets the field's code."""

    def validate(value: Any) -> Any:
        number = _whole_number(value)
        if number is None:
            raise PydanticCustomError(
                str(code),
                f"{field} must be a whole number (not true/false, a fraction or a word)",
            )
        if not low <= number <= high:
            raise PydanticCustomError(str(code), f"{field} must be from {low} to {high}{unit}")
        return number

    return validate


def whole_number(
    field: str, low: int, high: int, unit: str = "", code: ErrorCode = ErrorCode.INVALID_FLAG_VALUE
) -> tuple[Any, Any]:
    """A bounded whole number's ``Annotated`` parts: its bounds written once, for the schema
    and for the parser (which refuses with ``code``)."""
    return Field(ge=low, le=high), BeforeValidator(_bounded_number(field, low, high, unit, code))


def grammar_checked(check: Any, *stated: InSchema, **constraints: Any) -> tuple[Any, ...]:
    """A grammar-checked text's ``Annotated`` parts: the ``Field`` constraints, what
    ``stated`` adds to the schema, and ``check`` as the parser (last: pydantic runs it first)."""
    return (Field(**constraints), *stated, BeforeValidator(grammar_validator(check)))


@dataclass(frozen=True, eq=False)
class InSchema:
    """JSON Schema keywords for what a type's parser enforces beyond pydantic's constraints
    (``not``: a reserved name, a digits-only hostname). They are stated, not checked: the
    parser checks them, with its own code. Put it before the parser in ``Annotated``.

    ``answers`` replaces ``keywords`` where the value is sent rather than taken (the
    serialization schema of a view), when what is stored is narrower than what is taken.
    """

    keywords: Mapping[str, Any]
    answers: Mapping[str, Any] | None = None

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        stated = self.keywords
        if self.answers is not None and handler.mode == "serialization":
            stated = self.answers
        return {**handler(core_schema), **stated}


def _none_of(*branches: Mapping[str, Any]) -> InSchema:
    return InSchema({"not": {"anyOf": list(branches)}})


@dataclass(frozen=True)
class InApi:
    """Which of the REST API's shapes of a spec carry a field (spec files carry them all).

    Put it in a field's ``Annotated[...]``; a field without it is in the create body, the
    merge-patch body and the ``Service`` view alike.
    """

    create: bool = True
    patch: bool = True
    view: bool = True


# Only a spec file sets it; the API neither takes nor shows it.
FILE_ONLY = InApi(create=False, patch=False, view=False)


@dataclass(frozen=True)
class Derived:
    """Marks a required field that ``parse_spec`` fills in when it is omitted, null or
    empty, so that the API's create body may leave it out (or send null)."""


# The settings' parsers (``values.settings``): each refuses with its section's code.


def _checked(code: ErrorCode, check: Any) -> Any:
    """A text value checked by ``check(value)``, which raises ``GrammarError``; a value
    that is not text is refused with ``code`` too."""

    def validate(value: Any) -> Any:
        if not isinstance(value, str):
            raise PydanticCustomError(str(code), "must be text")
        try:
            return check(value)
        except GrammarError as exc:
            raise PydanticCustomError(str(exc.code), exc.message) from None

    return validate


def _signed_number(code: ErrorCode, what: str, low: int, high: int) -> Any:
    """Like ``_bounded_number``, for a range that starts below zero (log levels)."""
    positive = _bounded_number(what, 0, high, "", code)

    def validate(value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool) and low <= value < 0:
            return value
        if isinstance(value, str) and value.startswith("-") and value[1:].isdigit():
            number = -int(value[1:]) if len(value) <= 8 else low - 1
            if low <= number <= high:
                return number
        return positive(value)

    return validate


def _text(code: ErrorCode, what: str, maximum: int) -> Any:
    def check(value: str) -> str:
        if not value:
            raise GrammarError(code, f"{what} must not be empty")
        if len(value) > maximum:
            raise GrammarError(code, f"{what} must be at most {maximum} characters")
        if grammar.has_control_characters(value) or grammar.has_bidi_controls(value):
            raise GrammarError(
                code, f"{what} must be one line without control or bidirectional characters"
            )
        return value

    return _checked(code, check)


def _setting_pattern(code: ErrorCode, pattern: grammar.Pattern, message: str) -> Any:
    return _checked(code, lambda value: grammar.check_pattern(value, pattern, code, message))


def matching(
    code: ErrorCode, pattern: grammar.Pattern, message: str, **constraints: Any
) -> tuple[Any, Any]:
    """A setting's text of ``pattern``: stated for the schema, refused with ``code`` and
    ``message``."""
    return (
        Field(pattern=pattern.json, **constraints),
        BeforeValidator(_setting_pattern(code, pattern, message)),
    )


def http_url(code: ErrorCode, field: str) -> tuple[Any, Any]:
    """An http(s) URL of a setting (``field`` names it in messages), refused with ``code``."""
    return (
        Field(max_length=grammar.URL_MAX, pattern=grammar.HTTP_URL_STATED.json),
        BeforeValidator(_checked(code, lambda value: grammar.check_http_url(value, code, field))),
    )


def one_line(code: ErrorCode, what: str, maximum: int) -> tuple[Any, Any]:
    """A setting's free text: one line of 1 to ``maximum`` characters, refused with ``code``."""
    return (
        Field(min_length=1, max_length=maximum, pattern=grammar.ONE_LINE.json),
        BeforeValidator(_text(code, what, maximum)),
    )
