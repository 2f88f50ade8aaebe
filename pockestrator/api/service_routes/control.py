"""Start, stop and restart a service: the one operation that works for file-owned services.

Start and stop are intent: the desired run state is recorded (``store.set_desired_state``),
then the answer waits for the reconcile that acts on it (``writes.WAIT_SECONDS`` at most;
202 when it takes longer) and reports what systemd then shows, or 502 when the unit did not
follow. Restart of a running service is the one-off restart the agent offers
(``AgentContext.restart_service``); the desired state stays ``running``. So is a start of a
service that should run but is down: the agent does not restart a unit systemd gave up on
(a crash loop), so the operator's start is what brings it back.
"""

from __future__ import annotations

from typing import Literal

import structlog
from aiohttp import web

from pockestrator.api.context import AgentContext, ControlFailed
from pockestrator.api.errors import ApiError
from pockestrator.api.inputs import read_json, validate_model
from pockestrator.api.models.requests import ControlBody
from pockestrator.api.models.services import ControlledService, ControlResult, ControlSystemd
from pockestrator.api.owner_calls import OWNER_CALLS
from pockestrator.api.routing import Operation, agent_of, answer, principal_of
from pockestrator.api.service_routes.checks import find_service, service_not_found
from pockestrator.api.service_routes.writes import WAIT_SECONDS
from pockestrator.api.views import service_state
from pockestrator.specs.errors import ErrorCode
from pockestrator.specs.model import unit_name
from pockestrator.specs.store import NotFound, ServiceRecord

log = structlog.get_logger("pockestrator.api")
Action = Literal["start", "stop", "restart"]

_DONE_MESSAGES = {
    "start": "Service started successfully",
    "stop": "Service stopped successfully",
    "restart": "Service restarted successfully",
}


async def control_service(request: web.Request) -> web.StreamResponse:
    agent = agent_of(request)
    record = find_service(agent, request.match_info["id"])
    body = await read_json(request, limit=agent.config.max_body_bytes)
    action = validate_model(ControlBody, body).action
    by = principal_of(request).name
    if not agent.store.runs_here(record.node):
        # Its unit is the owner's: the owner acts and answers (``api.owner_calls``).
        log.info("service control", service=record.name, action=action, by=by, node=record.node)
        return await request.app[OWNER_CALLS].control(record, action)
    return await control_here(request, record, action, by)


async def control_here(
    request: web.Request, record: ServiceRecord, action: Action, by: str
) -> web.Response:
    """``action`` on the service this host runs, answered after the reconcile."""
    agent = agent_of(request)
    name = record.name
    try:
        if action == "restart" and record.desired_state == "running":
            await agent.restart_service(name)
        elif action == "start" and await _down_though_wanted(agent, record):
            # A unit systemd gave up on (a crash loop) stays down until someone acts: an
            # operator's start is that act, a fresh start with systemd's start limit reset.
            await agent.restart_service(name)
        else:
            agent.store.set_desired_state(name, "stopped" if action == "stop" else "running")
    except NotFound:
        raise service_not_found(name) from None
    except ControlFailed as exc:
        raise ApiError(
            502,
            ErrorCode.CONTROL_FAILED,
            f"systemd could not {action} {unit_name(name)}: {exc}",
            service_id=record.id,
        ) from None
    log.info("service control", service=name, action=action, by=by)
    reconciled = await agent.wait_reconciled(name, WAIT_SECONDS)
    current = agent.store.get_service(name) or record
    status = agent.store.get_status(name)
    runtime = await agent.host.runtime(name, status)
    succeeded = runtime.is_running != (action == "stop")
    if reconciled and not succeeded:
        reason = runtime.error_message(status) or f"the unit is {runtime.systemd_status}"
        raise ApiError(
            502,
            ErrorCode.CONTROL_FAILED,
            f"Service did not {action}: {reason}",
            service_id=record.id,
        )
    message = _DONE_MESSAGES[action] if reconciled else f"Service {action} is still in progress"
    return answer(
        ControlResult(
            id=record.id,
            message=message,
            action=action,
            service=ControlledService(
                id=record.id,
                project_name=name,
                status=service_state(status, agent.sleeping(name)),
            ),
            systemd=ControlSystemd(
                status=runtime.systemd_status,
                sub_state=runtime.sub_state,
                message=message,
            ),
            desired_state=current.desired_state,
            reconciled=reconciled,
        ),
        200 if reconciled else 202,
    )


async def _down_though_wanted(agent: AgentContext, record: ServiceRecord) -> bool:
    """The service should run and its unit does not (failed, or stopped by hand)."""
    if record.desired_state != "running":
        return False
    runtime = await agent.host.runtime(record.name, agent.store.get_status(record.name))
    return runtime.unit is not None and runtime.unit.exists and not runtime.is_running


OPERATIONS = [
    Operation(
        "POST",
        "/services/{id}/control",
        control_service,
        "controlService",
        "Start, stop or restart a service",
        {200: ControlResult, 202: ControlResult},
        "services",
        errors=(502,),
        description="start and stop record the desired run state and answer after the"
        " reconcile that applies it (202 if it takes longer than a minute); restart is a"
        " one-off restart. Works for file-owned services too. In a fleet the owning node"
        " acts and answers (502 NODE_UNREACHABLE when it cannot be asked).",
        body=ControlBody,
    ),
]
