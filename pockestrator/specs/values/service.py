"""The value types of a service's own fields: its name, port, domain and version, its
environment, limits and egress, and how Caddy serves it (body size, held requests, TLS,
sleep).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field
from pydantic_core import PydanticCustomError

from pockestrator.specs import grammar
from pockestrator.specs.errors import ErrorCode
from pockestrator.specs.grammar import TLS_MODES, TlsMode
from pockestrator.specs.values.parsers import (
    InSchema,
    _none_of,
    _whole_number,
    grammar_checked,
    grammar_validator,
    whole_number,
)

PORT_MIN = 1024
PORT_MAX = 65535


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
    *grammar_checked(
        grammar.check_node_name, max_length=grammar.NODE_NAME_MAX, pattern=grammar.NODE_NAME.json
    ),
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
    *grammar_checked(
        grammar.check_version, max_length=grammar.VERSION_MAX, pattern=grammar.VERSION.json
    ),
]
Email = Annotated[
    str,
    *grammar_checked(
        grammar.check_email,
        _none_of({"pattern": grammar.EMAIL_LOCAL_TOO_LONG.json}),
        max_length=grammar.EMAIL_MAX,
        pattern=grammar.EMAIL.json,
    ),
]
EnvName = Annotated[
    str,
    *grammar_checked(
        grammar.check_env_name,
        _none_of({"pattern": grammar.RESERVED_ENV_NAME.json}),
        max_length=grammar.ENV_NAME_MAX,
        pattern=grammar.ENV_NAME.json,
    ),
]
_ANY_OR_ADDRESS = InSchema(
    {
        "anyOf": [
            {"const": "any"},
            {"pattern": grammar.IPV4_ADDRESS.json},
            {"pattern": grammar.ipv4_network().json},
            {"format": "ipv6"},
        ]
    }
)
Egress = Annotated[
    str,
    *grammar_checked(
        grammar.check_egress, _ANY_OR_ADDRESS, max_length=43, pattern=grammar.EGRESS.json
    ),
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
    *grammar_checked(
        grammar.check_origin,
        InSchema({"pattern": grammar.ORIGIN_STATED.json}),
        pattern=grammar.ORIGIN.json,
    ),
]


_memory = grammar.value_once_parsed(grammar.memory_limit_bytes)


# The pattern checked is the grammar's; the one stated also holds the bounds its check adds.
MemoryLimit = Annotated[
    str,
    *grammar_checked(
        _memory,
        InSchema({"pattern": grammar.memory_limit_stated().json}),
        pattern=grammar.MEMORY_LIMIT.json,
    ),
]
CpuQuota = Annotated[
    str,
    *grammar_checked(
        grammar.check_cpu_quota,
        InSchema({"pattern": grammar.CPU_QUOTA_STATED.json}),
        pattern=grammar.CPU_QUOTA.json,
    ),
]
# The validators enforce the bounds with the flag's own code, before the Field's own check.
QueryTimeout = Annotated[int, *whole_number("query_timeout", 1, 3600, " seconds")]
HooksPool = Annotated[int, *whole_number("hooks_pool", 1, 1000)]


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
    InSchema({"pattern": grammar.body_size_stated().json}),
    BeforeValidator(_body_size),
]
HoldSeconds = Annotated[
    int,
    *whole_number(
        "hold_requests", 0, HOLD_REQUESTS_MAX, " seconds", ErrorCode.INVALID_HOLD_REQUESTS
    ),
]
SpecTlsMode = Annotated[TlsMode, BeforeValidator(_tls_mode)]
# The document states each unit's bounds (``sleep_after_stated``); the parser gives the code.
SleepAfter = Annotated[
    str,
    *grammar_checked(
        grammar.check_sleep_after,
        InSchema({"pattern": grammar.sleep_after_stated().json}),
        max_length=8,
        pattern=grammar.SLEEP_AFTER.json,
        examples=["15m"],
    ),
]
