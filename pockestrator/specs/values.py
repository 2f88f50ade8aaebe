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
from pockestrator.specs.grammar import TLS_MODES, GrammarError, TlsMode

PORT_MIN = 1024
PORT_MAX = 65535
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
    return grammar_validator(grammar.check_project_name)(value)


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


def _flag_number(flag: str, low: int, high: int, unit: str = "") -> Any:
    """A whole-number flag: every bad value, wrong kind or out of bounds, is the flag's."""
    return _bounded_number(flag, low, high, unit)


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
NodeName = Annotated[
    str,
    Field(max_length=grammar.NODE_NAME_MAX, pattern=grammar.NODE_NAME.json),
    BeforeValidator(grammar_validator(grammar.check_node_name)),
]
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
    BeforeValidator(grammar_validator(grammar.normalize_domain)),
]
Version = Annotated[
    str,
    Field(max_length=grammar.VERSION_MAX, pattern=grammar.VERSION.json),
    BeforeValidator(grammar_validator(grammar.check_version)),
]
Email = Annotated[
    str,
    Field(max_length=grammar.EMAIL_MAX, pattern=grammar.EMAIL.json),
    _none_of({"pattern": grammar.EMAIL_LOCAL_TOO_LONG.json}),
    BeforeValidator(grammar_validator(grammar.check_email)),
]
EnvName = Annotated[
    str,
    Field(max_length=grammar.ENV_NAME_MAX, pattern=grammar.ENV_NAME.json),
    _none_of({"pattern": grammar.RESERVED_ENV_NAME.json}),
    BeforeValidator(grammar_validator(grammar.check_env_name)),
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
    BeforeValidator(grammar_validator(grammar.check_egress)),
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
    return grammar_validator(grammar.check_env_value)(value)


EnvValue = Annotated[
    str,
    Field(max_length=grammar.ENV_VALUE_MAX, pattern=grammar.ONE_LINE.json),
    BeforeValidator(_env_value),
]
Origin = Annotated[
    str,
    Field(pattern=grammar.ORIGIN.json),
    InSchema({"pattern": grammar.ORIGIN_STATED.json}),
    BeforeValidator(grammar_validator(grammar.check_origin)),
]


def _memory(value: str) -> str:
    grammar.memory_limit_bytes(value)
    return value


# The pattern checked is the grammar's; the one stated also holds the bounds its check adds.
MemoryLimit = Annotated[
    str,
    Field(pattern=grammar.MEMORY_LIMIT.json),
    InSchema({"pattern": grammar.MEMORY_LIMIT_STATED.json}),
    BeforeValidator(grammar_validator(_memory)),
]
CpuQuota = Annotated[
    str,
    Field(pattern=grammar.CPU_QUOTA.json),
    InSchema({"pattern": grammar.CPU_QUOTA_STATED.json}),
    BeforeValidator(grammar_validator(grammar.check_cpu_quota)),
]
# The validators enforce the bounds with the flag's own code, before the Field's own check.
QueryTimeout = Annotated[
    int, Field(ge=1, le=3600), BeforeValidator(_flag_number("query_timeout", 1, 3600, " seconds"))
]
HooksPool = Annotated[
    int, Field(ge=1, le=1000), BeforeValidator(_flag_number("hooks_pool", 1, 1000))
]


# -- PocketBase's own settings (``specs.pocketbase_settings``) ------------------------------
# Each value refuses with the code of its section (INVALID_SMTP for every bad SMTP value),
# naming the field in its message; the field path says exactly where.


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


SETTING_TEXT_MAX = 255
AppName = Annotated[
    str,
    Field(min_length=1, max_length=SETTING_TEXT_MAX, pattern=grammar.ONE_LINE.json),
    BeforeValidator(_text(ErrorCode.INVALID_APP_NAME, "app_name", SETTING_TEXT_MAX)),
]
AppUrl = Annotated[
    str,
    Field(max_length=grammar.URL_MAX, pattern=grammar.HTTP_URL_STATED.json),
    BeforeValidator(
        _checked(
            ErrorCode.INVALID_APP_URL,
            lambda value: grammar.check_http_url(value, ErrorCode.INVALID_APP_URL, "app_url"),
        )
    ),
]
# Where a webhook is delivered: http(s), a lowercase host, a port, a path; no credentials
# (no '@'), query or fragment (docs/security.md says what such a URL can reach).
WebhookUrl = Annotated[
    str,
    Field(max_length=grammar.URL_MAX, pattern=grammar.HTTP_URL_STATED.json),
    BeforeValidator(
        _checked(
            ErrorCode.INVALID_WEBHOOK_URL,
            lambda value: grammar.check_http_url(value, ErrorCode.INVALID_WEBHOOK_URL, "url"),
        )
    ),
]
EventKind = Annotated[
    str,
    Field(min_length=1, max_length=64, pattern=grammar.EVENT_KIND.json),
    BeforeValidator(
        _setting_pattern(
            ErrorCode.INVALID_EVENT_KIND,
            grammar.EVENT_KIND,
            "must be an event kind: lowercase letters, digits and '_', e.g. process_restarted",
        )
    ),
]
HeaderName = Annotated[
    str,
    Field(pattern=grammar.HEADER_NAME.json),
    BeforeValidator(
        _setting_pattern(
            ErrorCode.INVALID_TRUSTED_PROXY,
            grammar.HEADER_NAME,
            "a header name is 1 to 64 letters, digits and '-', starting with a letter "
            "(e.g. X-Forwarded-For)",
        )
    ),
]
RateLimitLabel = Annotated[
    str,
    Field(max_length=grammar.RATE_LIMIT_LABEL_MAX, pattern=grammar.RATE_LIMIT_LABEL.json),
    BeforeValidator(
        _checked(
            ErrorCode.INVALID_RATE_LIMIT,
            lambda value: grammar.check_pattern(
                value if len(value) <= grammar.RATE_LIMIT_LABEL_MAX else "\n",
                grammar.RATE_LIMIT_LABEL,
                ErrorCode.INVALID_RATE_LIMIT,
                "label must be a tag (signup), collection:action (users:auth), *:action, "
                "a path (/api/) or a method and a path (POST /api/batch), at most "
                f"{grammar.RATE_LIMIT_LABEL_MAX} characters",
            ),
        )
    ),
]
RateLimitAudience = Literal["", "@guest", "@auth"]
RateLimitCount = Annotated[
    int,
    Field(ge=1, le=1_000_000),
    BeforeValidator(
        _bounded_number("max_requests", 1, 1_000_000, "", ErrorCode.INVALID_RATE_LIMIT)
    ),
]
RateLimitSeconds = Annotated[
    int,
    Field(ge=1, le=86_400),
    BeforeValidator(
        _bounded_number("duration", 1, 86_400, " seconds", ErrorCode.INVALID_RATE_LIMIT)
    ),
]
SmtpHost = Annotated[
    str,
    Field(max_length=grammar.HOSTNAME_MAX, pattern=grammar.SETTING_HOST.json),
    BeforeValidator(
        _checked(
            ErrorCode.INVALID_SMTP,
            lambda value: grammar.check_hostname(value, ErrorCode.INVALID_SMTP, "host"),
        )
    ),
]
SmtpPort = Annotated[
    int,
    Field(ge=1, le=65535),
    BeforeValidator(_bounded_number("port", 1, 65535, "", ErrorCode.INVALID_SMTP)),
]
SmtpText = Annotated[
    str,
    Field(min_length=1, max_length=SETTING_TEXT_MAX, pattern=grammar.ONE_LINE.json),
    BeforeValidator(_text(ErrorCode.INVALID_SMTP, "the value", SETTING_TEXT_MAX)),
]
SmtpAuthMethod = Literal["PLAIN", "LOGIN"]


def _sender_address(value: Any) -> Any:
    if not isinstance(value, str):
        raise PydanticCustomError(str(ErrorCode.INVALID_SMTP), "must be text")
    try:
        return grammar.check_email(value)
    except GrammarError:
        raise PydanticCustomError(
            str(ErrorCode.INVALID_SMTP), "sender_address is not a valid e-mail address"
        ) from None


SenderAddress = Annotated[
    str,
    Field(max_length=grammar.EMAIL_MAX, pattern=grammar.EMAIL.json),
    _none_of({"pattern": grammar.EMAIL_LOCAL_TOO_LONG.json}),
    BeforeValidator(_sender_address),
]
S3Bucket = Annotated[
    str,
    Field(pattern=grammar.S3_BUCKET.json),
    BeforeValidator(
        _setting_pattern(
            ErrorCode.INVALID_S3,
            grammar.S3_BUCKET,
            "bucket must be 3 to 63 lowercase letters, digits, '.' and '-', starting and "
            "ending with a letter or digit",
        )
    ),
]
S3Region = Annotated[
    str,
    Field(pattern=grammar.S3_REGION.json),
    BeforeValidator(
        _setting_pattern(
            ErrorCode.INVALID_S3,
            grammar.S3_REGION,
            "region must be 1 to 64 letters, digits, '_' and '-' (e.g. us-east-1)",
        )
    ),
]
S3Endpoint = Annotated[
    str,
    Field(max_length=grammar.URL_MAX, pattern=grammar.HTTP_URL_STATED.json),
    BeforeValidator(
        _checked(
            ErrorCode.INVALID_S3,
            lambda value: grammar.check_http_url(value, ErrorCode.INVALID_S3, "endpoint"),
        )
    ),
]
S3AccessKey = Annotated[
    str,
    Field(pattern=grammar.S3_ACCESS_KEY.json),
    BeforeValidator(
        _setting_pattern(
            ErrorCode.INVALID_S3,
            grammar.S3_ACCESS_KEY,
            "access_key must be 1 to 256 letters, digits and + / = . _ ~ -",
        )
    ),
]
LOG_DAYS_MAX = 36_500
LogDays = Annotated[
    int,
    Field(ge=0, le=LOG_DAYS_MAX),
    BeforeValidator(_bounded_number("max_days", 0, LOG_DAYS_MAX, " days", ErrorCode.INVALID_LOGS)),
]
# PocketBase's levels are slog's: -4 debug, 0 info, 4 warn, 8 error.
LogLevel = Annotated[
    int,
    Field(ge=-4, le=8),
    BeforeValidator(_signed_number(ErrorCode.INVALID_LOGS, "min_level", -4, 8)),
]
BatchRequests = Annotated[
    int,
    Field(ge=1, le=10_000),
    BeforeValidator(_bounded_number("max_requests", 1, 10_000, "", ErrorCode.INVALID_BATCH)),
]
BatchSeconds = Annotated[
    int,
    Field(ge=1, le=3600),
    BeforeValidator(_bounded_number("timeout", 1, 3600, " seconds", ErrorCode.INVALID_BATCH)),
]


def _secret_file(value: Any) -> Any:
    if not isinstance(value, str):
        raise PydanticCustomError(
            str(ErrorCode.INVALID_SECRET), "file must be text: an absolute path"
        )
    problem = grammar.secret_file_problem(value)
    if problem is not None:
        raise PydanticCustomError(str(ErrorCode.INVALID_SECRET), f"file {problem}")
    return value


SecretFile = Annotated[str, Field(max_length=grammar.PATH_MAX), BeforeValidator(_secret_file)]
CredentialName = Annotated[
    str,
    Field(pattern=grammar.CREDENTIAL_NAME.json),
    BeforeValidator(
        _setting_pattern(
            ErrorCode.INVALID_SECRET,
            grammar.CREDENTIAL_NAME,
            "credential must be a credential's name: 1 to 128 letters, digits, '_', '.' and "
            "'-', not starting with '.' or '-'",
        )
    ),
]
SecretText = Annotated[
    str,
    Field(min_length=1, max_length=grammar.SECRET_MAX, pattern=grammar.ONE_LINE.json),
    BeforeValidator(_checked(ErrorCode.INVALID_SECRET, grammar.check_secret_text)),
]
# A version tag of a secret the store keeps for the API (``specs.store.secrets``).
STORED_TAG = grammar.Pattern(r"[0-9a-f]{16}")
StoredSecretId = Annotated[
    str,
    Field(pattern=STORED_TAG.json),
    BeforeValidator(
        _setting_pattern(ErrorCode.INVALID_SECRET, STORED_TAG, "stored must be 16 hex digits")
    ),
]


# -- proxy and tls: how Caddy serves a service ------------------------------------------

HOLD_REQUESTS_MAX = 120


def _body_size(value: Any) -> Any:
    # YAML users may write a plain number of bytes.
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value) if 0 < value < 10**10 else "0"
    if not isinstance(value, str):
        raise PydanticCustomError(
            str(ErrorCode.INVALID_BODY_SIZE), "max_body_size must be a size such as 10MB"
        )
    return grammar_validator(grammar.check_body_size)(value)


def _tls_mode(value: Any) -> Any:
    if value not in TLS_MODES:
        raise PydanticCustomError(
            str(ErrorCode.INVALID_TLS_MODE),
            "tls mode must be auto (ACME), internal (Caddy's local CA) or off (plain HTTP); "
            "leave it out for the agent's caddy_tls",
        )
    return value


BodySize = Annotated[
    str,
    Field(max_length=16, pattern=grammar.BODY_SIZE.json),
    InSchema({"pattern": grammar.BODY_SIZE_STATED.json}),
    BeforeValidator(_body_size),
]
HoldSeconds = Annotated[
    int,
    Field(ge=0, le=HOLD_REQUESTS_MAX),
    BeforeValidator(
        _bounded_number(
            "hold_requests", 0, HOLD_REQUESTS_MAX, " seconds", ErrorCode.INVALID_HOLD_REQUESTS
        )
    ),
]
SpecTlsMode = Annotated[TlsMode, BeforeValidator(_tls_mode)]
# The document states each unit's bounds (``SLEEP_AFTER_STATED``); the parser gives the code.
SleepAfter = Annotated[
    str,
    Field(max_length=8, pattern=grammar.SLEEP_AFTER.json, examples=["15m"]),
    InSchema({"pattern": grammar.SLEEP_AFTER_STATED.json}),
    BeforeValidator(grammar_validator(grammar.check_sleep_after)),
]
