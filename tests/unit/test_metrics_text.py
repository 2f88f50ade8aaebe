"""``/metrics``' pure parts: Caddy's per-host histogram read per service, a scrape's text
(parsed back with Prometheus' own parser), the step a failure is counted under, the
``metrics_listen`` address, and ``pb_data``'s size measured without following a symlink."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pockestrator.api.context import ServiceObservation, UnitState
from pockestrator.api.metrics import Scrape, ServiceFacts, caddy_families, render
from pockestrator.config import AgentConfig, split_listen
from pockestrator.controllers.servicedirs.folders import ServiceFolders
from pockestrator.controllers.servicedirs.usage import data_usage
from pockestrator.telemetry import AgentMetrics, BackupAttempt, mark_step, snake_case, step_of


def _caddy_line(suffix: str, code: str, host: str, value: float, le: str | None = None) -> str:
    labels = f'code="{code}",handler="reverse_proxy",host="{host}",method="GET",server="srv0"'
    if le is not None:
        labels += f',le="{le}"'
    return f"caddy_http_request_duration_seconds_{suffix}{{{labels}}} {value}"


CADDY_TEXT = "\n".join(
    [
        "# HELP caddy_http_request_duration_seconds Histogram of round-trip request durations.",
        "# TYPE caddy_http_request_duration_seconds histogram",
        _caddy_line("bucket", "200", "a.test", 2, "0.025"),  # a bound not passed on
        _caddy_line("bucket", "200", "a.test", 3, "0.05"),
        _caddy_line("bucket", "200", "a.test", 4, "+Inf"),
        _caddy_line("sum", "200", "a.test", 0.5),
        _caddy_line("count", "200", "a.test", 4),
        _caddy_line("bucket", "502", "a.test", 0, "0.05"),
        _caddy_line("bucket", "502", "a.test", 1, "+Inf"),
        _caddy_line("sum", "502", "a.test", 2.0),
        _caddy_line("count", "502", "a.test", 1),
        # A host that is no service's: Caddy's catch-all.
        _caddy_line("bucket", "200", "_other", 9, "+Inf"),
        _caddy_line("sum", "200", "_other", 1),
        _caddy_line("count", "200", "_other", 9),
        "# HELP caddy_http_requests_total Counter of requests made.",
        "# TYPE caddy_http_requests_total counter",
        'caddy_http_requests_total{handler="reverse_proxy",host="a.test",server="srv0"} 5',
        "",
    ]
)


def test_caddy_requests_are_summed_per_service_by_code_and_other_hosts_left_out() -> None:
    traffic = caddy_families(CADDY_TEXT, {"a.test": "alpha"})
    assert set(traffic) == {"alpha"}
    alpha = traffic["alpha"]
    assert dict(alpha.by_code) == {"200": 4.0, "502": 1.0}
    assert alpha.total == 5.0
    assert alpha.seconds == 2.5
    assert dict(alpha.buckets) == {0.05: 3.0, float("inf"): 5.0}


def test_caddy_text_without_the_histogram_gives_no_traffic() -> None:
    assert caddy_families('caddy_http_requests_total{host="a.test"} 5\n', {"a.test": "a"}) == {}


def _unit(**changes: object) -> UnitState:
    values: dict[str, object] = {
        "exists": True,
        "active_state": "active",
        "sub_state": "running",
        "main_pid": 10,
        "memory_bytes": 50_000_000,
        "restarts": 2,
        "active_since": None,
        "need_daemon_reload": False,
        "memory_max_bytes": 268_435_456,
        "cpu_seconds": 1.25,
    }
    values.update(changes)
    return UnitState(**values)  # type: ignore[arg-type]


def _families(text: bytes) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    found: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.name, sample.labels, sample.value))
    return found


def _value(
    found: dict[str, list[tuple[str, dict[str, str], float]]], name: str, **labels: str
) -> float:
    matches = [value for _n, got, value in found.get(name, []) if got.items() >= labels.items()]
    assert len(matches) == 1, (name, labels, found.get(name))
    return matches[0]


def test_a_scrape_renders_every_service_fact_and_parses_back() -> None:
    taken = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    alpha = ServiceFacts(
        name="alpha",
        desired_running=True,
        state="active",
        healthy=True,
        observed=ServiceObservation("alpha", _unit(), data_bytes=4096, last_backup_at=taken),
        health_probe_seconds=0.004,
        backup=BackupAttempt(taken.timestamp(), ok=True),
        certificate_not_after=taken.timestamp() + 86_400,
    )
    beta = ServiceFacts(
        name="beta",
        desired_running=False,
        state="sleeping",
        healthy=None,
        observed=ServiceObservation("beta", _unit(active_state="inactive", memory_max_bytes=None)),
        sleeping=True,
    )
    scrape = Scrape(
        [alpha, beta], queue_depth=3, caddy_text=CADDY_TEXT, service_of_host={"a.test": "alpha"}
    )
    agent = AgentMetrics()
    agent.reconcile_errors.labels("write_unit").inc()
    found = _families(render(scrape, agent.registry))

    assert _value(found, "pockestrator_queue_depth") == 3
    assert _value(found, "pockestrator_services") == 2
    assert _value(found, "pockestrator_service_up", service="alpha") == 1
    assert _value(found, "pockestrator_service_up", service="beta") == 0
    assert _value(found, "pockestrator_service_desired_up", service="beta") == 0
    assert _value(found, "pockestrator_service_healthy", service="alpha") == 1
    assert _value(found, "pockestrator_service_state", service="alpha", state="active") == 1
    assert _value(found, "pockestrator_service_state", service="beta", state="sleeping") == 1
    assert _value(found, "pockestrator_service_sleeping", service="beta") == 1
    assert _value(found, "pockestrator_service_sleeping", service="alpha") == 0
    assert _value(
        found, "pockestrator_service_certificate_expiry_timestamp_seconds", service="alpha"
    ) == (taken.timestamp() + 86_400)
    assert "beta" not in {
        labels["service"]
        for _n, labels, _v in found["pockestrator_service_certificate_expiry_timestamp_seconds"]
    }
    assert _value(found, "pockestrator_service_restarts_total", service="alpha") == 2
    assert _value(found, "pockestrator_service_memory_bytes", service="alpha") == 50_000_000
    assert _value(found, "pockestrator_service_memory_max_bytes", service="alpha") == 268_435_456
    assert "beta" not in {
        labels["service"] for _n, labels, _v in found["pockestrator_service_memory_max_bytes"]
    }
    assert _value(found, "pockestrator_service_cpu_seconds_total", service="alpha") == 1.25
    assert _value(found, "pockestrator_service_data_bytes", service="alpha") == 4096
    assert _value(found, "pockestrator_service_health_probe_duration_seconds") == 0.004
    assert _value(found, "pockestrator_service_last_backup_timestamp_seconds") == taken.timestamp()
    assert _value(found, "pockestrator_service_last_backup_success", service="alpha") == 1
    assert _value(found, "pockestrator_service_http_requests_total", code="502") == 1
    assert _value(found, "pockestrator_service_http_requests_total", code="200") == 4
    assert _value(found, "pockestrator_service_http_request_duration_seconds_count") == 5
    assert (
        _value(found, "pockestrator_service_http_request_duration_seconds_bucket", le="0.05") == 3
    )
    assert _value(found, "pockestrator_reconcile_errors_total", step="write_unit") == 1


@pytest.mark.parametrize(
    ("name", "label"),
    [("WriteUnit", "write_unit"), ("DaemonReload", "daemon_reload"), ("StartUnit", "start_unit")],
)
def test_a_steps_class_name_becomes_its_label(name: str, label: str) -> None:
    assert snake_case(name) == label


def test_a_failure_is_counted_under_the_first_step_that_marked_it() -> None:
    error = RuntimeError("systemd said no")
    assert step_of(error) is None
    mark_step(error, "start_unit")
    mark_step(error, "outer")
    assert step_of(error) == "start_unit"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("[::1]:9464", ("::1", 9464)),
        ("0.0.0.0:1", ("0.0.0.0", 1)),
    ],
)
def test_metrics_listen_is_an_ip_and_a_port(value: str, expected: tuple[str, int]) -> None:
    assert split_listen(value) == expected


@pytest.mark.parametrize(
    "value", ["localhost:9464", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "1.2.3.4:\uff19"]
)
def test_a_bad_metrics_listen_is_refused_by_name(value: str) -> None:
    with pytest.raises(ValueError, match="metrics_listen"):
        AgentConfig(metrics_listen=value)


def _folders(tmp_path: Path) -> ServiceFolders:
    config = AgentConfig(base_dir=tmp_path / "srv", state_directory_root=tmp_path)
    return ServiceFolders(config)


def test_pb_data_size_counts_its_files_and_does_not_follow_a_planted_symlink(
    tmp_path: Path,
) -> None:
    folders = _folders(tmp_path)
    data = folders.path_for("alpha") / "pb_data"
    (data / "storage").mkdir(parents=True)
    (data / "data.db").write_bytes(os.urandom(64 * 1024))
    (data / "storage" / "file.bin").write_bytes(os.urandom(16 * 1024))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "big").write_bytes(os.urandom(1024 * 1024))
    (data / "escape").symlink_to(outside)
    usage = data_usage(folders, "alpha")
    assert usage is not None and usage.complete
    assert 80 * 1024 <= usage.bytes < 1024 * 1024


def test_pb_data_that_is_a_symlink_has_no_size(tmp_path: Path) -> None:
    folders = _folders(tmp_path)
    folders.path_for("alpha").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (folders.path_for("alpha") / "pb_data").symlink_to(tmp_path / "elsewhere")
    assert data_usage(folders, "alpha") is None
    assert data_usage(folders, "nothing") is None
