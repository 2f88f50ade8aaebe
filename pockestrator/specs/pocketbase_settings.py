"""``settings``: what an operator would set in PocketBase's admin UI, declared in the spec.

The agent applies these through PocketBase's own API (``controllers.pbsettings``) and
enforces **only what is declared**: a field left out (None) is PocketBase's or the
operator's to set in the admin UI, and the agent never touches it. Two fields are always
declared, because every instance behind Caddy needs them: ``app_url`` (default: the
service's public URL, so that e-mails carry a live link) and ``trusted_proxy`` (default:
the header Caddy sets, read from the right, so that PocketBase sees the client's address
and not Caddy's).

Secrets (the SMTP password, the S3 secret) are a ``Secret``: exactly one of a root-only
``file`` or a ``credential`` of the agent's unit (spec files only), or a ``value`` (the
API only), which the store keeps in a root-only file of its own and replaces by a
``stored`` tag (``specs.store.secrets``), so that no row of the store and no answer of the
API ever holds one. The value types and their codes are in ``specs.values``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from pockestrator.specs.errors import ErrorCode, FieldIssue
from pockestrator.specs.values.parsers import FILE_ONLY, InApi
from pockestrator.specs.values.settings import (
    AppName,
    AppUrl,
    BatchRequests,
    BatchSeconds,
    CredentialName,
    HeaderName,
    LogDays,
    LogLevel,
    RateLimitAudience,
    RateLimitCount,
    RateLimitLabel,
    RateLimitSeconds,
    S3AccessKey,
    S3Bucket,
    S3Endpoint,
    S3Region,
    SecretFile,
    SecretText,
    SenderAddress,
    SmtpAuthMethod,
    SmtpHost,
    SmtpPort,
    SmtpText,
    StoredSecretId,
)

# The header Caddy's reverse_proxy sets to the address it received the request from,
# replacing whatever the client sent (Caddy trusts no proxy in front of it by default).
CADDY_CLIENT_HEADER = "X-Forwarded-For"
TRUSTED_HEADERS_MAX = 10
RATE_LIMIT_RULES_MAX = 100
SECRET_SOURCES = ("file", "credential", "value", "stored")

_SECTION = ConfigDict(extra="forbid", frozen=True)


def _at_most(value: Any, maximum: int, what: str, code: ErrorCode) -> Any:
    """A list of at most ``maximum`` entries, refused with the section's ``code``."""
    if isinstance(value, list | tuple) and len(value) > maximum:
        raise PydanticCustomError(str(code), f"{what} may list at most {maximum} entries")
    return value


class Secret(BaseModel):
    """Where a secret comes from: exactly one of ``file``, ``credential`` or ``value``."""

    model_config = _SECTION

    file: Annotated[SecretFile | None, FILE_ONLY] = Field(
        default=None,
        description="Absolute path of a root-owned file (mode 0600 or 0400) whose first line"
        " is the secret; read when the agent applies it.",
    )
    credential: Annotated[CredentialName | None, FILE_ONLY] = Field(
        default=None,
        description="Name of a systemd credential of the agent's unit (LoadCredential=NAME:"
        "...), read from $CREDENTIALS_DIRECTORY/NAME.",
    )
    value: Annotated[SecretText | None, InApi(view=False)] = Field(
        default=None,
        repr=False,
        description="The secret itself (the API only): kept by the agent in a root-only"
        " file, never stored in its database and never shown again.",
    )
    stored: Annotated[StoredSecretId | None, InApi(create=False, patch=False, view=False)] = Field(
        default=None, description="Set by the agent: which stored value is meant."
    )

    @model_validator(mode="after")
    def _exactly_one_source(self) -> Secret:
        given = [source for source in SECRET_SOURCES if getattr(self, source) is not None]
        if given == ["value", "stored"]:
            # A merge patch with a new value over one the agent keeps: the new one wins.
            return self.model_copy(update={"stored": None})
        if len(given) != 1:
            raise PydanticCustomError(
                str(ErrorCode.INVALID_SECRET),
                "give exactly one of file (a root-only file), credential (of the agent's "
                "unit) or value" + (f"; got {', '.join(given)}" if given else ""),
            )
        return self


def _secret_field(what: str) -> Any:
    """A section's optional secret, documented alike wherever a section has one."""
    return Field(
        default=None,
        description=f"{what}: a root-only file or a credential (or a value through the API);"
        " never shown.",
    )


class TrustedProxy(BaseModel):
    """Which request header holds the client's address (PocketBase's "trusted proxy")."""

    model_config = _SECTION

    headers: tuple[HeaderName, ...] = Field(
        default=(CADDY_CLIENT_HEADER,),
        max_length=TRUSTED_HEADERS_MAX,
        description="Headers PocketBase reads the client's address from, in order; [] for"
        " none (then it sees the proxy's address).",
    )
    use_leftmost_ip: bool = Field(
        default=False,
        description="Take the left-most address of the header instead of the right-most."
        " With Caddy as the only proxy the header holds one address; the right-most is the"
        " one the last proxy added, which no client can forge.",
    )

    @field_validator("headers", mode="before")
    @classmethod
    def _not_too_many_headers(cls, value: Any) -> Any:
        return _at_most(value, TRUSTED_HEADERS_MAX, "headers", ErrorCode.INVALID_TRUSTED_PROXY)


class RateLimitRule(BaseModel):
    """One of PocketBase's rate limit rules."""

    model_config = _SECTION

    label: RateLimitLabel = Field(
        description="What it limits: a tag, collection:action, *:action, a path prefix or"
        " a method and a path.",
        examples=["*:auth"],
    )
    max_requests: RateLimitCount = Field(description="Requests allowed per duration.")
    duration: RateLimitSeconds = Field(description="Seconds per which requests are counted.")
    audience: RateLimitAudience = Field(
        default="", description='Who: "" for everyone, "@guest" or "@auth".'
    )


class RateLimits(BaseModel):
    """PocketBase's built-in rate limiter: on or off, and its rules."""

    model_config = _SECTION

    enabled: bool | None = Field(default=None, description="Turn the rate limiter on or off.")
    rules: tuple[RateLimitRule, ...] | None = Field(
        default=None,
        max_length=RATE_LIMIT_RULES_MAX,
        description="The rules, all of them (they replace PocketBase's list).",
    )

    @field_validator("rules", mode="before")
    @classmethod
    def _not_too_many_rules(cls, value: Any) -> Any:
        return _at_most(value, RATE_LIMIT_RULES_MAX, "rules", ErrorCode.INVALID_RATE_LIMIT)

    @model_validator(mode="after")
    def _rules_that_pocketbase_takes(self) -> RateLimits:
        if self.enabled and self.rules == ():
            raise PydanticCustomError(
                str(ErrorCode.INVALID_RATE_LIMIT), "an enabled rate limiter needs rules"
            )
        keys: list[str] = []
        for index, rule in enumerate(self.rules or ()):
            # PocketBase's own rule: no key (label and audience) may start another.
            key = f"{rule.label}@@{rule.audience}"
            clash = next((k for k in keys if k.startswith(key) or key.startswith(k)), None)
            if clash is not None:
                raise PydanticCustomError(
                    str(ErrorCode.INVALID_RATE_LIMIT),
                    f"rule {index} ({rule.label!r}) conflicts with an earlier rule for the "
                    'same label; give each label once (an audience of "" covers both)',
                )
            keys.append(key)
        return self


class Smtp(BaseModel):
    """The mail server PocketBase sends through, and the sender of its e-mails."""

    model_config = _SECTION

    enabled: bool = Field(default=True, description="Send through this server.")
    host: SmtpHost | None = Field(default=None, examples=["smtp.example.com"])
    port: SmtpPort | None = Field(default=None, examples=[587])
    username: SmtpText | None = Field(default=None)
    password: Secret | None = _secret_field("The password")
    tls: bool | None = Field(
        default=None, description="Connect with TLS at once (port 465) instead of STARTTLS."
    )
    auth_method: SmtpAuthMethod | None = Field(default=None, description="PLAIN or LOGIN.")
    local_name: SmtpHost | None = Field(
        default=None, description="The name PocketBase gives in HELO/EHLO."
    )
    sender_name: SmtpText | None = Field(default=None, examples=["Support"])
    sender_address: SenderAddress | None = Field(default=None, examples=["support@example.com"])

    @model_validator(mode="after")
    def _a_server_to_send_through(self) -> Smtp:
        if self.enabled and self.host is None:
            raise PydanticCustomError(
                str(ErrorCode.INVALID_SMTP), "an enabled smtp section needs its host"
            )
        return self


class S3(BaseModel):
    """S3-compatible storage for the instance's uploaded files."""

    model_config = _SECTION

    enabled: bool = Field(default=True, description="Keep uploaded files in this bucket.")
    bucket: S3Bucket | None = Field(default=None)
    region: S3Region | None = Field(default=None, examples=["us-east-1"])
    endpoint: S3Endpoint | None = Field(default=None, examples=["https://s3.example.com"])
    access_key: S3AccessKey | None = Field(default=None)
    secret: Secret | None = _secret_field("The secret key")
    force_path_style: bool | None = Field(
        default=None, description="Address the bucket in the path, not the host name."
    )

    @model_validator(mode="after")
    def _everything_pocketbase_needs(self) -> S3:
        if self.enabled:
            missing = [
                name
                for name in ("bucket", "region", "endpoint", "access_key", "secret")
                if getattr(self, name) is None
            ]
            if missing:
                raise PydanticCustomError(
                    str(ErrorCode.INVALID_S3),
                    f"an enabled s3 section needs {', '.join(missing)}",
                )
        return self


class Logs(BaseModel):
    """PocketBase's request and app logs."""

    model_config = _SECTION

    max_days: LogDays | None = Field(
        default=None, description="Days logs are kept (0: none are kept)."
    )
    min_level: LogLevel | None = Field(
        default=None, description="The lowest level kept: -4 debug, 0 info, 4 warn, 8 error."
    )
    log_ip: bool | None = Field(default=None, description="Record the client's address.")


class Batch(BaseModel):
    """PocketBase's batch API (``/api/batch``)."""

    model_config = _SECTION

    enabled: bool | None = Field(default=None)
    max_requests: BatchRequests | None = Field(default=None, description="Requests per batch.")
    timeout: BatchSeconds | None = Field(
        default=None, description="Seconds a batch may take before it is cancelled."
    )


class PocketBaseSettings(BaseModel):
    """PocketBase's own settings, applied through its API; only declared fields are kept."""

    model_config = _SECTION

    app_name: AppName | None = Field(
        default=None, description="The name in the admin UI and in e-mails.", examples=["Shop"]
    )
    app_url: AppUrl | None = Field(
        default=None,
        description="The address in e-mails' links; default: the service's public URL.",
        examples=["https://shop.example.com"],
    )
    trusted_proxy: TrustedProxy = Field(default_factory=TrustedProxy)
    rate_limits: RateLimits | None = Field(default=None)
    smtp: Smtp | None = Field(default=None)
    s3: S3 | None = Field(default=None)
    logs: Logs | None = Field(default=None)
    batch: Batch | None = Field(default=None)


def secret_sources(settings: PocketBaseSettings) -> dict[str, Secret]:
    """Every secret the settings declare, by its field path under ``settings``."""
    found: dict[str, Secret] = {}
    if settings.smtp is not None and settings.smtp.password is not None:
        found["smtp.password"] = settings.smtp.password
    if settings.s3 is not None and settings.s3.secret is not None:
        found["s3.secret"] = settings.s3.secret
    return found


def with_secrets(settings: PocketBaseSettings, secrets: dict[str, Secret]) -> PocketBaseSettings:
    """``settings`` with the secrets at the paths ``secret_sources`` names replaced."""
    update: dict[str, Any] = {}
    for path, secret in secrets.items():
        section, field = path.split(".")
        current = update.get(section, getattr(settings, section))
        update[section] = current.model_copy(update={field: secret})
    return settings.model_copy(update=update)


def spec_file_secret_issues(settings: PocketBaseSettings, prefix: str) -> list[FieldIssue]:
    """A spec file names where a secret is, never the secret: a ``value`` (or the agent's
    ``stored`` tag) in one is refused."""
    issues = []
    for path, secret in secret_sources(settings).items():
        for source in ("value", "stored"):
            if getattr(secret, source) is not None:
                issues.append(
                    FieldIssue(
                        f"{prefix}{path}.{source}",
                        "a spec file cannot hold a secret: put it in a root-only file "
                        "(file: /path) or a credential of the agent's unit (credential: NAME)",
                        ErrorCode.SECRET_NOT_ALLOWED_HERE,
                    )
                )
    return issues
