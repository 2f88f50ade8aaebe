"""One enum of error codes: the values are the public contract, spelt as their names."""

from __future__ import annotations

from pockestrator.specs.errors import ErrorCode

# What the API answers besides field codes; clients and scripts match on these strings.
API_CODES = [
    "VALIDATION_FAILED",
    "INVALID_JSON",
    "UNSUPPORTED_MEDIA_TYPE",
    "PAYLOAD_TOO_LARGE",
    "UNAUTHORIZED",
    "ORIGIN_NOT_ALLOWED",
    "HOST_NOT_ALLOWED",
    "NOT_FOUND",
    "METHOD_NOT_ALLOWED",
    "SERVICE_NOT_FOUND",
    "TOKEN_NOT_FOUND",
    "WEBHOOK_NOT_FOUND",
    "INVALID_CREDENTIALS",
    "LOGIN_THROTTLED",
    "NOT_A_SESSION",
    "CONTROL_FAILED",
    "JOURNAL_UNAVAILABLE",
    "TOO_MANY_STREAMS",
    "NODE_UNREACHABLE",
    "NODE_CALL_REFUSED",
    "SECRET_ON_ANOTHER_NODE",
    "INTERNAL_ERROR",
    "HTTP_ERROR",
    "IDEMPOTENCY_KEY_REUSED",
    "IDEMPOTENCY_KEY_IN_USE",
    "PRECONDITION_FAILED",
]
HOST_CHECK_CODES = [
    "SYSTEMD_UNAVAILABLE",
    "SYSTEMD_DIR_NOT_WRITABLE",
    "BASE_DIR_NOT_WRITABLE",
    "CADDY_SITES_DIR_NOT_WRITABLE",
    "DATABASE_NOT_WRITABLE",
    "MISSING_CADDY",
    "CADDYFILE_NOT_WRITABLE",
    "CADDY_NOT_RUNNING",
    "MISSING_JOURNALCTL",
    "CADDY_ADMIN_EXPOSED",
]


def test_every_code_is_spelt_as_its_own_name() -> None:
    assert [code.value for code in ErrorCode] == [code.name for code in ErrorCode]


def test_the_api_and_host_check_codes_are_members_with_their_published_values() -> None:
    assert [ErrorCode(value).value for value in API_CODES + HOST_CHECK_CODES] == (
        API_CODES + HOST_CHECK_CODES
    )


def test_a_code_is_its_text_wherever_a_string_is_expected() -> None:
    assert str(ErrorCode.PORT_IN_USE) == "PORT_IN_USE"
    assert f"{ErrorCode.LOGIN_THROTTLED}" == "LOGIN_THROTTLED"
