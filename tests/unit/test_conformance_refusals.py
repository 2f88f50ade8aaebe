"""The conformance run's rule of when a schema-valid request may be refused
(``tests.conformance.refusals``): the world's answers and the rules stated in words pass,
any other refusal is reported by field and code."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conformance.refusals import unexplained_refusals


def refusal(*problems: tuple[str, str]) -> dict[str, Any]:
    return {
        "code": "VALIDATION_FAILED",
        "errors": [{"field": f, "code": c, "message": "..."} for f, c in problems],
    }


@pytest.mark.parametrize(
    ("operation", "status", "body", "unexplained"),
    [
        ("createService", 201, {"id": "a"}, []),
        ("createService", 500, None, []),  # not a refusal: not_a_server_error reports it
        ("createService", 400, refusal(("pocketbase_version", "VERSION_NOT_FOUND")), []),
        ("createService", 409, refusal(("port", "PORT_IN_USE")), []),
        ("createService", 400, refusal(("port", "PORT_RESERVED")), []),
        ("updateService", 400, refusal(("project_name", "INVALID_VALUE")), []),
        ("createService", 400, refusal(("<spec>", "INVALID_ENV_NAME")), []),
        ("logout", 400, refusal(("Authorization", "NOT_A_SESSION")), []),
        (
            "listTokens",
            400,
            refusal(("Authorization", "NOT_A_SESSION")),
            ["Authorization: NOT_A_SESSION"],
        ),
        ("getService", 404, {"code": "SERVICE_NOT_FOUND"}, []),
        ("listServices", 401, {"code": "UNAUTHORIZED"}, []),
        ("login", 429, {"code": "TOO_MANY_ATTEMPTS"}, []),
        ("listServices", 400, refusal(("domain", "INVALID_DOMAIN")), ["domain: INVALID_DOMAIN"]),
        (
            "createService",
            400,
            refusal(("project_name", "INVALID_VALUE")),
            ["project_name: INVALID_VALUE"],
        ),
        (
            "createService",
            422,
            refusal(("port", "PORT_IN_USE"), ("memory_max", "INVALID_VALUE")),
            ["memory_max: INVALID_VALUE"],
        ),
        ("createService", 400, {"code": "BAD"}, ["<body>: no problem list in the answer"]),
        ("createService", 400, {"errors": []}, ["<body>: an empty problem list"]),
    ],
)
def test_a_refusal_passes_only_for_the_world_or_a_rule_stated_in_words(
    operation: str, status: int, body: Any, unexplained: list[str]
) -> None:
    assert unexplained_refusals(operation, status, body) == unexplained
