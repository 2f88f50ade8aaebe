"""What clients send: strict JSON, query strings, and the error shape."""

from __future__ import annotations

from typing import Any

import pytest

from pockestrator.api.errors import ApiError, Problem, error_body, field_error, validation_failed
from pockestrator.api.inputs import parse_json, validate_model
from pockestrator.api.merge_patch import merge_patch
from pockestrator.api.models.requests import (
    ControlBody,
    DeleteQuery,
    LogsQuery,
    ServiceCreateBody,
    ServiceListQuery,
    ServicePatchBody,
)
from pockestrator.api.service_routes.checks import checked_spec
from pockestrator.specs.errors import ErrorCode


def codes(exc: ApiError) -> dict[str, str]:
    return {problem.field: problem.code for problem in exc.problems}


def test_json_bodies_parse() -> None:
    assert parse_json(b'{"a": [1, 2.5, "x", null, true]}') == {"a": [1, 2.5, "x", None, True]}


def test_a_key_given_twice_is_refused_rather_than_one_silently_winning() -> None:
    with pytest.raises(ApiError) as caught:
        parse_json(b'{"port": 8080, "port": 9090}')
    assert caught.value.status == 400
    assert codes(caught.value) == {"port": "DUPLICATE_KEY"}


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b'{"a": NaN}', b"[Infinity]", b"\xff\xfe", b"[" * 40 + b"]" * 40, b"[" * 100000],
)
def test_anything_that_is_not_plain_json_is_a_400(raw: bytes) -> None:
    with pytest.raises(ApiError) as caught:
        parse_json(raw)
    assert caught.value.status == 400
    assert caught.value.code == "INVALID_JSON"


def test_query_integers_and_booleans_are_parsed_strictly() -> None:
    query = ServiceListQuery.model_validate({"limit": "10", "offset": "0", "status": "active"})
    assert (query.limit, query.offset, query.status) == (10, 0, "active")
    assert DeleteQuery.model_validate({"purge": "TRUE", "wait": "false"}).purge is True
    assert LogsQuery.model_validate({}).lines == 100
    for bad in (
        {"limit": "1.0"},
        {"limit": "-1"},
        {"limit": "0"},
        {"limit": " 5"},
        {"limit": "1e3"},
        {"limit": "99999999999"},
        {"status": "running"},
    ):
        with pytest.raises(ValueError):
            ServiceListQuery.model_validate(bad)
    for bad_bool in ("1", "yes", "", "on"):
        with pytest.raises(ValueError):
            DeleteQuery.model_validate({"purge": bad_bool})


def test_bodies_are_validated_with_field_and_code() -> None:
    assert validate_model(ControlBody, {"action": "stop"}).action == "stop"
    with pytest.raises(ApiError) as caught:
        validate_model(ControlBody, {"action": "explode"})
    assert codes(caught.value) == {"action": "INVALID_VALUE"}
    with pytest.raises(ApiError) as caught:
        validate_model(ControlBody, {"action": "start", "force": True})
    assert codes(caught.value) == {"force": "UNKNOWN_FIELD"}
    with pytest.raises(ApiError) as caught:
        validate_model(ControlBody, ["start"])
    assert codes(caught.value) == {"body": "NOT_A_MAPPING"}


def spec_problems(body: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ApiError) as caught:
        checked_spec(dict(body), "example.com", ServiceCreateBody, body)
    return codes(caught.value)


GOOD = {"project_name": "my-app", "port": 8080, "pocketbase_version": "0.29.0"}


def test_a_good_spec_passes_and_gets_the_default_domain() -> None:
    spec = checked_spec(dict(GOOD), "example.com", ServiceCreateBody, GOOD)
    assert spec.domain == "my-app.example.com"


def test_grammar_codes_win_over_generic_ones() -> None:
    assert spec_problems({**GOOD, "project_name": "1app"}) == {
        "project_name": "NAME_MUST_START_WITH_LETTER"
    }
    assert spec_problems({**GOOD, "domain": "bad domain"}) == {"domain": "INVALID_DOMAIN"}
    assert spec_problems({**GOOD, "pocketbase_version": "v1"}) == {
        "pocketbase_version": "INVALID_VERSION"
    }


def test_the_api_wants_json_types_that_yaml_would_let_pass() -> None:
    assert spec_problems({**GOOD, "port": "8080"}) == {"port": "INVALID_TYPE"}
    assert spec_problems({**GOOD, "env": {"GOMAXPROCS": 2}}) == {"env.GOMAXPROCS": "INVALID_TYPE"}


def test_the_password_file_of_spec_files_is_not_an_api_field() -> None:
    assert spec_problems({**GOOD, "superuser_password_file": "/etc/shadow"}) == {
        "superuser_password_file": "UNKNOWN_FIELD"
    }


def test_every_problem_is_reported_at_once() -> None:
    problems = spec_problems({"project_name": "API", "port": 80, "extra": 1})
    assert problems == {
        "project_name": "INVALID_CHARACTERS",
        "port": "PORT_OUT_OF_RANGE",
        "pocketbase_version": "FIELD_REQUIRED",
        "extra": "UNKNOWN_FIELD",
    }


def test_patches_are_checked_against_their_own_shape() -> None:
    current = checked_spec(dict(GOOD), "example.com", ServiceCreateBody, GOOD)
    patch = {"env": {"A": "1", "B": None}, "description": "x"}
    merged = merge_patch(current.model_dump(mode="json"), patch)
    spec = checked_spec(merged, "example.com", ServicePatchBody, patch)
    assert spec.env == {"A": "1"} and spec.description == "x"
    with pytest.raises(ApiError):
        bad = {"port": "9000"}
        checked_spec(
            merge_patch(current.model_dump(mode="json"), bad), "x.com", ServicePatchBody, bad
        )


def test_errors_carry_both_reference_shapes() -> None:
    problems = [
        Problem("port", "Port 8080 is already in use", ErrorCode.PORT_IN_USE),
        Problem("port", "Port must be free", ErrorCode.PORT_IN_USE),
        Problem("project_name", "Project name already exists", ErrorCode.DUPLICATE_PROJECT_NAME),
    ]
    body = validation_failed(problems).body()
    assert body["status"] == "error" and body["id"] == ""
    assert body["message"] == body["error"] == "Validation failed"
    assert body["code"] == "VALIDATION_FAILED"
    assert body["errors"] == [problem.as_dict() for problem in problems]
    assert body["details"] == {
        "port": ["Port 8080 is already in use", "Port must be free"],
        "project_name": ["Project name already exists"],
    }


def test_an_error_without_field_problems_still_lists_one() -> None:
    body = error_body("No such endpoint", ErrorCode.NOT_FOUND)
    assert body["errors"] == [
        {"field": "request", "message": "No such endpoint", "code": "NOT_FOUND"}
    ]
    assert body["details"] == {"request": ["No such endpoint"]}


def test_an_error_about_one_field_names_that_field_in_both_shapes() -> None:
    error = field_error(
        409, ErrorCode.OWNED_BY_FILE, "project_name", "Owned by a file", service_id="abc"
    )
    assert (error.status, error.headers) == (409, {})
    assert error.body() == {
        "id": "abc",
        "status": "error",
        "message": "Owned by a file",
        "error": "Owned by a file",
        "code": "OWNED_BY_FILE",
        "errors": [
            {"field": "project_name", "message": "Owned by a file", "code": "OWNED_BY_FILE"}
        ],
        "details": {"project_name": ["Owned by a file"]},
    }
