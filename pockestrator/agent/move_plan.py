"""What this node does next for a service's move: a pure function of the move's recorded
state, which node this is, which nodes are lost, and (on the target, after the switch)
whether the service serves there.

A move with its source alive (``pockestrator move NAME --to NODE``):

=========== ====== ==========================================================
state       whose  step
=========== ====== ==========================================================
requested   source ``Act.STAGE``: a snapshot, uploaded to the off-site target
staged      target ``Verify``: fetch it, boot it in a scratch box, probe its health
verified    source ``Act.CUTOVER``: stop, final snapshot, upload, switch the node
switched    target ``Act.CONFIRM`` once it serves (done), ``RollBack`` if it failed
=========== ====== ==========================================================

From a backup (``--from-backup``, the source lost): ``requested`` is the target's
``Act.RESTORE`` (the newest snapshot on the off-site target becomes its seed, and the node
switches at once); ``switched`` as above, but a failure there is ``Fail`` into
``failed_on_target``: there is no source to go back to, and the service lives on the
target (never ``failed``, which says nothing changed).

A move whose other node is lost before the switch fails (``Fail``), said by the node that
is left; nothing changed but a snapshot. After the switch the target alone decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from pockestrator.specs.store import Move, MoveState, ServiceStatus


class Act(Enum):
    """The steps that carry nothing but what they are (the table above says each)."""

    STAGE = "Stage"
    CUTOVER = "Cutover"
    RESTORE = "Restore"
    CONFIRM = "Confirm"


@dataclass(frozen=True)
class Verify:
    snapshot: str


@dataclass(frozen=True)
class RollBack:
    reason: str


@dataclass(frozen=True)
class Fail:
    reason: str
    # ``failed``: before the switch, nothing changed. ``failed_on_target``: after it, with
    # no source to go back to, the service lives on the target, which did not run it.
    state: MoveState = "failed"


MoveStep = Act | Verify | RollBack | Fail


def step_name(step: MoveStep) -> str:
    """What the events and the log call a step: ``Stage``, ``Verify``, ``RollBack``..."""
    return step.value if isinstance(step, Act) else type(step).__name__


def next_move_step(
    move: Move | None, here: str, lost: frozenset[str], serving: bool | None = None
) -> MoveStep | None:
    """This node's next step of ``move``; None when it is not this node's turn.

    ``serving`` is the target's view after the switch: True once the service runs there
    healthy, False once it failed to (a failed seed, an error), None while it boots."""
    if move is None or not move.pending or here not in (move.source, move.target):
        return None
    other = move.target if here == move.source else move.source
    if move.state != "switched" and not move.from_backup and other in lost:
        return Fail(f"node {other} was lost before the switch")
    match move.state:
        case "requested" if move.from_backup:
            return Act.RESTORE if here == move.target else None
        case "requested":
            return Act.STAGE if here == move.source else None
        case "staged" if move.snapshot is not None:
            return Verify(move.snapshot) if here == move.target else None
        case "staged":
            return Fail("the move was staged without a snapshot")
        case "verified":
            return Act.CUTOVER if here == move.source else None
        case "switched" if here == move.target:
            if serving is None:
                return None
            if serving:
                return Act.CONFIRM
            reason = f"the service did not come up on {move.target}"
            if move.from_backup or move.source in lost:
                return Fail(reason, "failed_on_target")
            return RollBack(reason)
    return None


def serving_verdict(
    status: ServiceStatus | None, *, seed_failed: bool, wants_running: bool, served: bool = False
) -> bool | None:
    """The target's verdict after the switch (``serving`` above): it runs as wanted (True;
    a stopped service is there when it is inactive), it failed to (False), not yet (None).

    Once the instance has answered its health probe there it has served, and may have
    taken writes the source never saw: the move is done, and an error after that (a
    PocketBase setting not applied) is the service's to mend there, never a reason to go
    back to the source's older data. ``served`` is the move's sticky record of that
    (``Move.served_at``, written with the healthy status), which holds even when the
    status has since turned to an error."""
    if served:
        return True
    if seed_failed:
        return False
    if status is None:
        return None
    if status.health_ok is True:
        return True
    if status.state == ("active" if wants_running else "inactive"):
        return True
    return False if status.state == "error" else None
