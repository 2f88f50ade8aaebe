"""Commands run as an instance would run them: its dynamic user, its folder, its box.

``run_in_box`` starts ``sh -c SCRIPT`` as a transient unit of the test bed's systemd with
exactly the properties the rendered unit gives the instance (``controllers.systemd.sandbox``)
and waits for it; tests use it to make a service's folder the way systemd makes it and to
act as a hostile instance inside it.
"""

from __future__ import annotations

import secrets

from dbus_fast import Variant

from pockestrator.controllers.systemd import SystemdBus, UnitSettings
from pockestrator.controllers.systemd.transient import TransientRun, run_transient
from pockestrator.specs.model import ServiceSpec


def box_properties(settings: UnitSettings, spec: ServiceSpec) -> list[tuple[str, Variant]]:
    """The instance's identity and hardening, and its folder as the working directory."""
    return [
        *(directive.as_property() for directive in settings.box(spec)),
        ("WorkingDirectory", Variant("s", str(settings.service_dir(spec.project_name)))),
    ]


def box_unit(spec: ServiceSpec, purpose: str = "box") -> str:
    return f"{purpose}-{spec.project_name}-{secrets.token_hex(3)}.service"


async def run_in_box(
    bus: SystemdBus,
    settings: UnitSettings,
    spec: ServiceSpec,
    script: str,
    *,
    unit: str | None = None,
    timeout: float = 30,
) -> TransientRun:
    """``sh -c script`` as the instance of ``spec``; its result and output."""
    return await run_transient(
        bus,
        unit or box_unit(spec),
        ["/bin/sh", "-c", script],
        box_properties(settings, spec),
        timeout=timeout,
    )
