"""The document states every constraint of a service body: what it admits is taken, what it
refuses is refused, judged by the server's own checks with no network and no host.

Bodies come from schemathesis' generators for the operations of the real document (as the
fuzzer makes them), go through JSON as they would on the wire, and then through what the
handlers run before they look at the world: ``checked_spec`` (the grammar's parser, then the
strict body), after RFC 7396 for a patch. A refusal the document explains in words (a rule
across fields, ``tests.conformance.refusals``) is the only one allowed of an admitted body.
The live fuzzing (tests/integration/test_api_fuzz.py, ``make conformance``) adds the world.
"""

from __future__ import annotations

import json
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.parameters import ParameterLocation

from pockestrator.api.errors import ApiError
from pockestrator.api.inputs import parse_json
from pockestrator.api.merge_patch import merge_patch
from pockestrator.api.models.requests import ServiceCreateBody, ServicePatchBody
from pockestrator.api.openapi import build_openapi
from pockestrator.api.server import all_operations
from pockestrator.api.service_routes.checks import checked_spec
from pockestrator.specs.model import parse_spec
from tests.conformance.refusals import explained
from tests.examples import examples

OPERATIONS = {
    result.ok().definition.raw["operationId"]: result.ok()
    for result in schemathesis.openapi.from_dict(
        build_openapi(all_operations())
    ).get_all_operations()
}
DEFAULT_DOMAIN = "localhost"
# The service a generated patch is applied to, as the store would hold it.
BASE = parse_spec(
    {"project_name": "base", "port": 8200, "pocketbase_version": "0.40.6"}, DEFAULT_DOMAIN
)


def on_the_wire(body: Any) -> bytes:
    """``body`` as it is sent: JSON, unless the generator made the bytes itself."""
    return body if isinstance(body, bytes) else json.dumps(body).encode()


def problems(operation_id: str, raw: bytes) -> list[tuple[str, str]] | None:
    """What the handler's checks refuse in a body before the world is asked (None: taken)."""
    try:
        body = parse_json(raw)
        if not isinstance(body, dict):
            return [("body", "NOT_A_MAPPING")]
        if operation_id == "updateService":
            if "project_name" in body and body["project_name"] != BASE.project_name:
                return [("project_name", "INVALID_VALUE")]
            merged = merge_patch(BASE.model_dump(mode="json"), body)
            merged["project_name"] = BASE.project_name
            checked_spec(merged, DEFAULT_DOMAIN, ServicePatchBody, body)
        else:
            data = dict(body)
            if operation_id == "createService" and not data.get("created_by"):
                data["created_by"] = "caller"  # the caller's name, as create fills it in
            checked_spec(data, DEFAULT_DOMAIN, ServiceCreateBody, body)
    except ApiError as refused:
        return [(problem.field, str(problem.code)) for problem in refused.problems]
    return None


def body_mode(case: schemathesis.Case) -> GenerationMode | None:
    meta = case.meta
    if meta is None:
        return None
    component = meta.components.get(ParameterLocation.BODY)
    return component.mode if component is not None else None


def run_cases(operation_id: str, mode: GenerationMode, count: int, verdict: Any) -> int:
    """Feed ``count`` generated cases of ``mode`` to ``verdict``; how many had a body of it."""
    seen = [0]

    @hypothesis.settings(
        max_examples=count,
        deadline=None,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(case=OPERATIONS[operation_id].as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        if body_mode(case) is mode:
            seen[0] += 1
            verdict(on_the_wire(case.body))

    run()
    return seen[0]


@pytest.mark.parametrize("operation_id", ["createService", "validateService", "updateService"])
def test_every_body_the_document_admits_is_taken(operation_id: str) -> None:
    def taken(body: Any) -> None:
        refused = problems(operation_id, body) or []
        unexplained = [p for p in refused if not explained(operation_id, *p)]
        assert not unexplained, (unexplained, body)

    assert run_cases(operation_id, GenerationMode.POSITIVE, examples(60), taken) > 0


@pytest.mark.parametrize("operation_id", ["createService", "updateService"])
def test_every_body_the_document_refuses_is_refused(operation_id: str) -> None:
    def refused(body: Any) -> None:
        assert problems(operation_id, body) is not None, body

    assert run_cases(operation_id, GenerationMode.NEGATIVE, examples(60), refused) > 0


@pytest.mark.parametrize(
    ("text", "value"),
    [("31150.0", 31150), ("3.6e3", 3600), ("1E3", 1000), ("2.5", 2.5), ("1e400", float("inf"))],
)
def test_a_whole_number_written_with_a_fraction_is_the_integer_json_schema_says(
    text: str, value: float
) -> None:
    parsed = parse_json(f'{{"n": {text}}}'.encode())["n"]
    assert parsed == value and type(parsed) is type(value)


@hypothesis.settings(max_examples=examples(100), deadline=None)
@hypothesis.given(st.integers(min_value=-(2**53), max_value=2**53))
def test_every_exact_integer_survives_a_float_spelling(number: int) -> None:
    assert parse_json(f"[{number}.0]".encode()) == [number]
