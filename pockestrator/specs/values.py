"""The value types of a spec: each a lenient parser on top of what JSON Schema can state.

A type is ``Annotated[<python type>, Field(<constraints>), BeforeValidator(<parser>)]``.
The parser runs first: it gives the grammar's precise code (``specs.grammar``) and takes
what YAML writes (a port in quotes, a number as an env value). The ``Field`` constraints
(``pattern`` from ``grammar``, ``max_length``, ``ge`` ...) then hold for every parsed value,
and they are what the API's strict bodies and the OpenAPI document keep when they drop the
parsers (``api.spec_shapes``). They must never be stricter than the parser, or the API
would refuse with a generic code what the parser accepts; the unit tests hold them to it.

``InApi`` and ``Derived`` mark fields of ``ServiceSpec`` for those derived shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError

from pockestrator.specs import grammar
from pockestrator.specs.errors import ErrorCode
from pockestrator.specs.grammar import GrammarError

PORT_MIN = 1024
PORT_MAX = 65535
# Every bounded whole number of a spec fits in six digits; longer digit strings are out of
# range without being converted (int() of a megabyte of digits is slow).
_NUMBER_DIGITS_MAX = 6
_OUT_OF_EVERY_RANGE: int = 10**_NUMBER_DIGITS_MAX


def _grammar(check: Any) -> Any:
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


def _port(value: Any) -> Any:
    port = _whole_number(value)
    if port is None:
        raise PydanticCustomError(str(ErrorCode.INVALID_TYPE), "port must be an integer")
    if not PORT_MIN <= port <= PORT_MAX:
        raise PydanticCustomError(
            str(ErrorCode.PORT_OUT_OF_RANGE), f"port must be between {PORT_MIN} and {PORT_MAX}"
        )
    return port


def _project_name(value: Any) -> Any:
    # YAML's `project_name:` with nothing after it is null: as missing as "".
    if value is None:
        raise PydanticCustomError(str(ErrorCode.FIELD_REQUIRED), "project name is required")
    return _grammar(grammar.check_project_name)(value)


def _flag_number(flag: str, low: int, high: int, unit: str = "") -> Any:
    """A whole-number flag: every bad value, wrong kind or out of bounds, is the flag's."""

    def validate(value: Any) -> Any:
        number = _whole_number(value)
        if number is None:
            raise PydanticCustomError(
                str(ErrorCode.INVALID_FLAG_VALUE),
                f"{flag} must be a whole number (not true/false, a fraction or a word)",
            )
        if not low <= number <= high:
            raise PydanticCustomError(
                str(ErrorCode.INVALID_FLAG_VALUE), f"{flag} must be from {low} to {high}{unit}"
            )
        return number

    return validate


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


# The constraints come before the parser in each Annotated: pydantic runs the parser first
# and states in the JSON schema only constraints that sit before the validators.
ProjectName = Annotated[
    str,
    Field(min_length=1, max_length=grammar.NAME_MAX, pattern=grammar.PROJECT_NAME.json),
    _none_of({"enum": sorted(grammar.RESERVED_NAMES)}, {"pattern": grammar.PROJECT_NAME_NOT.json}),
    BeforeValidator(_project_name),
]
Port = Annotated[int, Field(ge=PORT_MIN, le=PORT_MAX), BeforeValidator(_port)]
# Taken: the ASCII names (a Unicode one is taken too, checked by IDNA, which no pattern can
# state). Sent: what is stored, lowercase ASCII, a Unicode name as its A-labels (xn--).
Domain = Annotated[
    str,
    InSchema(
        {
            "pattern": grammar.HOSTNAME.json,
            "maxLength": grammar.DOMAIN_MAX + 1,
            "not": {"anyOf": [{"pattern": p.json} for p in grammar.HOSTNAME_NOT]},
        },
        answers={"pattern": grammar.STORED_HOSTNAME.json, "maxLength": grammar.DOMAIN_MAX},
    ),
    BeforeValidator(_grammar(grammar.normalize_domain)),
]
Version = Annotated[
    str,
    Field(max_length=grammar.VERSION_MAX, pattern=grammar.VERSION.json),
    BeforeValidator(_grammar(grammar.check_version)),
]
Email = Annotated[
    str,
    Field(max_length=grammar.EMAIL_MAX, pattern=grammar.EMAIL.json),
    _none_of({"pattern": grammar.EMAIL_LOCAL_TOO_LONG.json}),
    BeforeValidator(_grammar(grammar.check_email)),
]
EnvName = Annotated[
    str,
    Field(max_length=grammar.ENV_NAME_MAX, pattern=grammar.ENV_NAME.json),
    _none_of({"pattern": grammar.RESERVED_ENV_NAME.json}),
    BeforeValidator(_grammar(grammar.check_env_name)),
]
Egress = Annotated[
    str,
    Field(max_length=43, pattern=grammar.EGRESS.json),
    InSchema(
        {
            "anyOf": [
                {"const": "any"},
                {"pattern": grammar.IPV4_ADDRESS.json},
                {"pattern": grammar.IPV4_NETWORK.json},
                {"format": "ipv6"},
            ]
        }
    ),
    BeforeValidator(_grammar(grammar.check_egress)),
]
# The list's own rules ('any' alone, each entry once), stated as the model's validator
# checks them.
EGRESS_LIST = InSchema(
    {
        "uniqueItems": True,
        "anyOf": [{"not": {"contains": {"const": "any"}}}, {"maxItems": 1}],
    }
)
DesiredState = Literal["running", "stopped"]
ExtraDir = Literal["pb_hooks", "pb_migrations", "pb_public"]


_ENV_NUMBER_LIMIT: int = 10**grammar.ENV_VALUE_MAX


def _env_value(value: Any) -> Any:
    # YAML users write `GOMAXPROCS: 2`; the environment only knows strings.
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, int):
        # Checked before str(): Python refuses to write out more than 4300 digits.
        if abs(value) >= _ENV_NUMBER_LIMIT:
            raise PydanticCustomError(
                str(ErrorCode.INVALID_ENV_VALUE),
                f"value must be at most {grammar.ENV_VALUE_MAX} characters "
                "(this number has more digits)",
            )
        value = str(value)
    elif isinstance(value, float):
        value = str(value)
    return _grammar(grammar.check_env_value)(value)


EnvValue = Annotated[
    str,
    Field(max_length=grammar.ENV_VALUE_MAX, pattern=grammar.ONE_LINE.json),
    BeforeValidator(_env_value),
]
Origin = Annotated[
    str,
    Field(pattern=grammar.ORIGIN.json),
    InSchema({"pattern": grammar.ORIGIN_STATED.json}),
    BeforeValidator(_grammar(grammar.check_origin)),
]


def _memory(value: str) -> str:
    grammar.memory_limit_bytes(value)
    return value


# The pattern checked is the grammar's; the one stated also holds the bounds its check adds.
MemoryLimit = Annotated[
    str,
    Field(pattern=grammar.MEMORY_LIMIT.json),
    InSchema({"pattern": grammar.MEMORY_LIMIT_STATED.json}),
    BeforeValidator(_grammar(_memory)),
]
CpuQuota = Annotated[
    str,
    Field(pattern=grammar.CPU_QUOTA.json),
    InSchema({"pattern": grammar.CPU_QUOTA_STATED.json}),
    BeforeValidator(_grammar(grammar.check_cpu_quota)),
]
# The validators enforce the bounds with the flag's own code, before the Field's own check.
QueryTimeout = Annotated[
    int, Field(ge=1, le=3600), BeforeValidator(_flag_number("query_timeout", 1, 3600, " seconds"))
]
HooksPool = Annotated[
    int, Field(ge=1, le=1000), BeforeValidator(_flag_number("hooks_pool", 1, 1000))
]
