"""This node's steps of a service's move (``agent.move_plan`` decides which), done.

The reconciler calls ``Mover.step`` at the start of each reconcile of a service with an
unfinished move (the move's row NOTIFYs both of its nodes at every state), and again after
converging it, so the target confirms the move in the reconcile that made it serve. Each
step ends in a recorded state and an event; a step that an agent's restart interrupted
runs again from its start (a snapshot taken twice, never a switch made twice: the store's
conditional update says who got there first).

- ``Act.STAGE`` (source): a snapshot, uploaded to the service's first off-site target.
- ``Verify`` (target): fetched from that target and booted in a scratch box with a health
  probe (``controllers.snapshots.verify``): the data and this node's PocketBase serve
  before the source is touched. Then this node's Caddy gets the service's site, holding
  its requests until the instance listens here (``agent.mover_sites``).
- ``Act.CUTOVER`` (source): the site gives way to a forward to the target's Caddy, the
  instance stops (the target's Caddy holds what is forwarded for the service's
  ``proxy.hold_requests``), a final snapshot of the stopped data, uploaded, then the
  switch: the service's node is the target, whose first reconcile seeds it from that final
  snapshot and starts it, answering the held requests. A failure before the switch puts
  the site back, starts the source again and fails the move.
- ``Act.RESTORE`` (target, ``--from-backup``): the newest snapshot on the off-site targets is
  the seed, and the node switches at once.
- ``Act.CONFIRM`` / ``RollBack`` / ``Fail`` (``move_plan``).

The copy a node keeps of a service that now runs elsewhere is removed by the reconciler
(``stale copy``: stopped, its site dropped, its folder archived).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

import structlog

from pockestrator.agent.health import wait_healthy
from pockestrator.agent.move_plan import (
    Act,
    Fail,
    MoveStep,
    RollBack,
    Verify,
    next_move_step,
    serving_verdict,
    step_name,
)
from pockestrator.agent.mover_routes import HELD_STATES, MOVED_FORWARD_SECONDS, move_sites
from pockestrator.agent.mover_sites import MoveFailed, MoveSites
from pockestrator.agent.parts import Part, Parts
from pockestrator.config import AgentConfig
from pockestrator.controllers.snapshots import SnapshotError
from pockestrator.specs.model import unit_name
from pockestrator.specs.store import Move, MoveState, ServiceRecord
from pockestrator.specs.store.seeds import SeedKind

log = structlog.get_logger("pockestrator.moves")


# While a switched move's target boots: its reconcile looks again this soon (the status
# the boot writes wakes no reconcile of its own).
BOOT_LOOK_SECONDS = 1.0
# A step that raised after the switch (the store away, say) runs again this soon.
SWITCHED_RETRY_SECONDS = 5.0


@dataclass(frozen=True)
class Stepped:
    acted: bool
    look_again: float | None = None


def offsite_target(record: ServiceRecord, config: AgentConfig) -> str | None:
    """The off-site target a move of ``record`` goes through: its backup policy's first."""
    policy = record.spec.backups or config.backups
    return policy.targets[0] if policy.targets else None


class Mover(Part):
    def __init__(self, parts: Parts) -> None:
        super().__init__(parts)
        self.sites = MoveSites(lambda: self.config, parts.store, parts.controllers.sites)

    async def _healthy(self, port: int, deadline: float) -> bool:
        loop = asyncio.get_running_loop()
        return await wait_healthy(self.session, port, loop.time() + deadline)

    @property
    def here(self) -> str:
        return self.config.node

    async def step(self, name: str) -> Stepped:
        """Do this node's step of ``name``'s move, if it is this node's turn: whether a
        step was taken (the service's record may have changed: its node), and when to look
        again (a target waiting for its boot)."""
        move = await asyncio.to_thread(self.store.current_move, name)
        if move is None:
            return Stepped(False)
        lost = await asyncio.to_thread(self.store.lost_nodes)
        serving = self._serving(move) if move.state == "switched" else None
        step = next_move_step(move, self.here, lost, serving)
        if step is None:
            booting = move.state == "switched" and move.target == self.here
            return Stepped(False, BOOT_LOOK_SECONDS if booting else None)
        record = self.store.get_service(name)
        if record is None:
            self._finish(move, move.state, "failed", "the service was deleted during its move")
            return Stepped(True)
        try:
            await self._do(record, move, step)
        except Exception as exc:  # recorded in the move and its events
            reason = str(exc)[:2000] or type(exc).__name__
            log.warning("move step failed", service=name, step=step_name(step), error=reason)
            if move.state == "switched":
                # The service lives on the target from the switch on: the move is never
                # "failed" (which says nothing changed); it stays switched, tried again.
                self.store.add_event(
                    name,
                    "move_step_failed",
                    f"move to {move.target}: {step_name(step)} failed, tried again in "
                    f"{SWITCHED_RETRY_SECONDS:g} s: {reason}",
                    {**move.as_dict(), "error": reason},
                )
                return Stepped(True, SWITCHED_RETRY_SECONDS)
            self._finish(move, move.state, "failed", reason)
        return Stepped(True)

    def incoming(self, name: str) -> bool:
        """Whether a move bringing ``name`` to this node holds its site here (its health
        gate or the cutover: that site is the move's, not a stale copy)."""
        move = self.store.current_move(name)
        return move is not None and move.target == self.here and move.state in HELD_STATES

    def forwarding(self, name: str) -> bool:
        """Whether this node's own site of ``name``, which moved away, is the move's
        forward (its upstream file names the target's Caddy, ``agent.mover_sites``): the
        stale copy goes, the site stays until the forward lapses."""
        now = self.clock.now()
        since = now - timedelta(seconds=MOVED_FORWARD_SECONDS)
        moves = [m for m in self.store.moves_of_node(self.here, since) if m.service == name]
        record = self.store.get_service(name)
        return (
            record is not None
            and name in move_sites(moves, self.here, now).forwarded
            and self.sites.forwards_in_place(record)
        )

    def _serving(self, move: Move) -> bool | None:
        seed = self.store.get_seed(move.service)
        record = self.store.get_service(move.service)
        return serving_verdict(
            self.store.get_status(move.service),
            seed_failed=seed is not None and not seed.pending and seed.outcome == "failed",
            wants_running=record is None or record.desired_state == "running",
            served=move.served_at is not None,
        )

    async def _do(self, record: ServiceRecord, move: Move, step: MoveStep) -> None:
        snapshots = self.controllers.snapshots
        name = record.name
        match step:
            case Act.STAGE:
                target = self._target(record)
                snapshot = await snapshots.take(record.spec, "manual", self.clock.now())
                await snapshots.upload(name, snapshot.snapshot_id, target)
                self._advance(
                    move, "requested", "staged", snapshot.snapshot_id, snapshot=snapshot.snapshot_id
                )
            case Verify(snapshot=snapshot_id):
                fetched = await snapshots.fetch(name, snapshot_id)
                version = fetched.manifest.pocketbase_version or record.spec.pocketbase_version
                await self.controllers.releases.ensure(version)
                _checked, verification = await snapshots.verify(
                    name, snapshot_id, self.clock.now(), self._healthy
                )
                if not verification.ok:
                    raise MoveFailed(
                        f"snapshot {snapshot_id} did not serve on {self.here}: "
                        f"{verification.detail}"
                    )
                await self.sites.hold_here(record)
                self._advance(move, "staged", "verified", snapshot_id)
            case Act.CUTOVER:
                await self._cutover(record, move)
            case Act.RESTORE:
                await self._restore(record, move)
            case Act.CONFIRM:
                self._finish(move, "switched", "done", None)
            case RollBack(reason=reason):
                assert move.final_snapshot is not None
                back = self.store.switch_move(
                    move, "switched", move.source, move.final_snapshot, "rolled_back"
                )
                if back is not None:
                    message = f"move to {move.target} rolled back: {reason}"
                    self.store.add_event(name, "move_rolled_back", message, back.as_dict())
            case Fail(reason=reason, state=state):
                if move.state == "verified" and move.source == self.here:
                    await self.sites.serve_here(record)  # a cutover's forward undone
                self._finish(move, move.state, state, reason)

    async def _cutover(self, record: ServiceRecord, move: Move) -> None:
        name, target = record.name, self._target(record)
        bus = self.controllers.bus
        snapshots = self.controllers.snapshots
        unit = unit_name(name)
        try:
            await self.sites.forward(record, move.target)
            await bus.stop_unit(unit)
            final = await snapshots.take(record.spec, "manual", self.clock.now())
            await snapshots.upload(name, final.snapshot_id, target)
            # Started again meanwhile (a control start or restart, a wake): it may have
            # taken writes the final snapshot lacks, so the move must not switch. No await
            # comes between this look and the switch.
            if (await bus.unit_status(unit)).is_running:
                raise MoveFailed(f"{name} was started on {move.source} during the cutover")
        except Exception:
            await self._serve_again(record)  # the move failed: the source serves again
            raise
        try:
            switched = self.store.switch_move(
                move, "verified", move.target, final.snapshot_id, "switched"
            )
        except Exception as exc:
            switched = await self._after_failed_switch(record, move, exc)
        if switched is None:  # another step finished the move meanwhile
            await self._serve_again(record)
            return
        self.store.add_event(
            name,
            "move_switched",
            f"{name} stopped on {move.source}; {move.target} starts it from the final "
            f"snapshot {final.snapshot_id}",
            switched.as_dict(),
        )

    async def _after_failed_switch(
        self, record: ServiceRecord, move: Move, error: Exception
    ) -> Move:
        """The switch's transaction raised: whether it committed is read back. Switched:
        the move goes on. Not: the source serves again at once (not at a later reconcile)
        and the move fails saying so. Unknown (the store away): raised, and the next
        reconcile's cutover, from the recorded state, decides."""
        now = self.store.get_move(move.id)  # raises while the store is away
        if now is not None and now.state == "switched" and now.target == move.target:
            return now
        await self._serve_again(record)
        reason = f"the switch failed ({error}); {record.name} serves on {move.source} again"
        raise MoveFailed(reason[:2000]) from error

    async def _serve_again(self, record: ServiceRecord) -> None:
        """The source's own site back and its instance started (as it was wanted)."""
        try:
            await self.sites.serve_here(record)  # first: it holds requests until the start
        finally:  # a site Caddy refused must not keep the source stopped
            if record.desired_state == "running":
                await self.controllers.bus.start_unit(unit_name(record.name))

    async def _restore(self, record: ServiceRecord, move: Move) -> None:
        name = record.name
        snapshots = self.controllers.snapshots
        found = await snapshots.remote(name)
        if not found:
            raise MoveFailed(f"{name} has no snapshot on any off-site target to restore")
        newest = max(found, key=lambda remote: remote.manifest.created_at).manifest
        await snapshots.fetch(name, newest.snapshot_id)
        # A service that replicates starts from its replica's newest data.db (the seed
        # restores it), newer than any snapshot: the snapshot gives the rest.
        replication = (record.spec.backups or self.config.backups).replication
        seed: SeedKind = "replica" if replication is not None else "snapshot"
        switched = self.store.switch_move(
            move, "requested", move.target, newest.snapshot_id, "switched", seed=seed
        )
        if switched is not None:
            replica = f" and its newest replica on {replication.target}" if replication else ""
            self.store.add_event(
                name,
                "move_switched",
                f"{name} restored on {move.target} from snapshot {newest.snapshot_id} "
                f"of {newest.created_at.isoformat()}{replica} (node {move.source} lost)",
                {
                    **switched.as_dict(),
                    "snapshot_taken_at": newest.created_at.isoformat(),
                    "seed": seed,
                },
            )

    def _target(self, record: ServiceRecord) -> str:
        target = offsite_target(record, self.config)
        if target is None:
            raise SnapshotError(f"{record.name} has no off-site backup target to move through")
        return target

    def _advance(
        self, move: Move, was: MoveState, state: MoveState, snapshot_id: str, **columns: str
    ) -> None:
        advanced = self.store.advance_move(move.id, was, state, **columns)
        if advanced is not None:
            message = f"move to {move.target}: {state} (snapshot {snapshot_id})"
            self.store.add_event(move.service, f"move_{state}", message, advanced.as_dict())

    def _finish(self, move: Move, was: MoveState, state: MoveState, error: str | None) -> None:
        columns = {"error": error} if error is not None else {}
        finished = self.store.advance_move(move.id, was, state, **columns)
        if finished is None:
            return
        message = (
            f"moved to {move.target}"
            if state == "done"
            else f"move to {move.target} {state}: {error}"
        )
        self.store.add_event(move.service, f"move_{state}", message, finished.as_dict())
