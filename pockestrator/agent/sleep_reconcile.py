"""How a reconcile meets a sleeping service (``agent.sleep``): the sleep state its plan
sees, and the wake a plan of its own start needs first."""

from __future__ import annotations

from dataclasses import replace

from pockestrator.agent.plan.model import Desired, Observed, Plan
from pockestrator.agent.sleep import SleepKeeper
from pockestrator.agent.steps import RestartUnit, StartUnit


def with_sleep(sleep: SleepKeeper, desired: Desired, observed: Observed) -> Desired:
    """``desired`` with the service's sleep: a sleeping unit that runs was started by
    someone else and is awake; a drowsy one with a request since the timer is awake again."""
    spec, unit = desired.spec, observed.systemd
    if spec.sleep_seconds is None or not desired.should_run:
        return desired
    state = sleep.state(desired.name)
    running = unit is not None and (unit.is_running or unit.sub_state == "auto-restart")
    if state == "asleep" and running:
        sleep.settled(spec, desired.name, running=True)
        state = "awake"
    elif state == "drowsy" and not sleep.still_idle(spec):
        state = "awake"
    return replace(desired, sleep=state)


def wake_for(sleep: SleepKeeper, plan: Plan) -> None:
    """A plan that starts a sleeping service (an upgrade, a deploy) wakes it first: the
    agent's listener must give the port back."""
    if any(isinstance(step, StartUnit | RestartUnit) for step in plan.steps):
        sleep.release(plan.name, "started by the agent")
