"""``ServiceSpec``: the one schema of a service, whether it comes from YAML, the API or the store.

Parsing goes through ``parse_spec``, which fills the domain from the agent's
``default_domain`` when it is omitted and turns every pydantic error into a ``FieldIssue``
with a stable code. The value types (a lenient parser each, over the constraints JSON
Schema can state) live in ``specs.values``, their grammar in ``specs.grammar``; checks
that need the world (is the port free, does the version exist, is the name taken) live in
``specs.validation``.

The API's create and patch bodies, its ``Service`` view and the OpenAPI document are
derived from the fields declared here (``api.spec_shapes``), so a new field is declared
once, with its type, default and description; ``InApi`` says where the API leaves it out.
The parts that are models of their own (resources, flags, proxy, tls, placement) are in
``specs.service_parts``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from pockestrator.specs import grammar
from pockestrator.specs.backups import BackupPolicy, Schedule
from pockestrator.specs.errors import ErrorCode, FieldIssue, SpecInvalid
from pockestrator.specs.grammar import GrammarError
from pockestrator.specs.pocketbase_settings import PocketBaseSettings
from pockestrator.specs.service_parts import (
    CREATED_BY_MAX,
    DESCRIPTION_MAX,
    EGRESS_ENTRIES_MAX,
    ENV_ENTRIES_MAX,
    AppSource,
    PlacementOptions,
    PocketBaseFlags,
    ProxyOptions,
    Resources,
    TlsOptions,
)
from pockestrator.specs.values.parsers import FILE_ONLY, Derived, InApi
from pockestrator.specs.values.service import (
    EGRESS_LIST,
    DesiredState,
    Domain,
    Egress,
    Email,
    EnvName,
    EnvValue,
    ExtraDir,
    NodeName,
    Port,
    ProjectName,
    SleepAfter,
    Version,
)

UNIT_SUFFIX = "-pocketbase.service"


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
    pocketbase_version: Version = Field(
        description="The PocketBase release to run; changing it is an upgrade.",
        examples=["0.29.0"],
    )
    domain: Annotated[Domain, Derived()] = Field(
        description="Hostname Caddy serves; defaults to <project_name>.<default_domain>.",
        examples=["my-app.example.com"],
    )
    description: str = Field(
        default="",
        max_length=DESCRIPTION_MAX,
        pattern=grammar.ONE_LINE.json,
        description="A note for humans: one line.",
    )
    superuser_email: Email | None = Field(
        default=None,
        description="Create this first superuser once; a generated password is shown once"
        " (in the API's answer, or in a root-only file for a spec file).",
    )
    superuser_password_file: Annotated[str | None, FILE_ONLY] = Field(
        default=None,
        description="Absolute path of a file holding the superuser password "
        "(instead of generating one).",
    )
    created_by: Annotated[str, InApi(patch=False)] = Field(
        default="",
        max_length=CREATED_BY_MAX,
        pattern=grammar.ONE_LINE.json,
        description="Who asked for the service; the API fills in the caller (token name or"
        " admin e-mail).",
    )
    desired_state: DesiredState = Field(
        default="running", description="Whether the instance should run."
    )
    env: dict[EnvName, EnvValue] = Field(
        default_factory=dict,
        max_length=ENV_ENTRIES_MAX,
        description="Environment of the instance, e.g. GOMEMLIMIT.",
        examples=[{"GOMEMLIMIT": "400MiB"}],
    )
    secret_env: Annotated[dict[EnvName, EnvValue], InApi(view=False)] = Field(
        default_factory=dict,
        max_length=ENV_ENTRIES_MAX,
        description="Environment that is secret, such as the --encryptionEnv key: written "
        "like env to the instance's root-only environment file, never shown by the API "
        "(its view lists the names only). A name is given in env or here, not in both.",
        examples=[{"PB_ENCRYPTION_KEY": "32 random characters"}],
    )
    resources: Resources = Field(default_factory=Resources)
    flags: PocketBaseFlags = Field(default_factory=PocketBaseFlags)
    extra_dirs: tuple[ExtraDir, ...] = Field(
        default=(), description="Optional folders to create and pass to PocketBase."
    )
    app: Annotated[AppSource | None, FILE_ONLY] = Field(
        default=None,
        description="Deploy this folder's pb_hooks/, pb_migrations/ and pb_public/ as the"
        " service's app, again whenever it changes (spec files only).",
    )
    backups: BackupPolicy | None = Field(
        default=None,
        description="When snapshots are taken and verified and which are kept; null: the "
        "agent's default policy (its configuration's backups).",
    )
    egress: Annotated[tuple[Egress, ...], EGRESS_LIST] = Field(
        default=(),
        max_length=EGRESS_ENTRIES_MAX,
        description="Where the instance may connect beyond loopback: IP addresses or"
        " networks (an SMTP relay, an S3 endpoint, the DNS resolver), or 'any'. None by"
        " default: everything else is dropped. Written as Python writes them, a network with"
        " no host bits set; the schema states IPv4 exactly and IPv6 addresses, and IPv6"
        " networks (2001:db8::/32) are taken too.",
        examples=[["192.0.2.25", "10.0.0.0/8"]],
    )
    # -- proxy and tls (how Caddy serves the service), and downgrades --------------------
    proxy: ProxyOptions = Field(default_factory=ProxyOptions)
    tls: TlsOptions = Field(default_factory=TlsOptions)
    placement: PlacementOptions = Field(default_factory=PlacementOptions)
    node: NodeName | None = Field(
        default=None,
        description="The node of the fleet the service runs on (docs/fleet.md); none: the "
        "scheduler places a new one. A name no node of the fleet has is refused, and it "
        "cannot change once the service exists but by a move (pockestrator move).",
    )
    failover: Literal["off", "auto"] = Field(
        default="off",
        description="auto: when the service's node is lost for the agents' "
        "failover_grace_seconds, a live node brings it up from its newest off-site backup "
        "(what was written since is lost: docs/fleet.md, RPO). Needs backups.targets.",
    )
    allow_downgrade: bool = Field(
        default=False,
        description="Allow a pocketbase_version lower than the deployed one: the data backed "
        "up before the upgrade from that version is restored (what was written since is set "
        "aside, not deleted) rather than running older code on newer data.",
    )
    # -- sleeping (scale to zero): docs/spec-reference.md, "Sleeping instances" ---------
    sleep_after: SleepAfter | None = Field(
        default=None,
        description="Stop the instance after this long without a request through Caddy "
        "(5s to 30d: a whole number and s, m, h or d); the next request wakes it and is "
        "answered. PocketBase's own cron jobs do not run while it sleeps (see "
        "wake_schedule). null: never sleeps. Needs proxy.hold_requests of 1 or more.",
        examples=["15m"],
    )
    wake_schedule: Schedule | None = Field(
        default=None,
        description="Wake a sleeping instance at these times (UTC cron), so that "
        "PocketBase's cron jobs can run; it sleeps again after sleep_after without "
        "requests. Ignored without sleep_after.",
        examples=["0 3 * * *"],
    )
    # PocketBase's own settings (specs.pocketbase_settings), applied through its API.
    settings: PocketBaseSettings = Field(
        default_factory=PocketBaseSettings,
        description="PocketBase's own settings (its admin UI's), applied through its API;"
        " only what is declared is enforced, plus app_url and trusted_proxy by default.",
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
        problem = grammar.secret_file_problem(value)
        if problem is not None:
            raise PydanticCustomError(str(ErrorCode.INVALID_PATH), problem)
        return value

    @field_validator("env", "secret_env", mode="before")
    @classmethod
    def _not_too_many_variables(cls, value: Any) -> Any:
        if isinstance(value, Mapping) and len(value) > ENV_ENTRIES_MAX:
            raise PydanticCustomError(
                str(ErrorCode.VALUE_TOO_LONG), f"env may hold at most {ENV_ENTRIES_MAX} variables"
            )
        return value

    @model_validator(mode="after")
    def _fields_agree(self) -> ServiceSpec:
        """The rules between fields, in order: the first one broken refuses the spec."""
        both = sorted(set(self.env) & set(self.secret_env))
        rules = (
            (
                bool(both),
                ErrorCode.INVALID_ENV_NAME,
                f"{', '.join(both)} given in both env and secret_env; give each variable once",
            ),
            (
                self.domain in self.proxy.aliases,
                ErrorCode.INVALID_ALIAS,
                f"{self.domain} is the service's domain; an alias is another domain",
            ),
            (
                self.sleep_after is not None and self.proxy.hold_requests < 1,
                ErrorCode.INVALID_SLEEP_AFTER,
                "a sleeping instance is woken while Caddy holds the request: sleep_after "
                "needs proxy.hold_requests of 1 or more",
            ),
        )
        for broken, code, message in rules:
            if broken:
                raise PydanticCustomError(str(code), message)
        return self

    @property
    def sleep_seconds(self) -> int | None:
        """``sleep_after`` in seconds; None: the instance never sleeps."""
        return None if self.sleep_after is None else grammar.sleep_seconds(self.sleep_after)

    @field_validator("extra_dirs")
    @classmethod
    def _unique_dirs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted(set(value)))

    @field_validator("egress")
    @classmethod
    def _any_alone_and_each_once(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if "any" in value and len(value) > 1:
            raise PydanticCustomError(
                str(ErrorCode.INVALID_EGRESS), "'any' allows every address; give it alone"
            )
        if len(set(value)) != len(value):
            raise PydanticCustomError(str(ErrorCode.INVALID_EGRESS), "each address or network once")
        return value

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
# Checks across fields run on the whole spec; their errors name the field they are about.
_FIELD_OF_SPEC_CODES = {
    ErrorCode.INVALID_ALIAS: "proxy.aliases",
    ErrorCode.INVALID_SLEEP_AFTER: "sleep_after",
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
            if not location:
                field = _FIELD_OF_SPEC_CODES.get(code, field)
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
