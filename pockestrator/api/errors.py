"""Every error the API answers, in one JSON shape that satisfies both reference variants.

The reference shows two error bodies: ``{id, status: "error", message, errors: [{field,
message, code}]}`` and ``{error, details: {field: [messages]}}``. Clients of either must
work, so every error carries both, plus one top-level ``code`` for scripts. Handlers raise
``ApiError``; the error middleware turns it (and aiohttp's own 404/405/413) into a response.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum

from aiohttp import web

from pockestrator.specs.errors import FieldIssue


class ApiCode(StrEnum):
    """Codes of the API's own errors (field-level spec codes come from ``ErrorCode``)."""

    VALIDATION_FAILED = "VALIDATION_FAILED"
    INVALID_JSON = "INVALID_JSON"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    UNAUTHORIZED = "UNAUTHORIZED"
    ORIGIN_NOT_ALLOWED = "ORIGIN_NOT_ALLOWED"
    HOST_NOT_ALLOWED = "HOST_NOT_ALLOWED"
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    SERVICE_NOT_FOUND = "SERVICE_NOT_FOUND"
    TOKEN_NOT_FOUND = "TOKEN_NOT_FOUND"  # noqa: S105 (an error code)
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    LOGIN_THROTTLED = "LOGIN_THROTTLED"
    NOT_A_SESSION = "NOT_A_SESSION"
    CONTROL_FAILED = "CONTROL_FAILED"
    SYSTEMD_ERROR = "SYSTEMD_ERROR"
    JOURNAL_UNAVAILABLE = "JOURNAL_UNAVAILABLE"
    TOO_MANY_STREAMS = "TOO_MANY_STREAMS"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    HTTP_ERROR = "HTTP_ERROR"


class Problem:
    """One problem with one field (or with the request as a whole: field ``request``)."""

    __slots__ = ("code", "field", "message")

    def __init__(self, field: str, message: str, code: str) -> None:
        self.field = field
        self.message = message
        self.code = code

    @classmethod
    def of(cls, issue: FieldIssue) -> Problem:
        return cls(issue.field, issue.message, str(issue.code))

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message, "code": self.code}

    def __repr__(self) -> str:
        return f"Problem({self.field!r}, {self.message!r}, {self.code!r})"


def details_of(problems: Iterable[Problem]) -> dict[str, list[str]]:
    """The second variant's ``details``: messages grouped by field."""
    details: dict[str, list[str]] = {}
    for problem in problems:
        details.setdefault(problem.field, []).append(problem.message)
    return details


def error_body(
    message: str,
    code: str,
    problems: Iterable[Problem] = (),
    *,
    summary: str | None = None,
    service_id: str = "",
) -> dict[str, object]:
    """The union error body (see the module docstring)."""
    listed = list(problems)
    if not listed:
        listed = [Problem("request", message, code)]
    return {
        "id": service_id,
        "status": "error",
        "message": message,
        "error": summary or message,
        "code": code,
        "errors": [problem.as_dict() for problem in listed],
        "details": details_of(listed),
    }


class ApiError(Exception):
    """Answer with ``status`` and the union error body; ``headers`` are added as they are."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        problems: Iterable[Problem] = (),
        *,
        summary: str | None = None,
        service_id: str = "",
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.problems = list(problems)
        self.summary = summary
        self.service_id = service_id
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self) -> dict[str, object]:
        body = error_body(
            self.message,
            self.code,
            self.problems,
            summary=self.summary,
            service_id=self.service_id,
        )
        body.update(self.extra)
        return body

    def response(self) -> web.Response:
        return web.json_response(self.body(), status=self.status, headers=self.headers)


def validation_failed(problems: Iterable[Problem], *, status: int = 400) -> ApiError:
    """400 with every problem found (not just the first), as the reference shows."""
    listed = list(problems)
    return ApiError(
        status,
        listed[0].code if len(listed) == 1 else ApiCode.VALIDATION_FAILED,
        "Validation failed",
        listed,
        summary="Validation failed",
    )


def not_found(kind: str, key: str, code: str) -> ApiError:
    return ApiError(
        404, code, f"{kind} '{key[:100]}' not found", [Problem("id", "not found", code)]
    )
