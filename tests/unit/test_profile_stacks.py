"""py-spy's raw stacks shared out by the agent's own frames (tests/benchmarks/stacks)."""

from __future__ import annotations

from tests.benchmarks.stacks import share_out

ENTRY = "main (pockestrator/cli.py:124);run (asyncio/runners.py:190)"
PROBE = "HealthProber._probe_one (pockestrator/agent/health.py:325)"
CPU = "CpuMeter.sample (pockestrator/agent/health.py:212)"
ROUND = "ResyncLooks.choose (pockestrator/agent/observe_round.py:240)"
EPOLL = "EpollSelector.select (selectors.py:468)"


def test_samples_are_shared_out_by_their_first_own_frames() -> None:
    lines = [
        f"{ENTRY};{PROBE};{CPU} 3\n",
        f"{ENTRY};{PROBE};socket.send (x.py:1) 2\n",
        f"{ENTRY};{ROUND} 4\n",
        f"{ENTRY};{EPOLL} 6\n",
        "\n",  # a blank line, as py-spy may leave at the end
    ]
    total, shallow = share_out(lines, depth=1)
    assert total == 15
    assert shallow == {
        "HealthProber._probe_one (agent/health.py:325)": 5,
        "ResyncLooks.choose (agent/observe_round.py:240)": 4,
        f"loop: {EPOLL}": 6,
    }
    _total, deep = share_out(lines, depth=2)
    assert (
        deep[
            "HealthProber._probe_one (agent/health.py:325) > CpuMeter.sample (agent/health.py:212)"
        ]
        == 3
    )
    assert deep["HealthProber._probe_one (agent/health.py:325)"] == 2
