"""``ServiceSpec``: the one schema of a service, whether it comes from YAML, the API or the store.

Parsing goes through ``parse_spec``, which fills the domain from the agent's
``default_domain`` when it is omitted and turns every pydantic error into a ``FieldIssue``
with a stable code. Field-level grammar lives in ``specs.grammar``; checks that need the
world (is the port free, does the version exist, is the name taken) live in
``specs.validation``.
"""

from __future__ import annotations

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
ENV_ENTRIES_MAX = 100
ORIGINS_MAX = 50
PATH_MAX = 4096
# Kernel and device file systems: never a password file, and reading some of them as root
# (the agent reads the file) has effects or discloses host state.
PSEUDO_FILE_SYSTEMS = ("proc", "sys", "dev")
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
    if not 1024 <= port <= 65535:
        raise PydanticCustomError(
            str(ErrorCode.PORT_OUT_OF_RANGE), "port must be between 1024 and 65535"
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


ProjectName = Annotated[str, BeforeValidator(_project_name)]
Port = Annotated[int, BeforeValidator(_port)]
Domain = Annotated[str, BeforeValidator(_grammar(grammar.normalize_domain))]
Version = Annotated[str, BeforeValidator(_grammar(grammar.check_version))]
Email = Annotated[str, BeforeValidator(_grammar(grammar.check_email))]
EnvName = Annotated[str, BeforeValidator(_grammar(grammar.check_env_name))]


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


EnvValue = Annotated[str, BeforeValidator(_env_value)]
Origin = Annotated[str, BeforeValidator(_grammar(grammar.check_origin))]


def _memory(value: str) -> str:
    grammar.memory_limit_bytes(value)
    return value


MemoryLimit = Annotated[str, BeforeValidator(_grammar(_memory))]
CpuQuota = Annotated[str, BeforeValidator(_grammar(grammar.check_cpu_quota))]
# The Field bounds describe the flags in the JSON schema; the validators, which run first,
# enforce them with the flag's own code.
QueryTimeout = Annotated[
    int, Field(ge=1, le=3600), BeforeValidator(_flag_number("query_timeout", 1, 3600, " seconds"))
]
HooksPool = Annotated[
    int, Field(ge=1, le=1000), BeforeValidator(_flag_number("hooks_pool", 1, 1000))
]


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
        description=f"--origins: CORS allowed origins (1 to {ORIGINS_MAX})",
        examples=[["https://app.example.com"]],
    )
    encryption_env: EnvName | None = Field(
        default=None, description="--encryptionEnv: name of the env variable with the settings key"
    )
    dev: bool | None = Field(default=None, description="--dev: verbose logs")
    query_timeout: QueryTimeout | None = Field(
        default=None, description="--queryTimeout in seconds"
    )
    hooks_watch: bool | None = Field(default=None, description="--hooksWatch")
    hooks_pool: HooksPool | None = Field(default=None, description="--hooksPool")
    index_fallback: bool | None = Field(default=None, description="--indexFallback")

    @field_validator("origins", mode="before")
    @classmethod
    def _some_origins_but_not_too_many(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            if not value:
                raise PydanticCustomError(
                    str(ErrorCode.INVALID_FLAG_VALUE),
                    "origins must list at least one origin; leave the flag out to keep "
                    "PocketBase's default",
                )
            if len(value) > ORIGINS_MAX:
                raise PydanticCustomError(
                    str(ErrorCode.VALUE_TOO_LONG),
                    f"origins may list at most {ORIGINS_MAX} origins",
                )
        return value

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
        default_factory=dict,
        max_length=ENV_ENTRIES_MAX,
        description="Environment of the instance, e.g. GOMEMLIMIT.",
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
    def _password_file_path(cls, value: Any) -> Any:
        if value is None:
            return value
        if not isinstance(value, str):
            raise PydanticCustomError(
                str(ErrorCode.INVALID_TYPE), "must be text: the absolute path of a file"
            )
        problem = _password_file_problem(value)
        if problem is not None:
            raise PydanticCustomError(str(ErrorCode.INVALID_PATH), problem)
        return value

    @field_validator("env", mode="before")
    @classmethod
    def _not_too_many_variables(cls, value: Any) -> Any:
        if isinstance(value, Mapping) and len(value) > ENV_ENTRIES_MAX:
            raise PydanticCustomError(
                str(ErrorCode.VALUE_TOO_LONG), f"env may hold at most {ENV_ENTRIES_MAX} variables"
            )
        return value

    @field_validator("extra_dirs")
    @classmethod
    def _unique_dirs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted(set(value)))

    @property
    def unit_name(self) -> str:
        return unit_name(self.project_name)


def _password_file_problem(path: str) -> str | None:
    """Why ``path`` cannot be the password file, or None.

    Only the shape is checked here; whether the file is a regular file that only root can
    read is a question for the moment it is read.
    """
    if not path.startswith("/"):
        return "must be an absolute path (starting with '/')"
    if len(path) > PATH_MAX:
        return f"must be at most {PATH_MAX} characters"
    if grammar.has_control_characters(path) or grammar.has_bidi_controls(path):
        return "must not contain control, line-separator or bidirectional formatting characters"
    parts = path.split("/")
    if any(part in ("..", ".") for part in parts):
        return "must not have '.' or '..' components"
    if parts[-1] == "":
        return "must name a file: it must not end with '/'"
    top = next(part for part in parts if part)
    if top in PSEUDO_FILE_SYSTEMS:
        return f"must not be under /{top}: kernel and device files are not password files"
    return None


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
        elif len(location) > 1 and location[0] in _FIELD_CODES:
            # A bad value inside the section; the section itself not being a mapping
            # (`resources: 512M`) is a wrong type like any other.
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


def _derive_domain(values: dict[str, Any], default_domain: str) -> FieldIssue | None:
    """Fill in ``<project_name>.<default_domain>``; the issue when that is no hostname.

    A bad or missing name derives nothing and yields no issue: the name is reported on its
    own.
    """
    name = values.get("project_name")
    if not isinstance(name, str):
        return None
    try:
        grammar.check_project_name(name)
    except GrammarError:
        return None
    derived = default_domain_for(name, default_domain)
    try:
        values["domain"] = grammar.normalize_domain(derived)
    except GrammarError as exc:
        shown = derived if len(derived) <= 80 else derived[:77] + "..."
        return FieldIssue(
            "domain",
            f"no domain is given, and the default {shown!r} (<project_name>.<default_domain>, "
            f"from the agent's default_domain setting) is not usable: {exc.message}",
            exc.code,
        )
    return None


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
    domain_omitted = values.get("domain") in (None, "")
    derived_issue = None
    if domain_omitted:
        values.pop("domain", None)
        derived_issue = _derive_domain(values, default_domain)
    try:
        return ServiceSpec.model_validate(values)
    except ValidationError as exc:
        issues = issues_from_validation_error(exc)
    if domain_omitted:
        # The domain's only possible issue is "missing", which stands for a derivation that
        # did not happen: because of a bad name (reported on project_name, so dropped
        # here) or because of default_domain (reported in its place).
        replaced = [derived_issue if issue.field == "domain" else issue for issue in issues]
        issues = [issue for issue in replaced if issue is not None]
    raise SpecInvalid(issues)
