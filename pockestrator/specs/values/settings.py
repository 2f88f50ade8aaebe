"""The value types of PocketBase's own settings (``specs.pocketbase_settings``) and of
the webhooks (their URL, the event kinds they follow), which share the settings' parsers.
Each value refuses with the code of its section (INVALID_SMTP for every bad SMTP value),
naming the field in its message; the field path says exactly where.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field
from pydantic_core import PydanticCustomError

from pockestrator.specs import grammar
from pockestrator.specs.errors import ErrorCode
from pockestrator.specs.grammar import GrammarError
from pockestrator.specs.values.parsers import (
    _checked,
    _none_of,
    _signed_number,
    http_url,
    matching,
    one_line,
    whole_number,
)

SETTING_TEXT_MAX = 255
AppName = Annotated[str, *one_line(ErrorCode.INVALID_APP_NAME, "app_name", SETTING_TEXT_MAX)]
AppUrl = Annotated[str, *http_url(ErrorCode.INVALID_APP_URL, "app_url")]
# Where a webhook is delivered: http(s), a lowercase host, a port, a path; no credentials
# (no '@'), query or fragment (docs/security.md says what such a URL can reach).
WebhookUrl = Annotated[str, *http_url(ErrorCode.INVALID_WEBHOOK_URL, "url")]
EventKind = Annotated[
    str,
    *matching(
        ErrorCode.INVALID_EVENT_KIND,
        grammar.EVENT_KIND,
        "must be an event kind: lowercase letters, digits and '_', e.g. process_restarted",
        min_length=1,
        max_length=64,
    ),
]
HeaderName = Annotated[
    str,
    *matching(
        ErrorCode.INVALID_TRUSTED_PROXY,
        grammar.HEADER_NAME,
        "a header name is 1 to 64 letters, digits and '-', starting with a letter "
        "(e.g. X-Forwarded-For)",
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
    int, *whole_number("max_requests", 1, 1_000_000, "", ErrorCode.INVALID_RATE_LIMIT)
]
RateLimitSeconds = Annotated[
    int, *whole_number("duration", 1, 86_400, " seconds", ErrorCode.INVALID_RATE_LIMIT)
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
SmtpPort = Annotated[int, *whole_number("port", 1, 65535, "", ErrorCode.INVALID_SMTP)]
SmtpText = Annotated[str, *one_line(ErrorCode.INVALID_SMTP, "the value", SETTING_TEXT_MAX)]
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
    *matching(
        ErrorCode.INVALID_S3,
        grammar.S3_BUCKET,
        "bucket must be 3 to 63 lowercase letters, digits, '.' and '-', starting and "
        "ending with a letter or digit",
    ),
]
S3Region = Annotated[
    str,
    *matching(
        ErrorCode.INVALID_S3,
        grammar.S3_REGION,
        "region must be 1 to 64 letters, digits, '_' and '-' (e.g. us-east-1)",
    ),
]
S3Endpoint = Annotated[str, *http_url(ErrorCode.INVALID_S3, "endpoint")]
S3AccessKey = Annotated[
    str,
    *matching(
        ErrorCode.INVALID_S3,
        grammar.S3_ACCESS_KEY,
        "access_key must be 1 to 256 letters, digits and + / = . _ ~ -",
    ),
]
LOG_DAYS_MAX = 36_500
LogDays = Annotated[
    int, *whole_number("max_days", 0, LOG_DAYS_MAX, " days", ErrorCode.INVALID_LOGS)
]
# PocketBase's levels are slog's: -4 debug, 0 info, 4 warn, 8 error.
LogLevel = Annotated[
    int,
    Field(ge=-4, le=8),
    BeforeValidator(_signed_number(ErrorCode.INVALID_LOGS, "min_level", -4, 8)),
]
BatchRequests = Annotated[
    int, *whole_number("max_requests", 1, 10_000, "", ErrorCode.INVALID_BATCH)
]
BatchSeconds = Annotated[
    int, *whole_number("timeout", 1, 3600, " seconds", ErrorCode.INVALID_BATCH)
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
    *matching(
        ErrorCode.INVALID_SECRET,
        grammar.CREDENTIAL_NAME,
        "credential must be a credential's name: 1 to 128 letters, digits, '_', '.' and "
        "'-', not starting with '.' or '-'",
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
    str, *matching(ErrorCode.INVALID_SECRET, STORED_TAG, "stored must be 16 hex digits")
]
