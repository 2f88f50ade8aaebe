"""The periodic resync as one batched look at every name: reconcile only what changed.

The resync used to reconcile every name in full each ``resync_interval``: with 500 idle
services that was 60 % of the agent's CPU (docs/benchmarks.md), all of it finding nothing.
Now a reconcile that found nothing to do on the host records what it saw (``record``):
the ``stat`` of the service's unit file, environment file, site snippet and folders,
taken before its own observation, and systemd's states of the unit from that
observation. A round (``choose``) looks at every name at once (one ``ListUnitsByNames``
for all units, the same ``stat`` calls) and queues only the names

- whose look differs from the one recorded, or that have none (never quiet, acted since,
  failed, new): a drift no event reported is one of these, since any write to a file
  changes its ``stat`` (the inode-change time at least) and a unit's states are compared
  with the ones a quiet reconcile saw, not with the last round's;
- whose status asks for a look (``status_asks``): an error, a deploy not finished, a
  failed health verdict, or a time-driven check that is due (the instance's settings,
  the certificate Caddy serves); a name queued for its settings check alone, its look
  unchanged, is in ``settings_only`` (``agent.settings_check`` then skips the host);
- that replicate (Litestream's unit is looked at by the reconcile only);
- whose turn it is (``full_turn``): every name is still reconciled in full at least
  every ``FULL_EVERY`` rounds, for what no look covers (a release binary taken from the
  cache, a spec changed in the store with no event).

An operator's ``systemctl enable``/``disable`` makes or removes the unit's ``.wants``
link, which is in the look: the next round sees it, and the reconcile asks systemd for
the unit file's state afresh (the unit's own ``UnitFileState`` is the one systemd found
at its last load). A drop-in added without a daemon-reload is seen by nobody: systemd
252 answered ``NeedDaemonReload=no`` right after one was written into a new ``.d``
folder, so no reconcile, full turn or not, finds anything to do about it.

A look is recorded only by a reconcile whose plan for the host was empty (it may still
have waited for health or applied the instance's own settings, which are no part of the
look): a drift between its ``stat`` calls and its observation is seen by the observation
(and acted on, so nothing is recorded), a drift after it differs from what was recorded.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import structlog

from pockestrator.agent.controllers import Controllers
from pockestrator.agent.plan.conclude import certificate_check_due
from pockestrator.clock import utc_now
from pockestrator.controllers.caddy import CATCH_ALL
from pockestrator.controllers.systemd.unit_state import SystemdError, UnitRow, UnitStatus
from pockestrator.specs.model import unit_name
from pockestrator.specs.store import ServiceStatus, Store

log = structlog.get_logger("pockestrator.resync")

# Every name is reconciled in full at least once in so many rounds (20 minutes at the
# default resync_interval of 60 s), spread evenly over the rounds: what a look covers is
# found at the next round, this is for what none covers. A quiet reconcile took about
# 4.7 ms of CPU on the test bed: 500 of them every 10 minutes were 0.4 % of a core.
FULL_EVERY = 20

FileStamp = tuple[int, ...]
UnitStates = tuple[str, str, str, bool]


@dataclass(frozen=True)
class Look:
    """What a round compares: the ``stat`` of a name's files and its unit's states.

    ``also``: more files the reconcile read (the instance's secret settings' files, whose
    new value reaches PocketBase at the next round); their stamps end ``files``.
    """

    files: tuple[FileStamp | None, ...]
    unit: UnitStates | None
    also: tuple[Path, ...] = ()
    # systemd's whole answer of that reconcile, for a settings check (no part of a look)
    status: UnitStatus | None = field(default=None, compare=False)


def file_stamp(path: Path) -> FileStamp | None:
    """A file's identity and last change (None: absent); ``st_ctime_ns`` moves on every
    write, rename, chmod and chown, and cannot be set back by hand."""
    try:
        found = os.lstat(path)
    except OSError:
        return None
    return (
        found.st_ino,
        found.st_mode,
        found.st_uid,
        found.st_gid,
        found.st_size,
        found.st_mtime_ns,
        found.st_ctime_ns,
    )


def folder_stamp(path: Path) -> FileStamp | None:
    """A folder's identity, owner and mode, not its times: the instance writes inside it."""
    try:
        found = os.lstat(path)
    except OSError:
        return None
    return (found.st_ino, found.st_mode, found.st_uid, found.st_gid)


def unit_states(unit: UnitStatus | UnitRow | None) -> UnitStates | None:
    """The states a round compares, the same from ``GetAll`` and ``ListUnitsByNames``
    (None: systemd does not know the unit)."""
    if unit is None or not unit.exists:
        return None
    return (unit.load_state, unit.active_state, unit.sub_state, unit.job_pending)


def full_turn(name: str, round_number: int, every: int = FULL_EVERY) -> bool:
    """Whether ``name`` is reconciled in full in this round: each name once every
    ``every`` rounds, the names spread evenly by a stable hash of the name."""
    return zlib.crc32(name.encode()) % every == round_number % every


def status_asks(
    status: ServiceStatus | None,
    now: datetime,
    *,
    settings_interval: float,
    certificate_interval: float,
    asleep: bool,
) -> str | None:
    """Why a service's status calls for a reconcile, whatever the host looks like: None
    (it does not), ``settings`` (only the instance's settings check is due) or
    ``status``."""
    if status is None or status.state not in ("active", "inactive"):
        return "status"  # deploying, an error, or never recorded
    if status.last_error or status.health_ok is False:
        return "status"  # a refusal, a failed check: tried again at every resync
    certificate = certificate_check_due(
        status.certificate_checked_at is not None,
        status,
        site_written=False,
        now=now,
        interval=certificate_interval,
    )
    if certificate:
        return "status"
    if status.state == "active" and not asleep:
        checked = status.settings_checked_at
        if checked is None or (now - checked).total_seconds() >= settings_interval:
            return "settings"  # the admin UI's changes send no signal (plan.settings_due)
    return None


class ResyncLooks:
    """The looks quiet reconciles recorded, and the rounds that compare the host with them."""

    def __init__(
        self,
        controllers: Controllers,
        store: Store,
        intervals: Callable[[], tuple[float, float]],
        asleep: Callable[[str], bool],
    ) -> None:
        self.controllers = controllers
        self.store = store
        self.intervals = intervals  # (settings_interval, resync_interval), read each round
        self.asleep = asleep
        self.recorded: dict[str, Look] = {}
        # Names the last round queued for their settings check alone, their look unchanged.
        self.settings_only: set[str] = set()
        self.rounds = 0
        self.every = FULL_EVERY  # a name's full turn comes once in so many rounds

    def stamps(self, name: str, also: tuple[Path, ...] = ()) -> tuple[FileStamp | None, ...]:
        """The ``stat`` of every file and folder of ``name`` a reconcile observes, and of
        ``also``."""
        sites = self.controllers.sites
        if name == CATCH_ALL:
            return (file_stamp(sites.snippet_path(CATCH_ALL)),)
        units, folders = self.controllers.units, self.controllers.dirs.folders
        return (
            file_stamp(units.path(name)),
            file_stamp(units.environment_path(name)),
            file_stamp(units.wants_link(name)),  # made or removed by enable/disable
            file_stamp(sites.snippet_path(name)),
            folder_stamp(folders.private_path(name)),
            folder_stamp(folders.path_for(name)),
            *(file_stamp(path) for path in also),
        )

    def record(
        self,
        name: str,
        stamps: tuple[FileStamp | None, ...],
        unit: UnitStatus | None,
        also: tuple[Path, ...] = (),
    ) -> None:
        """A reconcile of ``name`` planned nothing for the host on what it saw (``stamps``
        taken with ``also`` before it looked)."""
        states = unit_states(unit) if name != CATCH_ALL else None
        self.recorded[name] = Look(stamps, states, also, unit if name != CATCH_ALL else None)

    def forget(self, name: str) -> Look | None:
        """A reconcile of ``name`` starts (or acted): the next round looks again. The look
        it had, if the last round queued it for its settings check alone."""
        look = self.recorded.pop(name, None)
        if name in self.settings_only:
            self.settings_only.discard(name)
            return look
        return None

    def settings_checked(self, name: str, look: Look) -> bool:
        """A settings check of ``name`` acted on nothing of the host: ``look`` stands, if
        the files still show it (False: they do not, and a full reconcile is due)."""
        if self.stamps(name, look.also) != look.files:
            return False
        self.recorded[name] = look
        return True

    async def choose(self, names: Iterable[str]) -> set[str]:
        """One round: the names of ``names`` to reconcile now."""
        self.rounds += 1
        names = set(names)
        services = sorted(name for name in names if name != CATCH_ALL)
        try:
            rows = await self.controllers.bus.list_units_by_names(
                [unit_name(name) for name in services]
            )
        except SystemdError as exc:
            log.warning("the resync's look at every unit failed; reconciling all", error=str(exc))
            return names
        states = {name: unit_states(row) for name, row in zip(services, rows, strict=True)}
        statuses = self.store.all_statuses()
        replicated = self.controllers.snapshots.replication.configured_names()
        settings_interval, resync_interval = self.intervals()
        now = utc_now()
        chosen = set()
        self.settings_only.clear()
        for name in sorted(names):
            recorded = self.recorded.get(name)
            also = recorded.also if recorded is not None else ()
            look = Look(self.stamps(name, also), states.get(name), also)
            asks = (
                None
                if name == CATCH_ALL
                else status_asks(
                    statuses.get(name),
                    now,
                    settings_interval=settings_interval,
                    certificate_interval=resync_interval,
                    asleep=self.asleep(name),
                )
            )
            full = (
                recorded != look or full_turn(name, self.rounds, self.every) or name in replicated
            )
            if full or asks is not None:
                chosen.add(name)
            if not full and asks == "settings":
                self.settings_only.add(name)
        for gone in self.recorded.keys() - names:
            del self.recorded[gone]
        log.debug("resync round", round=self.rounds, names=len(names), chosen=len(chosen))
        return chosen
