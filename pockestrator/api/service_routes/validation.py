"""The pre-flight check of a new service (``POST /validate/service``): what a create would
say, without writing anything. Errors make it 400, warnings alone do not.

It runs the same checks as a create (``checks.checked_spec``, ``checks.context_problems``,
but naming a taken project name ``PROJECT_NAME_EXISTS``), and one a create does not: whether
the domain resolves to this host (``api.reachability``, a warning only). The answer is the
reference's ``{valid, errors, warnings, checks}``; a 400 also carries the error body's fields.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from pockestrator.api.errors import ApiError, Problem, validation_failed
from pockestrator.api.inputs import read_json_object
from pockestrator.api.models.problems import ErrorResponse
from pockestrator.api.models.requests import ServiceCreateBody
from pockestrator.api.models.services import ServiceValidation, ValidationChecks
from pockestrator.api.reachability import resolves_here
from pockestrator.api.routing import Operation, agent_of, answer
from pockestrator.api.service_routes.checks import checked_spec, context_problems
from pockestrator.api.views import issue_view
from pockestrator.specs.errors import ErrorCode, FieldIssue


def _checks_for(problems: Sequence[Problem]) -> ValidationChecks:
    fields = {problem.field.split(".")[0] for problem in problems}
    return ValidationChecks(
        project_name_available="project_name" not in fields,
        port_available="port" not in fields,
        domain_valid="domain" not in fields,
        version_exists="pocketbase_version" not in fields,
        domain_reachable=None,
    )


async def validate_service(request: web.Request) -> web.StreamResponse:
    """The reference's pre-flight check: errors make it 400, warnings alone do not."""
    agent = agent_of(request)
    try:
        body = await read_json_object(request, limit=agent.config.max_body_bytes)
        spec = checked_spec(dict(body), agent.config.default_domain, ServiceCreateBody, body)
    except ApiError as exc:
        if exc.status != 400:
            raise
        return _validation_answer(exc.problems, [], _checks_for(exc.problems))
    errors, warnings, checks = await context_problems(
        agent, spec, replacing=None, name_code=ErrorCode.PROJECT_NAME_EXISTS
    )
    reachable = await resolves_here(spec.domain)
    if not reachable:
        warnings.append(
            FieldIssue(
                "domain",
                f"Domain {spec.domain} does not resolve to this server; it may not be reachable",
                ErrorCode.DOMAIN_UNREACHABLE,
            )
        )
    result = ValidationChecks(
        project_name_available=checks.get("project_name_available", True),
        port_available=checks.get("port_available", True),
        domain_valid=checks.get("domain_valid", True),
        version_exists=checks.get("version_exists", True),
        domain_reachable=reachable,
    )
    return _validation_answer(
        [Problem.of(issue) for issue in errors],
        [Problem.of(issue) for issue in warnings],
        result,
    )


def _validation_answer(
    errors: Sequence[Problem], warnings: Sequence[Problem], checks: ValidationChecks
) -> web.Response:
    if not errors:
        return answer(
            ServiceValidation(
                valid=True,
                errors=[],
                warnings=[issue_view(w) for w in warnings],
                checks=checks,
                status="success",
                message="The service configuration is valid",
            )
        )
    failure = validation_failed(errors).body()
    return answer(
        ServiceValidation(
            valid=False,
            errors=[issue_view(e) for e in errors],
            warnings=[issue_view(w) for w in warnings],
            checks=checks,
            status="error",
            message="Validation failed",
            error="Validation failed",
            code=str(failure["code"]),
            details=failure["details"],
        ),
        400,
    )


OPERATIONS = [
    Operation(
        "POST",
        "/validate/service",
        validate_service,
        "validateService",
        "Validate a service configuration before creating it",
        {200: ServiceValidation, 400: (ServiceValidation, ErrorResponse)},
        "validation",
        body=ServiceCreateBody,
    ),
]
