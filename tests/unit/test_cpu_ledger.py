"""The suite's CPU ledger: a cgroup's total read from either hierarchy, and the ranking."""

from __future__ import annotations

import os
from pathlib import Path

from tests.testbed.cpu_ledger import (
    cgroup_cpu_seconds,
    cpu_seconds,
    process_cpu_seconds,
    summarize,
    unit_cpu_seconds,
)


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
        {
            "test": "b.py::t1",
            "phase": "bed",
            "cgroup": 1.8,
            "units": {"a-pocketbase.service": 0.5, "b-pocketbase.service": 0.3, "systemd": 0.9},
        },
        {"test": "a.py::t2", "phase": "teardown", "self": 0.3, "children": 0.0},
    ]
    lines = summarize(records).splitlines()
    assert lines[1].split() == ["2.5", "0.5", "2.0", "1.8", "b.py"]
    assert lines[2].split() == ["1.3", "1.3", "0.0", "0.0", "a.py"]
    assert lines[3].split()[:2] == ["3.8", "in"]
    assert lines[6].split() == ["2.5", "b.py::t1", "[setup]"]
    assert [line.split() for line in lines[-3:]] == [
        ["1.8", "all", "beds"],
        ["0.9", "systemd"],
        ["0.8", "pocketbase.service"],
    ]


def test_each_running_unit_of_a_bed_has_its_own_total(tmp_path: Path) -> None:
    for unit, usec in (("app.slice/caddy.service", 300000), ("app.slice/pb-a.service", 90000)):
        (tmp_path / "unified" / "bed" / unit).mkdir(parents=True)
        (tmp_path / "unified" / "bed" / unit / "cpu.stat").write_text(f"usage_usec {usec}\n")
    (tmp_path / "unified" / "bed" / "app.slice" / "cpu.stat").write_text("usage_usec 390000\n")
    assert unit_cpu_seconds("bed", tmp_path) == {"caddy.service": 0.3, "pb-a.service": 0.09}


def test_a_live_process_has_its_own_cpu_and_a_gone_one_none() -> None:
    own = process_cpu_seconds(os.getpid())
    assert own is not None and own >= 0
    assert process_cpu_seconds(2**22 + 1) is None  # above pid_max's ceiling: never a pid
