"""What systemd's manager says about units, as values: a unit's status and row, the errors
of a call or a job, and how its D-Bus answers read (unit paths, unset counters).

``bus.SystemdBus`` speaks the protocol and builds these; the rest of the agent reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dbus_fast import Variant

UNIT_PATH_PREFIX = "/org/freedesktop/systemd1/unit/"
# systemd reports "unknown" for 64-bit counters as the maximum value.
UINT64_UNSET = 2**64 - 1


class SystemdError(Exception):
    """A D-Bus call to systemd failed; ``name`` is the D-Bus error name when there is one."""

    def __init__(self, message: str, name: str | None = None) -> None:
        super().__init__(message)
        self.name = name


class NoSuchUnit(SystemdError):
    """The unit is not loaded and has no unit file."""


class JobFailed(SystemdError):
    """A start/stop/restart/reload job ended with a result other than ``done``."""

    def __init__(self, unit: str, action: str, result: str, detail: str) -> None:
        super().__init__(f"{action} {unit} failed: job {result}; {detail}")
        self.unit = unit
        self.action = action
        self.result = result
        self.detail = detail


@dataclass(frozen=True)
class UnitStatus:
    """What systemd says about one unit right now. ``None`` means unknown or not applicable."""

    name: str
    load_state: str
    active_state: str
    sub_state: str
    unit_file_state: str
    main_pid: int | None
    n_restarts: int | None
    exec_main_status: int | None
    result: str | None
    memory_current: int | None
    cpu_usage_nsec: int | None
    need_daemon_reload: bool
    fragment_path: str | None
    active_enter_timestamp_usec: int | None
    # A job of someone else's (an operator's restart, a start at boot) is queued or running.
    job_pending: bool = False
    # The cgroup's memory limit (MemoryMax=); None when unlimited or unknown.
    memory_max: int | None = None
    # The unit's cgroup (``/system.slice/x.service``); None while it has none (stopped).
    control_group: str | None = None

    @property
    def exists(self) -> bool:
        return self.load_state not in ("not-found", "")

    @property
    def is_running(self) -> bool:
        return self.active_state in ("active", "reloading", "activating")


@dataclass(frozen=True)
class UnitRow:
    """One unit's row of ``ListUnitsByNames``: its states, without its other properties."""

    name: str
    load_state: str
    active_state: str
    sub_state: str
    job_pending: bool = False

    @property
    def exists(self) -> bool:
        return self.load_state not in ("not-found", "")


def unit_path(name: str) -> str:
    """The object path of a unit, escaped as systemd's ``bus_label_escape`` does (every
    byte but ``[A-Za-z0-9]`` as ``_xx``, a leading digit too); systemd loads the unit on
    first access through it, as ``LoadUnit`` would."""
    escaped = "".join(
        chr(byte)
        if (65 <= byte <= 90 or 97 <= byte <= 122 or (48 <= byte <= 57 and index > 0))
        else f"_{byte:02x}"
        for index, byte in enumerate(name.encode())
    )
    return UNIT_PATH_PREFIX + (escaped or "_")


def unescape_unit_path(path: str) -> str | None:
    """The unit name of a unit object path, or None for other paths."""
    if not path.startswith(UNIT_PATH_PREFIX):
        return None
    escaped = path[len(UNIT_PATH_PREFIX) :]
    raw = bytearray()
    index = 0
    while index < len(escaped):
        if escaped[index] == "_" and _is_hex(escaped[index + 1 : index + 3]):
            raw.append(int(escaped[index + 1 : index + 3], 16))
            index += 3
        else:
            raw.extend(escaped[index].encode())
            index += 1
    return raw.decode(errors="replace")


def _is_hex(text: str) -> bool:
    return len(text) == 2 and all(c in "0123456789abcdefABCDEF" for c in text)


def plain(value: Any) -> Any:
    return value.value if isinstance(value, Variant) else value


def optional_uint(value: Any, *, zero_is_unset: bool = False) -> int | None:
    number = plain(value)
    if not isinstance(number, int) or number == UINT64_UNSET or (zero_is_unset and number == 0):
        return None
    return number
