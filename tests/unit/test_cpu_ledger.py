"""The suite's CPU ledger: a cgroup's total read from either hierarchy, and the ranking."""

from __future__ import annotations

from pathlib import Path

from tests.testbed.cpu_ledger import cgroup_cpu_seconds, cpu_seconds, summarize


def test_a_cgroup_total_is_read_from_cpuacct_in_nanoseconds(tmp_path: Path) -> None:
    (tmp_path / "cpuacct" / "bed").mkdir(parents=True)
    (tmp_path / "cpuacct" / "bed" / "cpuacct.usage").write_text("2500000000\n")
    assert cgroup_cpu_seconds("bed", tmp_path) == 2.5


def test_a_cgroup_total_is_read_from_the_unified_cpu_stat_in_microseconds(tmp_path: Path) -> None:
    (tmp_path / "unified" / "bed").mkdir(parents=True)
    (tmp_path / "unified" / "bed" / "cpu.stat").write_text(
        "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n"
    )
    assert cgroup_cpu_seconds("bed", tmp_path) == 1.5


def test_a_cgroup_that_is_gone_has_no_total(tmp_path: Path) -> None:
    assert cgroup_cpu_seconds("bed", tmp_path) is None


def test_this_process_cpu_only_grows() -> None:
    own, children = cpu_seconds()
    sum(range(200_000))
    assert cpu_seconds()[0] >= own and cpu_seconds()[1] >= children >= 0


def test_modules_are_ranked_by_their_own_and_their_childrens_cpu() -> None:
    records = [
        {"test": "a.py::t1", "phase": "call", "self": 1.0, "children": 0.0},
        {"test": "b.py::t1", "phase": "setup", "self": 0.5, "children": 2.0},
        {"test": "b.py::t1", "phase": "bed", "cgroup": 1.8},
        {"test": "a.py::t2", "phase": "teardown", "self": 0.3, "children": 0.0},
    ]
    lines = summarize(records).splitlines()
    assert lines[1].split() == ["2.5", "0.5", "2.0", "1.8", "b.py"]
    assert lines[2].split() == ["1.3", "1.3", "0.0", "0.0", "a.py"]
    assert lines[3].split()[:2] == ["3.8", "in"]
    assert lines[6].split() == ["2.5", "b.py::t1", "[setup]"]
