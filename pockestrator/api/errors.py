"""Every error the API answers, in one JSON shape that satisfies both reference variants.

The reference shows two error bodies: ``{id, status: "error", message, errors: [{field,
message, code}]}`` and ``{error, details: {field: [messages]}}``. Clients of either must
work, so every error carries both, plus one top-level ``code`` for scripts. Every code is
an ``ErrorCode`` (one enum for spec problems and the API's own errors). Handlers raise
``ApiError`` (``field_error`` when the error is about one field, ``validation_failed`` for
every problem of a body, ``not_found``); the error middleware in ``api.server`` turns it (and
aiohttp's own 404/405/413) into a response.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from aiohttp import web

from pockestrator.specs.errors import ErrorCode, FieldIssue


class Problem:
    """One problem with one field (or with the request as a whole: field ``request``)."""

    __slots__ = ("code", "field", "message")

    def __init__(self, field: str, message: str, code: ErrorCode) -> None:
        self.field = field
        self.message = message
        self.code = code

    @classmethod
    def of(cls, issue: FieldIssue) -> Problem:
        return cls(issue.field, issue.message, issue.code)

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message, "code": str(self.code)}

    def __repr__(self) -> str:
        return f"Problem({self.field!r}, {self.message!r}, {str(self.code)!r})"


def details_of(problems: Iterable[Problem]) -> dict[str, list[str]]:
    """The second variant's ``details``: messages grouped by field."""
    details: dict[str, list[str]] = {}
    for problem in problems:
        details.setdefault(problem.field, []).append(problem.message)
    return details


def error_body(
    message: str,
    code: ErrorCode,
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
        "code": str(code),
        "errors": [problem.as_dict() for problem in listed],
        "details": details_of(listed),
    }


class ApiError(Exception):
    """Answer with ``status`` and the union error body; ``headers`` are added as they are."""

    def __init__(
        self,
        status: int,
        code: ErrorCode,
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


def field_error(
    status: int,
    code: ErrorCode,
    field: str,
    message: str,
    *,
    summary: str | None = None,
    service_id: str = "",
    headers: Mapping[str, str] | None = None,
) -> ApiError:
    """An error that is about one field (a header, a body field): its one problem names
    that field and says what the error says."""
    return ApiError(
        status,
        code,
        message,
        [Problem(field, message, code)],
        summary=summary,
        service_id=service_id,
        headers=headers,
    )


def validation_failed(problems: Iterable[Problem], *, status: int = 400) -> ApiError:
    """400 with every problem found (not just the first), as the reference shows."""
    listed = list(problems)
    return ApiError(
        status,
        listed[0].code if len(listed) == 1 else ErrorCode.VALIDATION_FAILED,
        "Validation failed",
        listed,
        summary="Validation failed",
    )


def not_found(kind: str, key: str, code: ErrorCode) -> ApiError:
    return ApiError(
        404, code, f"{kind} '{key[:100]}' not found", [Problem("id", "not found", code)]
    )
