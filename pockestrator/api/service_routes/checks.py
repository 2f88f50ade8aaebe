"""What every service operation checks before it acts: the service a request names (404),
and a spec that is valid alone and beside the other services and the host.

A spec goes through ``parse_spec`` first, for the grammar's precise codes, then through the
strict body the operation documents (``api.spec_shapes``: JSON types, no unknown fields);
``checked_spec`` reports both at once. ``context_problems`` asks the store which claims
(name, port, domains) are taken and ``specs.validation`` what else is wrong or worth a
warning, and for a change of a deployed service whether a lower version may be run
(``downgrade_issue``, with the backups the host view lists). ``writes`` refuses the
errors; ``validation`` reports them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from pockestrator.api.context import AgentContext
from pockestrator.api.errors import ApiError, Problem, not_found, validation_failed
from pockestrator.api.inputs import shape_problems
from pockestrator.api.models.services import Service
from pockestrator.api.views import service_view
from pockestrator.specs.errors import ErrorCode, FieldIssue, SpecInvalid
from pockestrator.specs.model import ServiceSpec, parse_spec
from pockestrator.specs.store import NameTakenCode, ServiceRecord, ServiceStatus
from pockestrator.specs.validation import (
    ReleaseIndexUnavailable,
    downgrade_issue,
    validate_in_context,
)


def lost_nodes(agent: AgentContext) -> frozenset[str]:
    """The fleet's nodes whose lease has ended, judged by the store's clock at read time
    (so a service's ``node_lost`` can neither lag its node's lease nor outlive it). The
    answering node is alive whatever its lease says."""
    return agent.store.lost_nodes() - {agent.config.node}


def current_view(
    agent: AgentContext,
    record: ServiceRecord,
    status: ServiceStatus | None,
    lost: frozenset[str] | None = None,
) -> Service:
    """A service as every answer shows it, asleep and node_lost as the agent knows them
    now (``lost``: the lost nodes, when the caller has read them already)."""
    lost = lost_nodes(agent) if lost is None else lost
    return service_view(
        record,
        status,
        agent.config,
        agent.host.public_ports(),
        agent.sleeping(record.name),
        record.node in lost,
    )


def service_not_found(key: str) -> ApiError:
    """404 ``SERVICE_NOT_FOUND`` for the id or name ``key``."""
    return not_found("Service", key, ErrorCode.SERVICE_NOT_FOUND)


def find_service(agent: AgentContext, key: str) -> ServiceRecord:
    """The service whose id or project name is ``key``, or a 404."""
    record = agent.store.get_service(key)
    if record is None:
        raise service_not_found(key)
    return record


def _overlaps(field: str, others: set[str]) -> bool:
    return any(
        field == other or field.startswith(other + ".") or other.startswith(field + ".")
        for other in others
    )


def checked_spec(
    data: Any, default_domain: str, shape: type[BaseModel], original: Any
) -> ServiceSpec:
    """``data`` as a spec, or 400 with every problem: grammar codes first, then JSON types.

    ``original`` is what the client sent (checked against ``shape``, the strict model).
    """
    problems: list[Problem] = []
    spec: ServiceSpec | None = None
    try:
        spec = parse_spec(data, default_domain)
    except SpecInvalid as exc:
        problems = [Problem.of(issue) for issue in exc.issues]
    seen = {problem.field for problem in problems}
    problems += [p for p in shape_problems(shape, original) if not _overlaps(p.field, seen)]
    if problems or spec is None:
        raise validation_failed(problems)
    return spec


class _ReleaseIndex:
    """The agent's release index, where any failure means "cannot check now" (a warning)."""

    def __init__(self, agent: AgentContext) -> None:
        self.agent = agent

    async def versions(self) -> Sequence[str]:
        try:
            return await self.agent.host.versions()
        except ReleaseIndexUnavailable:
            raise
        except Exception as exc:  # the index is best effort; its failure is not the caller's
            raise ReleaseIndexUnavailable(str(exc)) from exc


async def context_problems(
    agent: AgentContext,
    spec: ServiceSpec,
    *,
    replacing: ServiceRecord | None,
    name_code: NameTakenCode,
) -> tuple[list[FieldIssue], list[FieldIssue], dict[str, bool]]:
    """Errors, warnings and checks of ``spec`` against the other services and the host.

    Which claims are taken is the store's answer, the same the write would get; the write
    itself still refuses them (``Conflict``) should another request take one meanwhile.
    """
    taken = agent.store.claims_taken(
        spec, replacing=replacing.name if replacing else None, name_code=name_code
    )
    report = await validate_in_context(
        spec,
        taken=taken,
        agent_port=agent.config.listen_port,
        release_index=_ReleaseIndex(agent),
        own_port=replacing.spec.port if replacing else None,
        backup_targets=agent.config.backup_targets.keys(),
    )
    if replacing is not None:
        status = agent.store.get_status(replacing.name)
        deployed = status.deployed_version if status is not None else None
        backups = await agent.host.data_backups(replacing.name) if deployed else {}
        downgrade = downgrade_issue(spec, deployed, backups)
        if downgrade is not None:
            report.errors.append(downgrade)
    return report.errors, report.warnings, report.checks
