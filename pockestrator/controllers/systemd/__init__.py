"""systemd for PocketBase services: the unit text, the unit files, and the D-Bus protocol.

- ``render``: ``render_unit(spec, settings)`` and ``render_environment(spec)``, pure; the
  marker and the body hash that make a unit file ours and its drift visible.
- ``sandbox``: the instance's box (its dynamic user, its state directory, the hardening),
  as unit lines and as D-Bus properties for transient units alike.
- ``transient``: one-off commands of an instance's binary, run as transient units.
- ``units``: ``SystemdUnits``, the unit files in ``systemd_dir`` (written only when ours)
  and ``observe(name) -> UnitObservation``.
- ``bus``: ``SystemdBus``, systemd's manager over D-Bus (jobs awaited to their end, unit
  properties, ``PropertiesChanged`` watches); never ``systemctl``.

The names below are re-exported so that callers can import from the package.
"""

from pockestrator.controllers.systemd.bus import ManagerKind, SystemdBus
from pockestrator.controllers.systemd.render import (
    ENVIRONMENT_KEY,
    HASH_KEY,
    MARKER,
    START_LIMIT_BURST,
    VERSION_KEY,
    UnitSettings,
    UnsafeValue,
    describe_source,
    is_managed,
    render_environment,
    render_unit,
    unit_body_hash,
    unit_environment_hash,
    unit_version,
)
from pockestrator.controllers.systemd.sandbox import HARDENING, HARDENING_NAMES, instance_user
from pockestrator.controllers.systemd.unit_state import (
    JobFailed,
    NoSuchUnit,
    SystemdError,
    UnitStatus,
)
from pockestrator.controllers.systemd.units import SystemdUnits, UnitObservation

__all__ = [
    "ENVIRONMENT_KEY",
    "HARDENING",
    "HARDENING_NAMES",
    "HASH_KEY",
    "MARKER",
    "START_LIMIT_BURST",
    "VERSION_KEY",
    "JobFailed",
    "ManagerKind",
    "NoSuchUnit",
    "SystemdBus",
    "SystemdError",
    "SystemdUnits",
    "UnitObservation",
    "UnitSettings",
    "UnitStatus",
    "UnsafeValue",
    "describe_source",
    "instance_user",
    "is_managed",
    "render_environment",
    "render_unit",
    "unit_body_hash",
    "unit_environment_hash",
    "unit_version",
]
