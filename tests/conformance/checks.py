"""schemathesis checks of this API, for the suite's fuzzing and the full run alike."""

from __future__ import annotations

import json
from typing import Any

from schemathesis import Case
from schemathesis.core.transport import Response

from tests.conformance.refusals import unexplained_refusals


def operation_id(case: Case) -> str:
    return str(case.operation.definition.raw.get("operationId", case.operation.label))


def refused_only_for_reasons_the_document_gives(
    ctx: Any, response: Response, case: Case
) -> bool | None:
    """A schema-valid request is accepted, or refused only for the world's reasons or for a
    rule the document states in words (``tests.conformance.refusals``).

    schemathesis' own ``positive_data_acceptance`` refuses every 400 of a valid request,
    which a host where a version does not exist or a port is taken must answer.
    """
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return None
    try:
        body = json.loads(response.content or b"null")
    except ValueError:
        body = None
    unexplained = unexplained_refusals(operation_id(case), response.status_code, body)
    if unexplained:
        raise AssertionError(
            f"a schema-valid request was refused ({response.status_code}) for what the"
            f" document does not state: {', '.join(unexplained)}"
        )
    return None
