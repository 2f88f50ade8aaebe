"""The cheap parts of a scrape: the cgroup files' parsers and layouts, the unit as a look
builds it, and the printer that keeps each series' text (held to the library's output)."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from pockestrator.agent.unitfacts import unit_now
from pockestrator.api.exposition import Family, SeriesText, escape_label_value, number, write
from pockestrator.controllers.systemd.cgroups import (
    CgroupFacts,
    CgroupLayout,
    cgroup_dir,
    parse_bytes,
    parse_cpu_stat,
)
from pockestrator.controllers.systemd.unit_state import UnitRow, UnitStatus


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n", 1.5),
        ("user_usec 3\nusage_usec 42\n", 0.000042),
        ("user_usec 3\n", None),
        ("usage_usec lots\n", None),
        ("", None),
        (None, None),
    ],
)
def test_cpu_seconds_come_from_the_usage_usec_line(text: str | None, seconds: float | None) -> None:
    assert parse_cpu_stat(text) == seconds


@pytest.mark.parametrize(
    ("text", "value"),
    [("123\n", 123), ("0", 0), ("max\n", None), ("-1", None), ("\uff11\uff12", None), (None, None)],
)
def test_a_byte_count_is_a_plain_ascii_integer(text: str | None, value: int | None) -> None:
    assert parse_bytes(text) == value


@pytest.mark.parametrize(
    ("group", "relative"),
    [
        ("/system.slice/shop-pocketbase.service", "system.slice/shop-pocketbase.service"),
        ("/user.slice/a/b.service/", "user.slice/a/b.service"),
        ("system.slice/x.service", None),  # not absolute
        ("/", None),
        ("", None),
        ("/system.slice/../../etc", None),
        ("/system.slice/./x", None),
        ("/a//b", None),
        ("/a\0b", None),
    ],
)
def test_a_control_group_is_joined_only_when_it_is_a_plain_absolute_path(
    group: str, relative: str | None
) -> None:
    assert cgroup_dir(group) == relative


def _tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_unified_layout_reads_memory_peak_and_cpu_of_the_cgroup(tmp_path: Path) -> None:
    unit = "system.slice/shop-pocketbase.service"
    _tree(
        tmp_path,
        {
            "cgroup.controllers": "cpu memory\n",
            f"{unit}/memory.current": "5000\n",
            f"{unit}/memory.peak": "9000\n",
            f"{unit}/cpu.stat": "usage_usec 2500000\n",
        },
    )
    layout = CgroupLayout.detect(tmp_path)
    assert layout.unified
    files = layout.files(f"/{unit}")
    assert files is not None
    assert files.read() == CgroupFacts(5000, 9000, 2.5)


def test_the_hybrid_layout_reads_v1_memory_and_the_v2_trees_cpu(tmp_path: Path) -> None:
    unit = "app.slice/shop-pocketbase.service"
    _tree(
        tmp_path,
        {
            f"memory/{unit}/memory.usage_in_bytes": "7000\n",
            f"memory/{unit}/memory.max_usage_in_bytes": "8000\n",
            f"unified/{unit}/cpu.stat": "usage_usec 100\n",
        },
    )
    layout = CgroupLayout.detect(tmp_path)
    assert not layout.unified
    files = layout.files(f"/{unit}")
    assert files is not None
    assert files.read() == CgroupFacts(7000, 8000, 0.0001)


def test_a_cgroup_without_its_files_reads_as_unknown_not_zero(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("")
    files = CgroupLayout.detect(tmp_path).files("/gone.service")
    assert files is not None
    assert files.read() == CgroupFacts(None, None, None)
    assert CgroupLayout.detect(tmp_path).files("/../etc") is None


def _status(**changes: object) -> UnitStatus:
    values: dict[str, object] = {
        "name": "shop-pocketbase.service",
        "load_state": "loaded",
        "active_state": "active",
        "sub_state": "running",
        "unit_file_state": "enabled",
        "main_pid": 4242,
        "n_restarts": 3,
        "exec_main_status": None,
        "result": "success",
        "memory_current": 111,
        "cpu_usage_nsec": 7_000_000_000,
        "need_daemon_reload": False,
        "fragment_path": "/etc/systemd/system/shop-pocketbase.service",
        "active_enter_timestamp_usec": 1_700_000_000_000_000,
        "memory_max": 256 << 20,
        "control_group": "/system.slice/shop-pocketbase.service",
    }
    values.update(changes)
    return UnitStatus(**values)  # type: ignore[arg-type]


ROW = UnitRow("shop-pocketbase.service", "loaded", "active", "running")


def test_a_look_takes_states_from_the_row_and_numbers_from_the_cgroup() -> None:
    unit = unit_now(ROW, _status(), CgroupFacts(5000, 9000, 2.5))
    assert (unit.active_state, unit.sub_state, unit.exists) == ("active", "running", True)
    assert (unit.memory_bytes, unit.memory_peak_bytes, unit.cpu_seconds) == (5000, 9000, 2.5)
    # the slow facts: systemd's, kept since its last signal
    assert (unit.restarts, unit.main_pid, unit.memory_max_bytes) == (3, 4242, 256 << 20)


def test_a_look_without_cgroup_files_falls_back_to_systemds_cpu_and_knows_no_memory() -> None:
    unit = unit_now(ROW, _status(), None)
    assert unit.cpu_seconds == 7.0
    assert unit.memory_bytes is None  # systemd's figure is as old as the slow facts


def test_a_stopped_unit_has_no_main_process_whatever_the_kept_facts_say() -> None:
    row = UnitRow("shop-pocketbase.service", "loaded", "inactive", "dead")
    unit = unit_now(row, _status(cpu_usage_nsec=None), None)
    assert not unit.is_running
    assert unit.main_pid is None and unit.cpu_seconds is None


@pytest.mark.parametrize(
    ("value", "text"),
    [(1, "1.0"), (2.5, "2.5"), (float("inf"), "+Inf"), (float("-inf"), "-Inf"), (1e20, "1e+20")],
)
def test_a_value_is_written_as_the_library_writes_it(value: float, text: str) -> None:
    assert number(value) == text
    assert number(float("nan")) == "NaN"


def test_a_label_value_is_escaped_as_the_format_says() -> None:
    assert escape_label_value('a"b\\c\nd') == 'a\\"b\\\\c\\nd'


class _Library(Collector):
    def collect(self) -> list[GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily]:
        gauge = GaugeMetricFamily("t_memory_bytes", "Memory now", labels=["service"])
        gauge.add_metric(["a"], 5.0)
        gauge.add_metric(['we"ird'], 1.5)
        counter = CounterMetricFamily("t_restarts", "Restarts", labels=["service"])
        counter.add_metric(["a"], 3)
        empty = GaugeMetricFamily("t_empty", "Nothing yet", labels=["service"])
        histogram = HistogramMetricFamily("t_seconds", "Latency", labels=["service"])
        histogram.add_metric(["a"], [("0.05", 1.0), ("+Inf", 4.0)], 0.75)
        queue = GaugeMetricFamily("t_queue", "Queue", value=2)
        return [gauge, counter, empty, histogram, queue]


def _ours(series: SeriesText) -> bytes:
    gauge = Family(series, "t_memory_bytes", "Memory now", "gauge")
    gauge.add(("a",), 5)
    gauge.add(('we"ird',), 1.5)
    counter = Family(series, "t_restarts", "Restarts", "counter")
    counter.add(("a",), 3)
    empty = Family(series, "t_empty", "Nothing yet", "gauge")
    histogram = Family(series, "t_seconds", "Latency", "histogram")
    histogram.add_histogram(("a",), [("0.05", 1.0), ("+Inf", 4.0)], 0.75)
    queue = Family(series, "t_queue", "Queue", "gauge", ())
    queue.add((), 2)
    return write([gauge, counter, empty, histogram, queue])


def test_the_printer_writes_what_the_library_writes_and_again_from_its_kept_texts() -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Library())
    expected = generate_latest(registry)
    series = SeriesText()
    # The library sorts a histogram's labels (le first); ours keeps le first too.
    assert _ours(series) == expected
    assert _ours(series) == expected  # the second scrape, from the kept series texts
