"""Moving a service to another node of the fleet: the intent, and the move as it goes.

The answer is the move's record (202): the steps are done by the two nodes' agents
(``agent.mover``), whichever node's API received it, and the record says where it is.
Refused with a stable code when the node is unknown (``NODE_NOT_FOUND``) or lost
(``NODE_LOST``), the service is there already, is being moved, its port is taken there,
comes from a spec file, or has no off-site target to move through (``NO_OFFSITE_TARGET``):
a move copies through the service's S3 backup target.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from pockestrator.api.errors import ApiError, Problem
from pockestrator.api.inputs import read_json, validate_model
from pockestrator.api.models.moves import MoveBody, MoveView
from pockestrator.api.routing import Operation, agent_of, answer, principal_of
from pockestrator.api.service_routes.checks import find_service, service_not_found
from pockestrator.specs.copying import copied
from pockestrator.specs.errors import ErrorCode
from pockestrator.specs.store import Conflict, Move, NotFound, ServiceRecord


def move_view(record: ServiceRecord, move: Move) -> MoveView:
    return copied(
        MoveView, move, service_id=record.id, project_name=record.name, finished=not move.pending
    )


async def create_move(request: web.Request) -> web.StreamResponse:
    agent = agent_of(request)
    record = find_service(agent, request.match_info["id"])
    body = validate_model(MoveBody, await read_json(request, limit=agent.config.max_body_bytes))
    if await asyncio.to_thread(agent.store.get_node, body.to) is None:
        code = ErrorCode.NODE_NOT_FOUND
        raise ApiError(
            404, code, f"no node {body.to} in the fleet", [Problem("to", "no such node", code)]
        )
    if record.source_file is not None:
        code = ErrorCode.OWNED_BY_FILE
        message = f"{record.name} comes from {record.source_file}, on its node: move the file"
        raise ApiError(409, code, message, [Problem("id", message, code)])
    policy = record.spec.backups or agent.config.backups
    if not policy.targets:
        code = ErrorCode.NO_OFFSITE_TARGET
        message = f"{record.name} has no off-site backup target (backups.targets) to move through"
        raise ApiError(409, code, message, [Problem("backups.targets", message, code)])
    try:
        move = await asyncio.to_thread(
            agent.store.request_move,
            record.name,
            body.to,
            from_backup=body.from_backup,
            by=principal_of(request).name,
        )
    except Conflict as exc:  # there already, being moved, its port taken there: all 409
        problems = [Problem.of(issue) for issue in exc.issues]
        raise ApiError(409, problems[0].code, problems[0].message, problems) from None
    except NotFound:  # the service or the node went meanwhile
        raise service_not_found(record.name) from None
    agent.store.add_event(
        record.name,
        "move_requested",
        f"move to {move.target} asked" + (" from the newest backup" if move.from_backup else ""),
        move.as_dict(),
    )
    return answer(move_view(record, move), status=202)


async def get_move(request: web.Request) -> web.StreamResponse:
    agent = agent_of(request)
    record = find_service(agent, request.match_info["id"])
    text = request.match_info["move_id"]
    number = text.isascii() and text.isdigit() and len(text) < 19  # "²" is a digit to str
    move = agent.store.get_move(int(text)) if number else None
    if move is None or move.service != record.name:
        code = ErrorCode.MOVE_NOT_FOUND
        raise ApiError(404, code, f"{record.name} has no move {text[:40]}", service_id=record.id)
    return answer(move_view(record, move))


OPERATIONS = [
    Operation(
        "POST",
        "/services/{id}/moves",
        create_move,
        "createMove",
        "Move a service to another node of the fleet",
        {202: MoveView},
        "system",
        errors=(400, 409),
        description="Snapshot to the service's off-site target, restore and health-check on "
        "the target node, stop on the source, final snapshot, switch, archive the source's "
        "copy. from_backup: the source is lost; the newest off-site snapshot is restored.",
        body=MoveBody,
    ),
    Operation(
        "GET",
        "/services/{id}/moves/{move_id}",
        get_move,
        "getMove",
        "One move of a service: its state and how it ended",
        {200: MoveView},
        "system",
    ),
]
