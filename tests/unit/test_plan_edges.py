"""Plans at their edges: what an environment rewrite records, what a rollback leaves out,
and a reconcile whose folder was not looked at. The scenarios are test_plan's."""

from __future__ import annotations

from pockestrator.agent.steps import Drift, StartUnit, WriteEnvironment
from tests.unit.test_plan import (
    EDITED,
    ENV_HASH,
    both,
    converged,
    on_unit,
    plan_for,
    setting,
    upgrade_pending,
)


def test_a_hand_edited_environment_file_is_written_again_and_recorded_with_both_hashes() -> None:
    scenario = converged()
    setting(environment=ENV_HASH, environment_file=EDITED, unit_environment=ENV_HASH)(scenario)
    plan = plan_for(scenario)
    assert plan.prepare == (WriteEnvironment('A="1"\n'),)
    assert plan.drift == (
        Drift("environment file", "hand-edited", "rewrote the environment file", EDITED, ENV_HASH),
    )


def test_a_deleted_environment_file_is_recorded_as_found_missing() -> None:
    scenario = converged()
    setting(environment=ENV_HASH, environment_file=None, unit_environment=ENV_HASH)(scenario)
    assert plan_for(scenario).drift == (
        Drift("environment file", "deleted", "rewrote the environment file", None, ENV_HASH),
    )


def test_a_rollback_reports_no_drift_for_what_the_failed_attempt_left_behind() -> None:
    scenario = converged()
    both(
        upgrade_pending,
        on_unit(active_state="inactive"),
        setting(
            rolling_back=True,
            environment=ENV_HASH,
            environment_file=EDITED,
            unit_environment=ENV_HASH,
        ),
    )(scenario)
    plan = plan_for(scenario)
    assert WriteEnvironment('A="1"\n') in plan.prepare
    assert plan.run == (StartUnit(),)
    assert plan.drift == ()


def test_a_rollback_starts_the_old_version_even_while_a_job_of_the_unit_is_pending() -> None:
    # The reconciler itself has just stopped the unit; waiting for that job's end would
    # leave the service down until the next signal.
    scenario = converged()
    both(
        upgrade_pending,
        on_unit(active_state="inactive", job_pending=True),
        setting(rolling_back=True),
    )(scenario)
    plan = plan_for(scenario)
    assert (plan.run, plan.defer, plan.drift) == ((StartUnit(),), None, ())


def test_a_reconcile_whose_folder_was_not_looked_at_still_creates_the_first_superuser() -> None:
    scenario = converged()
    setting(dirs=None, spec={"superuser_email": "o@example.test"})(scenario)
    assert [type(step).__name__ for step in plan_for(scenario).prepare] == ["CreateSuperuser"]
