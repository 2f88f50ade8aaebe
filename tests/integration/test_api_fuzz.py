"""Schemathesis against the API's own OpenAPI document, on a real agent.

Each operation is fuzzed with schema-valid (positive) and schema-invalid (negative) requests
carrying a valid token, and every answer must be no 5xx, a documented status code and
content type, and a body that matches the documented schema; invalid data must be refused,
and valid data refused only for the world's reasons or a rule the document states in words
(``tests.conformance.refusals``: a version that does not exist, a port that is taken).
Operations on one service are also fuzzed against a real, running service (its logs and
events without `follow` and the list and a service without `watch`, which would never end;
its spec on a second service, so that a fuzzed change, say a tiny memory limit, cannot make
the control fuzzing fail for reasons of its own).

Bounded: ``POCKESTRATOR_FUZZ_EXAMPLES`` examples per operation and mode (25 by default;
about half a minute in all on two cores). The full run, 200 examples per operation with
every phase and check, is ``python -m tests.conformance`` (``make conformance``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import hypothesis
import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from pockestrator.agent.daemon import Agent
from pockestrator.agent.sandbox import free_port
from pockestrator.api.openapi import build_openapi
from pockestrator.api.server import all_operations
from tests.conformance.checks import refused_only_for_reasons_the_document_gives

EXAMPLES = int(os.environ.get("POCKESTRATOR_FUZZ_EXAMPLES", "25"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    refused_only_for_reasons_the_document_gives,
]
OPERATIONS = [
    (method.upper(), path)
    for path, item in build_openapi(all_operations())["paths"].items()
    for method in item
]


class Target:
    def __init__(self, base_url: str, token: str, document: dict[str, Any]) -> None:
        self.base_url = base_url
        self.token = token
        self.document = document


@pytest.fixture(scope="module")
async def target(agent: Agent, pocketbase_versions: tuple[str, str]) -> AsyncIterator[Target]:
    token, _record = agent.accounts.create_token("schemathesis")
    base_url = f"http://{agent.config.listen_host}:{agent.config.listen_port}"
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        for name in ("fuzzed", "patched"):
            body = {
                "project_name": name,
                "port": free_port(),
                "pocketbase_version": pocketbase_versions[1],
            }
            async with session.post(
                base_url + "/api/pockestrator/services?wait=true", json=body
            ) as response:
                assert response.status == 201, await response.text()
        async with session.get(base_url + "/api/pockestrator/openapi.json") as response:
            document = await response.json()
    yield Target(base_url, token, document)


def variants(method: str, path: str) -> list[tuple[GenerationMode, dict[str, Any]]]:
    """How to fuzz one operation: random values everywhere, and on real services."""
    chosen: list[tuple[GenerationMode, dict[str, Any]]] = [
        (GenerationMode.POSITIVE, {}),
        (GenerationMode.NEGATIVE, {}),
    ]
    if "/services/{id}" in path and method != "DELETE":
        real = "patched" if method == "PATCH" else "fuzzed"
        chosen.append((GenerationMode.POSITIVE, {"path_parameters": {"id": real}}))
    return chosen


# Query parameters that open a stream which never ends (test_api_watch.py, test_webhooks.py
# and the logs tests read them); a generated true becomes false, which is as valid.
STREAMING = ("watch", "follow")


def fuzz(target: Target, method: str, path: str) -> list[str]:
    """Run every variant of one operation; the failures found, as text."""
    schema = schemathesis.openapi.from_dict(target.document)
    operation = next(
        result.ok()
        for result in schema.get_all_operations()
        if result.ok().method.upper() == method and result.ok().path == path
    )
    failures: list[str] = []
    statuses: dict[int, int] = {}
    for mode, extra in variants(method, path):
        strategy = operation.as_strategy(generation_mode=mode, **extra)

        @hypothesis.settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=False,
            suppress_health_check=list(hypothesis.HealthCheck),
            phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate, hypothesis.Phase.shrink],
        )
        @hypothesis.given(case=strategy)
        def run(case: schemathesis.Case) -> None:
            negative = mode is GenerationMode.NEGATIVE  # noqa: B023 (run() is called at once)
            if negative and isinstance(case.query, dict):
                # The transport drops a parameter whose value is None or an empty list, so
                # the request it sends may be valid after all: no such example.
                hypothesis.assume(all(v is not None and v != [] for v in case.query.values()))
            for name in STREAMING:
                if isinstance(case.query, dict) and str(case.query.get(name, "")).lower() == "true":
                    case.query[name] = "false"
            response = case.call_and_validate(
                base_url=target.base_url,
                headers={"Authorization": f"Bearer {target.token}"},
                checks=CHECKS,
                timeout=120,
            )
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        try:
            run()
        except hypothesis.errors.Unsatisfiable:
            pass  # nothing to negate (no parameters, no body): there is no invalid request
        except (Exception, BaseExceptionGroup) as exc:
            failures.append(f"{mode.value} {extra}: {exc}")
    assert statuses, "no request was made"
    return failures


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
async def test_fuzzed_requests_get_no_5xx_and_only_documented_answers(
    target: Target, method: str, path: str
) -> None:
    failures = await asyncio.to_thread(fuzz, target, method, path)
    assert not failures, "\n\n".join(failures)
