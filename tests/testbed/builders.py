"""Values the pure-function tests build again and again: a service spec and the unit of a
running instance, each with the fields a test cares about given as changes."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pockestrator.controllers.systemd.unit_state import UnitStatus
from pockestrator.specs.model import ServiceSpec


def my_app_spec(**fields: Any) -> ServiceSpec:
    """``my-app`` on port 8090 at my-app.example.com, PocketBase 0.29.0, with ``fields``."""
    values: dict[str, Any] = {
        "project_name": "my-app",
        "port": 8090,
        "pocketbase_version": "0.29.0",
        "domain": "my-app.example.com",
    }
    values.update(fields)
    return ServiceSpec.model_validate(values)


def running_unit(**changes: Any) -> UnitStatus:
    """``app-pocketbase.service`` loaded, enabled and running as pid 4242, with ``changes``."""
    base = UnitStatus(
        name="app-pocketbase.service",
        load_state="loaded",
        active_state="active",
        sub_state="running",
        unit_file_state="enabled",
        main_pid=4242,
        n_restarts=0,
        exec_main_status=0,
        result="success",
        memory_current=30_000_000,
        cpu_usage_nsec=None,
        need_daemon_reload=False,
        fragment_path="/etc/systemd/system/app-pocketbase.service",
        active_enter_timestamp_usec=1,
    )
    return replace(base, **changes)
