"""Stable error codes and the shape every validation problem takes: field, message, code.

Codes are part of the public contract (the REST API returns them, scripts match on them),
so they are one enum, used everywhere a code is given (spec validation, spec files, the
API's own errors, the host checks), whose values never change meaning. Where the reference
API names a code (``DUPLICATE_PROJECT_NAME``, ``PROJECT_NAME_EXISTS``, ``PORT_IN_USE``,
``VERSION_NOT_LATEST``, ``SYSTEMD_DIR_NOT_WRITABLE``, ...), that code is used.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum


class ErrorCode(StrEnum):
    # Shape of the input.
    FIELD_REQUIRED = "FIELD_REQUIRED"
    UNKNOWN_FIELD = "UNKNOWN_FIELD"
    INVALID_TYPE = "INVALID_TYPE"
    INVALID_VALUE = "INVALID_VALUE"
    VALUE_TOO_LONG = "VALUE_TOO_LONG"
    INVALID_CHARACTERS = "INVALID_CHARACTERS"

    # project_name.
    NAME_TOO_LONG = "NAME_TOO_LONG"
    NAME_MUST_START_WITH_LETTER = "NAME_MUST_START_WITH_LETTER"
    NAME_ENDS_WITH_HYPHEN = "NAME_ENDS_WITH_HYPHEN"
    RESERVED_NAME = "RESERVED_NAME"
    DUPLICATE_PROJECT_NAME = "DUPLICATE_PROJECT_NAME"
    PROJECT_NAME_EXISTS = "PROJECT_NAME_EXISTS"

    # port.
    PORT_OUT_OF_RANGE = "PORT_OUT_OF_RANGE"
    PORT_RESERVED = "PORT_RESERVED"
    PORT_IN_USE = "PORT_IN_USE"

    # domain.
    INVALID_DOMAIN = "INVALID_DOMAIN"
    DOMAIN_TOO_LONG = "DOMAIN_TOO_LONG"
    DOMAIN_IN_USE = "DOMAIN_IN_USE"
    DOMAIN_UNREACHABLE = "DOMAIN_UNREACHABLE"

    # pocketbase_version.
    INVALID_VERSION = "INVALID_VERSION"
    VERSION_NOT_FOUND = "VERSION_NOT_FOUND"
    VERSION_NOT_LATEST = "VERSION_NOT_LATEST"
    VERSION_CHECK_UNAVAILABLE = "VERSION_CHECK_UNAVAILABLE"
    VERSION_DOWNGRADE = "VERSION_DOWNGRADE"

    # env, resources, flags, superuser.
    INVALID_ENV_NAME = "INVALID_ENV_NAME"
    RESERVED_ENV_NAME = "RESERVED_ENV_NAME"
    INVALID_ENV_VALUE = "INVALID_ENV_VALUE"
    INVALID_MEMORY_LIMIT = "INVALID_MEMORY_LIMIT"
    INVALID_CPU_QUOTA = "INVALID_CPU_QUOTA"
    FLAG_NOT_ALLOWED = "FLAG_NOT_ALLOWED"
    INVALID_FLAG_VALUE = "INVALID_FLAG_VALUE"
    INVALID_EMAIL = "INVALID_EMAIL"
    INVALID_PATH = "INVALID_PATH"
    INVALID_EGRESS = "INVALID_EGRESS"
    INVALID_SCHEDULE = "INVALID_SCHEDULE"
    INVALID_TARGET_NAME = "INVALID_TARGET_NAME"
    UNKNOWN_TARGET = "UNKNOWN_TARGET"

    # settings: PocketBase's own settings, one code per section, and their secrets.
    INVALID_APP_NAME = "INVALID_APP_NAME"
    INVALID_APP_URL = "INVALID_APP_URL"
    INVALID_TRUSTED_PROXY = "INVALID_TRUSTED_PROXY"
    INVALID_RATE_LIMIT = "INVALID_RATE_LIMIT"
    INVALID_SMTP = "INVALID_SMTP"
    INVALID_S3 = "INVALID_S3"
    INVALID_LOGS = "INVALID_LOGS"
    INVALID_BATCH = "INVALID_BATCH"
    INVALID_SECRET = "INVALID_SECRET"  # noqa: S105 (an error code)
    SECRET_NOT_ALLOWED_HERE = "SECRET_NOT_ALLOWED_HERE"  # noqa: S105 (an error code)

    # proxy and tls: how Caddy serves the service.
    INVALID_BODY_SIZE = "INVALID_BODY_SIZE"
    INVALID_ALIAS = "INVALID_ALIAS"
    INVALID_HOLD_REQUESTS = "INVALID_HOLD_REQUESTS"
    INVALID_TLS_MODE = "INVALID_TLS_MODE"

    # Sleeping instances (scale to zero).
    INVALID_SLEEP_AFTER = "INVALID_SLEEP_AFTER"

    # Spec files.
    YAML_SYNTAX = "YAML_SYNTAX"
    NOT_A_MAPPING = "NOT_A_MAPPING"
    FILE_UNREADABLE = "FILE_UNREADABLE"
    DUPLICATE_KEY = "DUPLICATE_KEY"

    # Ownership between sources.
    OWNED_BY_FILE = "OWNED_BY_FILE"
    OWNED_BY_OTHER_SOURCE = "OWNED_BY_OTHER_SOURCE"
    DELETION_PENDING = "DELETION_PENDING"

    # The API's own errors: the request as a whole, access, and operations that failed.
    VALIDATION_FAILED = "VALIDATION_FAILED"
    INVALID_JSON = "INVALID_JSON"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    UNAUTHORIZED = "UNAUTHORIZED"
    ORIGIN_NOT_ALLOWED = "ORIGIN_NOT_ALLOWED"
    PEER_NOT_ALLOWED = "PEER_NOT_ALLOWED"
    HOST_NOT_ALLOWED = "HOST_NOT_ALLOWED"
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    SERVICE_NOT_FOUND = "SERVICE_NOT_FOUND"
    TOKEN_NOT_FOUND = "TOKEN_NOT_FOUND"  # noqa: S105 (an error code)
    WEBHOOK_NOT_FOUND = "WEBHOOK_NOT_FOUND"
    INVALID_WEBHOOK_URL = "INVALID_WEBHOOK_URL"
    INVALID_EVENT_KIND = "INVALID_EVENT_KIND"
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    LOGIN_THROTTLED = "LOGIN_THROTTLED"
    NOT_A_SESSION = "NOT_A_SESSION"
    CONTROL_FAILED = "CONTROL_FAILED"
    JOURNAL_UNAVAILABLE = "JOURNAL_UNAVAILABLE"
    TOO_MANY_STREAMS = "TOO_MANY_STREAMS"
    # A fleet: another node holds what was asked (docs/fleet.md).
    NODE_UNREACHABLE = "NODE_UNREACHABLE"
    NODE_CALL_REFUSED = "NODE_CALL_REFUSED"
    SECRET_ON_ANOTHER_NODE = "SECRET_ON_ANOTHER_NODE"  # noqa: S105 (an error code)
    BACKUP_NOT_FOUND = "BACKUP_NOT_FOUND"
    OPERATION_NOT_FOUND = "OPERATION_NOT_FOUND"
    OPERATION_FAILED = "OPERATION_FAILED"
    ARCHIVE_NOT_FOUND = "ARCHIVE_NOT_FOUND"
    IMPORT_INVALID = "IMPORT_INVALID"
    UNSAFE_ARCHIVE = "UNSAFE_ARCHIVE"
    RELEASE_NOT_FOUND = "RELEASE_NOT_FOUND"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    # Moves between the nodes of a fleet (agent.move_plan).
    NODE_NOT_FOUND = "NODE_NOT_FOUND"
    ALREADY_ON_NODE = "ALREADY_ON_NODE"
    NODE_LOST = "NODE_LOST"
    MOVE_IN_PROGRESS = "MOVE_IN_PROGRESS"
    NO_OFFSITE_TARGET = "NO_OFFSITE_TARGET"
    MOVE_NOT_FOUND = "MOVE_NOT_FOUND"
    # HTTP habits: retried creates and conditional writes.
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    IDEMPOTENCY_KEY_IN_USE = "IDEMPOTENCY_KEY_IN_USE"
    PRECONDITION_FAILED = "PRECONDITION_FAILED"
    HTTP_ERROR = "HTTP_ERROR"

    # The host checks (system health, validate system).
    SYSTEMD_UNAVAILABLE = "SYSTEMD_UNAVAILABLE"
    SYSTEMD_DIR_NOT_WRITABLE = "SYSTEMD_DIR_NOT_WRITABLE"
    BASE_DIR_NOT_WRITABLE = "BASE_DIR_NOT_WRITABLE"
    CADDY_SITES_DIR_NOT_WRITABLE = "CADDY_SITES_DIR_NOT_WRITABLE"
    DATABASE_NOT_WRITABLE = "DATABASE_NOT_WRITABLE"
    DATABASE_FULL = "DATABASE_FULL"
    MISSING_CADDY = "MISSING_CADDY"
    CADDYFILE_NOT_WRITABLE = "CADDYFILE_NOT_WRITABLE"
    CADDY_NOT_RUNNING = "CADDY_NOT_RUNNING"
    MISSING_JOURNALCTL = "MISSING_JOURNALCTL"
    CADDY_ADMIN_EXPOSED = "CADDY_ADMIN_EXPOSED"


@dataclass(frozen=True)
class FieldIssue:
    """One problem with one field. ``line`` is set for spec files when known."""

    field: str
    message: str
    code: ErrorCode
    file: str | None = None
    line: int | None = None

    def as_dict(self) -> dict[str, object]:
        data = {key: value for key, value in asdict(self).items() if value is not None}
        data["code"] = str(self.code)
        return data

    def __str__(self) -> str:
        where = (
            f"{self.file}:{self.line}: "
            if self.file and self.line
            else (f"{self.file}: " if self.file else "")
        )
        return f"{where}{self.field}: {self.message} [{self.code}]"


class SpecInvalid(ValueError):
    """A spec failed validation; ``issues`` lists every problem found, not just the first."""

    def __init__(self, issues: list[FieldIssue]) -> None:
        self.issues = issues
        super().__init__("; ".join(str(issue) for issue in issues))
