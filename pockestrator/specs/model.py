"""``ServiceSpec``: the one schema of a service, whether it comes from YAML, the API or the store.

Parsing goes through ``parse_spec``, which fills the domain from the agent's
``default_domain`` when it is omitted and turns every pydantic error into a ``FieldIssue``
with a stable code. Field-level grammar lives in ``specs.grammar``; checks that need the
world (is the port free, does the version exist, is the name taken) live in
``specs.validation``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)
from pydantic_core import PydanticCustomError

from pockestrator.specs import grammar
from pockestrator.specs.errors import ErrorCode, FieldIssue, SpecInvalid
from pockestrator.specs.grammar import GrammarError

UNIT_SUFFIX = "-pocketbase.service"
DESCRIPTION_MAX = 500
CREATED_BY_MAX = 254
OPTIONAL_DIRS = ("pb_hooks", "pb_migrations", "pb_public")


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


def _port(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise PydanticCustomError(str(ErrorCode.INVALID_TYPE), "port must be an integer")
    if isinstance(value, str):
        if not value.isascii() or not value.isdigit() or len(value) > 5:
            raise PydanticCustomError(str(ErrorCode.INVALID_TYPE), "port must be an integer")
        value = int(value)
    if not 1024 <= value <= 65535:
        raise PydanticCustomError(
            str(ErrorCode.PORT_OUT_OF_RANGE), "port must be between 1024 and 65535"
        )
    return value


ProjectName = Annotated[str, BeforeValidator(_grammar(grammar.check_project_name))]
Port = Annotated[int, BeforeValidator(_port)]
Domain = Annotated[str, BeforeValidator(_grammar(grammar.normalize_domain))]
Version = Annotated[str, BeforeValidator(_grammar(grammar.check_version))]
Email = Annotated[str, BeforeValidator(_grammar(grammar.check_email))]
EnvName = Annotated[str, BeforeValidator(_grammar(grammar.check_env_name))]


def _env_value(value: Any) -> Any:
    # YAML users write `GOMAXPROCS: 2`; the environment only knows strings.
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, int | float):
        value = str(value)
    return _grammar(grammar.check_env_value)(value)


EnvValue = Annotated[str, BeforeValidator(_env_value)]
Origin = Annotated[str, BeforeValidator(_grammar(grammar.check_origin))]


def _memory(value: str) -> str:
    grammar.memory_limit_bytes(value)
    return value


MemoryLimit = Annotated[str, BeforeValidator(_grammar(_memory))]
CpuQuota = Annotated[str, BeforeValidator(_grammar(grammar.check_cpu_quota))]


class Resources(BaseModel):
    """Limits applied by systemd (``MemoryMax=``, ``CPUQuota=``), in systemd's own syntax."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    memory_max: MemoryLimit | None = Field(default=None, examples=["512M"])
    cpu_quota: CpuQuota | None = Field(default=None, examples=["50%"])


class PocketBaseFlags(BaseModel):
    """The allow-list of extra ``pocketbase serve`` flags; anything else is refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    origins: tuple[Origin, ...] | None = Field(
        default=None,
        description="--origins: CORS allowed origins",
        examples=[["https://app.example.com"]],
    )
    encryption_env: EnvName | None = Field(
        default=None, description="--encryptionEnv: name of the env variable with the settings key"
    )
    dev: bool | None = Field(default=None, description="--dev: verbose logs")
    query_timeout: int | None = Field(
        default=None, ge=1, le=3600, description="--queryTimeout in seconds"
    )
    hooks_watch: bool | None = Field(default=None, description="--hooksWatch")
    hooks_pool: int | None = Field(default=None, ge=1, le=1000, description="--hooksPool")
    index_fallback: bool | None = Field(default=None, description="--indexFallback")

    def as_arguments(self) -> list[str]:
        """``--name=value`` arguments in a fixed order (deterministic rendering)."""
        names = {
            "origins": "--origins",
            "encryption_env": "--encryptionEnv",
            "dev": "--dev",
            "query_timeout": "--queryTimeout",
            "hooks_watch": "--hooksWatch",
            "hooks_pool": "--hooksPool",
            "index_fallback": "--indexFallback",
        }
        arguments = []
        for field, flag in names.items():
            value = getattr(self, field)
            if value is None:
                continue
            if isinstance(value, bool):
                arguments.append(f"{flag}={'true' if value else 'false'}")
            elif isinstance(value, tuple):
                arguments.append(f"{flag}={','.join(value)}")
            else:
                arguments.append(f"{flag}={value}")
        return arguments


class ServiceSpec(BaseModel):
    """What one PocketBase service should be. Immutable; changes make a new spec."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    project_name: ProjectName = Field(
        description="Unit, directory and DNS label: lowercase letters, digits and '-'.",
        examples=["my-app"],
    )
    port: Port = Field(
        description="Loopback port PocketBase listens on (1024-65535).", examples=[8080]
    )
    pocketbase_version: Version = Field(examples=["0.29.0"])
    domain: Domain = Field(
        description="Hostname Caddy serves; defaults to <project_name>.<default_domain>.",
        examples=["my-app.example.com"],
    )
    description: str = Field(default="", max_length=DESCRIPTION_MAX)
    superuser_email: Email | None = Field(
        default=None, description="Create this first superuser once, with a generated password."
    )
    superuser_password_file: str | None = Field(
        default=None,
        description="Absolute path of a file holding the superuser password "
        "(instead of generating one).",
    )
    created_by: str = Field(default="", max_length=CREATED_BY_MAX)
    desired_state: Literal["running", "stopped"] = Field(
        default="running", description="Whether the instance should run."
    )
    env: dict[EnvName, EnvValue] = Field(
        default_factory=dict, description="Environment of the instance, e.g. GOMEMLIMIT."
    )
    resources: Resources = Field(default_factory=Resources)
    flags: PocketBaseFlags = Field(default_factory=PocketBaseFlags)
    extra_dirs: tuple[Literal["pb_hooks", "pb_migrations", "pb_public"], ...] = Field(
        default=(), description="Optional folders to create and pass to PocketBase."
    )

    @field_validator("description", "created_by", mode="before")
    @classmethod
    def _one_line_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                grammar.check_free_text(value, DESCRIPTION_MAX)
            except GrammarError as exc:
                raise PydanticCustomError(str(exc.code), exc.message) from None
        return value

    @field_validator("superuser_password_file", mode="before")
    @classmethod
    def _absolute_plain_path(cls, value: Any) -> Any:
        if value is None:
            return value
        if (
            not isinstance(value, str)
            or not value.startswith("/")
            or len(value) > 4096
            or any(part in ("..", ".") for part in value.split("/"))
            or grammar.has_control_characters(value)
        ):
            raise PydanticCustomError(
                str(ErrorCode.INVALID_PATH),
                "must be an absolute path without '.', '..' or control characters",
            )
        return value

    @field_validator("extra_dirs")
    @classmethod
    def _unique_dirs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted(set(value)))

    @property
    def unit_name(self) -> str:
        return unit_name(self.project_name)


def unit_name(project_name: str) -> str:
    return f"{project_name}{UNIT_SUFFIX}"


def default_domain_for(project_name: str, default_domain: str) -> str:
    return f"{project_name}.{default_domain}"


_GENERIC_CODES = {
    "missing": ErrorCode.FIELD_REQUIRED,
    "extra_forbidden": ErrorCode.UNKNOWN_FIELD,
    "string_too_long": ErrorCode.VALUE_TOO_LONG,
    "literal_error": ErrorCode.INVALID_VALUE,
    "greater_than_equal": ErrorCode.INVALID_VALUE,
    "less_than_equal": ErrorCode.INVALID_VALUE,
}
_FIELD_CODES = {
    "flags": ErrorCode.INVALID_FLAG_VALUE,
    "resources": ErrorCode.INVALID_VALUE,
}


def issues_from_validation_error(exc: ValidationError, prefix: str = "") -> list[FieldIssue]:
    """Every pydantic error as a ``FieldIssue`` with a stable code and a dotted field path."""
    issues = []
    for error in exc.errors(include_url=False):
        location = [str(part) for part in error["loc"] if part != "[key]"]
        field = ".".join(location) or "<spec>"
        kind = error["type"]
        if kind in ErrorCode.__members__:
            code = ErrorCode(kind)
        elif kind == "extra_forbidden" and location[:1] == ["flags"]:
            code = ErrorCode.FLAG_NOT_ALLOWED
        elif kind in _GENERIC_CODES:
            code = _GENERIC_CODES[kind]
        elif location and location[0] in _FIELD_CODES:
            code = _FIELD_CODES[location[0]]
        else:
            code = ErrorCode.INVALID_TYPE
        message = error["msg"]
        if code is ErrorCode.UNKNOWN_FIELD:
            message = f"unknown field '{location[-1]}'"
        elif code is ErrorCode.FLAG_NOT_ALLOWED:
            message = f"flag '{location[-1]}' is not allowed; allowed: " + ", ".join(
                PocketBaseFlags.model_fields
            )
        issues.append(FieldIssue(prefix + field, message, code))
    return issues


def parse_spec(data: Any, default_domain: str) -> ServiceSpec:
    """Validate untrusted input into a ``ServiceSpec``; raise ``SpecInvalid`` with all issues."""
    if not isinstance(data, Mapping):
        raise SpecInvalid(
            [
                FieldIssue(
                    "<spec>", "a service spec must be a mapping of fields", ErrorCode.NOT_A_MAPPING
                )
            ]
        )
    values = dict(data)
    name = values.get("project_name")
    domain_omitted = values.get("domain") in (None, "")
    if domain_omitted and isinstance(name, str):
        # A bad name is reported on its own; no default domain is derived from it.
        with contextlib.suppress(GrammarError):
            values["domain"] = default_domain_for(grammar.check_project_name(name), default_domain)
    try:
        return ServiceSpec.model_validate(values)
    except ValidationError as exc:
        issues = issues_from_validation_error(exc)
        if domain_omitted:
            issues = [issue for issue in issues if issue.field != "domain"]
        raise SpecInvalid(issues) from None
