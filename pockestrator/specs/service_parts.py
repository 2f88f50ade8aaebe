"""The parts of a ``ServiceSpec`` that are models of their own: resources, the app's
source, PocketBase's flags, how Caddy serves it (proxy, tls) and placement hints.

Each is declared once here and used by ``specs.model.ServiceSpec`` (and through it by the
API's bodies and views, ``api.spec_shapes``).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
)
from pydantic_core import PydanticCustomError

from pockestrator.specs.errors import ErrorCode
from pockestrator.specs.values.parsers import InSchema
from pockestrator.specs.values.service import (
    BodySize,
    CpuQuota,
    Domain,
    EnvName,
    HoldSeconds,
    HooksPool,
    MemoryLimit,
    NodeName,
    Origin,
    QueryTimeout,
    SpecTlsMode,
)

DESCRIPTION_MAX = 500
CREATED_BY_MAX = 254
ENV_ENTRIES_MAX = 100
EGRESS_ENTRIES_MAX = 32
ORIGINS_MAX = 50


def flag_name(field: str) -> str:
    """``query_timeout`` -> ``--queryTimeout``: the flag a field of PocketBaseFlags sets."""
    first, *rest = field.split("_")
    return "--" + first + "".join(part.capitalize() for part in rest)


class Resources(BaseModel):
    """Limits applied by systemd (``MemoryMax=``, ``CPUQuota=``), in systemd's own syntax."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    memory_max: MemoryLimit | None = Field(
        default=None,
        description="MemoryMax=: bytes with K, M, G or T (at least 16M), a percentage or infinity.",
        examples=["512M"],
    )
    cpu_quota: CpuQuota | None = Field(
        default=None, description="CPUQuota=: 1% to 10000% (100% is one core).", examples=["50%"]
    )


APP_PATH_MAX = 1024


class AppSource(BaseModel):
    """Where a spec file's app lives: a folder of pb_hooks/, pb_migrations/, pb_public/.

    Relative to the spec file (the agent stores it resolved); a change in it is a deploy.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(
        min_length=1,
        max_length=APP_PATH_MAX,
        description="The app's folder, relative to the spec file (e.g. ./myapp).",
        examples=["./myapp"],
    )

    @field_validator("path", mode="before")
    @classmethod
    def _plain_path(cls, value: Any) -> Any:
        if isinstance(value, str) and any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise PydanticCustomError(
                str(ErrorCode.INVALID_PATH), "must not hold control characters"
            )
        return value


class PocketBaseFlags(BaseModel):
    """The allow-list of extra ``pocketbase serve`` flags; anything else is refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    origins: (
        Annotated[tuple[Origin, ...], InSchema({"minItems": 1, "maxItems": ORIGINS_MAX})] | None
    ) = Field(
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
        """``--name=value`` arguments in the order of the fields (deterministic rendering).

        A field's flag is its name in PocketBase's camelCase (``query_timeout`` is
        ``--queryTimeout``), so a new flag is one new field.
        """
        arguments = []
        for field in type(self).model_fields:
            flag = flag_name(field)
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


# -- proxy and tls: how Caddy serves the service ----------------------------------------

ALIASES_MAX = 20
DEFAULT_MAX_BODY_SIZE = "10MB"
DEFAULT_HOLD_REQUESTS = 10


class ProxyOptions(BaseModel):
    """How Caddy serves the service: its other domains, the body limit, and holding
    requests while the instance restarts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_body_size: BodySize = Field(
        default=DEFAULT_MAX_BODY_SIZE,
        description="Largest request body Caddy passes on (413 beyond it): B, KB, MB, GB "
        "(powers of 1000) or KiB, MiB, GiB (powers of 1024), from 1KB to 1GiB. PocketBase's "
        "own per-field file limits still apply.",
        examples=["50MB"],
    )
    aliases: tuple[Domain, ...] = Field(
        default=(),
        max_length=ALIASES_MAX,
        description=f"More domains for the same instance (at most {ALIASES_MAX}), each "
        "unique across services, in the grammar of domain.",
        examples=[["www.my-app.example.com"]],
    )
    redirect_aliases: bool = Field(
        default=False,
        description="Answer the aliases with a 301 redirect to the main domain instead of "
        "serving the instance on them.",
    )
    hold_requests: HoldSeconds = Field(
        default=DEFAULT_HOLD_REQUESTS,
        description="Seconds Caddy holds and retries a request while the instance does not "
        "accept connections (a restart, an upgrade), before it answers 502; 0 fails at once.",
        examples=[10],
    )

    @field_validator("aliases", mode="before")
    @classmethod
    def _not_too_many_aliases(cls, value: Any) -> Any:
        if isinstance(value, list | tuple) and len(value) > ALIASES_MAX:
            raise PydanticCustomError(
                str(ErrorCode.INVALID_ALIAS), f"aliases may list at most {ALIASES_MAX} domains"
            )
        return value

    @field_validator("aliases")
    @classmethod
    def _each_alias_once(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        twice = sorted({alias for alias in value if value.count(alias) > 1})
        if twice:
            raise PydanticCustomError(
                str(ErrorCode.INVALID_ALIAS), f"{', '.join(twice)} given more than once"
            )
        return value


class TlsOptions(BaseModel):
    """How the service's domains get certificates, and whether browsers must keep to HTTPS."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: SpecTlsMode | None = Field(
        default=None,
        description="auto (ACME), internal (Caddy's local CA) or off (plain HTTP); null: the "
        "agent's caddy_tls.",
        examples=["internal"],
    )
    hsts: bool = Field(
        default=True,
        description="Send Strict-Transport-Security (one year) over HTTPS, so that browsers "
        "never use plain HTTP for these domains again.",
    )


class PlacementOptions(BaseModel):
    """Hints to the fleet's scheduler (docs/fleet.md) for a service without ``node``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spread: NodeName | None = Field(
        default=None,
        description="Services with the same spread key go to different nodes while they "
        "can: of the nodes that fit, the one with the fewest of them is chosen first.",
        examples=["shop-replicas"],
    )
