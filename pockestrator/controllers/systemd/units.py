"""Unit files in ``systemd_dir`` and what systemd says about them: ``SystemdUnits``.

``write`` and ``remove_file`` change a unit file only when it carries our marker
(``render.is_managed``), atomically (``pockestrator.files``); ``write_environment`` keeps the
instance's environment file (root-only: 0600 in a 0700 folder, read by systemd before it
drops privileges); ``managed_names`` lists the services that have a unit; ``observe``
reports the files (present, their hashes, ours or not) and the unit's status from the
manager in one ``UnitObservation``.

What this does not do: start, stop, enable or daemon-reload. Those are single D-Bus calls
the reconciler makes through ``bus.SystemdBus`` (daemon-reloads batched per wave by
``agent.waves``), because when to make them is the reconciler's decision.

Neighbours: ``render`` (the text and the marker), ``bus`` (the protocol).
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from dataclasses import dataclass, replace
from pathlib import Path

from pockestrator.config import AgentConfig
from pockestrator.controllers.systemd.bus import SystemdBus
from pockestrator.controllers.systemd.render import (
    UnitSettings,
    UnsafeValue,
    is_managed,
    unit_body_hash,
    unit_environment_hash,
    unit_version,
)
from pockestrator.controllers.systemd.unit_state import NoSuchUnit, SystemdError, UnitStatus
from pockestrator.files import (
    fsync_directory,
    remove_file,
    sha256_file,
    sha256_text,
    write_atomic,
)
from pockestrator.specs.grammar import check_project_name
from pockestrator.specs.model import UNIT_SUFFIX, unit_name


@dataclass(frozen=True)
class UnitObservation:
    """The unit file on disk and what systemd reports about the unit.

    ``file_hash`` is the body hash (``unit_body_hash``), the one a rendered unit carries;
    ``version`` is the PocketBase version the file says it runs; ``environment_hash`` the
    hash of the environment file it was rendered with, and ``environment_file_hash`` the
    hash of the one on disk (None: none there).
    """

    name: str
    file_exists: bool
    file_hash: str | None
    managed: bool
    status: UnitStatus | None
    version: str | None = None
    environment_hash: str | None = None
    environment_file_hash: str | None = None

    @classmethod
    def of_text(
        cls,
        name: str,
        text: str | None,
        status: UnitStatus | None,
        environment_file_hash: str | None = None,
    ) -> UnitObservation:
        """The observation of a unit file's text (None: no file) and systemd's answer."""
        return cls(
            name=name,
            file_exists=text is not None,
            file_hash=unit_body_hash(text) if text is not None else None,
            managed=text is not None and is_managed(text),
            status=status,
            version=unit_version(text) if text is not None else None,
            environment_hash=unit_environment_hash(text) if text is not None else None,
            environment_file_hash=environment_file_hash,
        )


class SystemdUnits:
    """Unit files in ``config.systemd_dir`` and their units in the configured manager."""

    def __init__(self, config: AgentConfig, bus: SystemdBus) -> None:
        self.directory = config.systemd_dir
        self.bus = bus
        self.settings = UnitSettings.from_config(config)
        # managed_names' memory: file name -> (its stat when read, whether it is ours).
        self._managed: dict[str, tuple[tuple[int, ...], bool]] = {}
        self._unsynced: set[str] = set()  # new unit files whose rename is not durable yet

    def path(self, name: str) -> Path:
        return self.directory / unit_name(check_project_name(name))

    def wants_link(self, name: str) -> Path:
        """The link ``systemctl enable`` makes for the unit (its ``WantedBy=`` target's)."""
        unit = unit_name(check_project_name(name))
        return self.directory / f"{self.settings.wanted_by}.wants" / unit

    def read(self, name: str) -> str | None:
        try:
            return self.path(name).read_text(encoding="utf-8")
        except (FileNotFoundError, UnicodeDecodeError):
            return None

    def write(self, name: str, text: str) -> bool:
        """Write the unit file if it differs; True when it changed. Refuses foreign files.

        A new file's rename is made durable later (``sync_new``, after the start): its
        data is synced before the rename, so a crash before that leaves no unit file or
        the whole one, and with none there is nothing older for systemd to boot. A file
        that replaces another (an upgrade, a new setting) is durable before it returns:
        the old one, booted after a crash, might run the old version on migrated data.
        """
        path = self.path(name)
        current = self.read(name)
        if current == text:
            return False
        exists = path.exists()
        if exists and not is_managed(current or ""):
            raise UnsafeValue(f"{path} exists and is not managed by Pockestrator; not touching it")
        write_atomic(path, text, mode=0o644, sync_directory=exists)
        if not exists:
            self._unsynced.add(name)
        return True

    async def sync_new(self, name: str) -> None:
        """Make the rename of ``name``'s new unit file durable (see ``write``), off the
        event loop; nothing when it is durable already."""
        if name in self._unsynced:
            await asyncio.to_thread(fsync_directory, self.directory)
            self._unsynced.discard(name)  # only once durable: a failed sync is tried again

    def environment_path(self, name: str) -> Path:
        return self.settings.environment_file(name)

    def write_environment(self, name: str, text: str | None) -> bool:
        """Make the environment file ``text`` (None: no file); True when it changed."""
        path = self.environment_path(name)
        if text is None:
            return remove_file(path)
        if sha256_file(path) == sha256_text(text):
            return False
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        write_atomic(path, text, mode=0o600)
        return True

    def remove_file(self, name: str) -> bool:
        """Delete the unit file, only when it carries our marker."""
        path = self.path(name)
        current = self.read(name)
        if current is None or not is_managed(current):
            return False
        return remove_file(path)

    def managed_names(self) -> list[str]:
        """Service names of every unit file here that carries our marker.

        A file is read again only when its ``stat`` changed since it was last read: every
        resync round asks, and with 500 units reading each one was most of the question.
        """
        names = []
        seen: dict[str, tuple[tuple[int, ...], bool]] = {}
        for path in sorted(self.directory.glob(f"*{UNIT_SUFFIX}")):
            try:
                info = path.stat()
            except OSError:
                continue
            stamp = (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
            known = self._managed.get(path.name)
            if known is not None and known[0] == stamp:
                managed = known[1]
            else:
                try:
                    managed = is_managed(path.read_text(encoding="utf-8"))
                except (OSError, UnicodeDecodeError):
                    continue
            seen[path.name] = (stamp, managed)
            if managed:
                names.append(path.name[: -len(UNIT_SUFFIX)])
        self._managed = seen
        return names

    def observe_files(self, name: str, status: UnitStatus | None = None) -> UnitObservation:
        """The unit file and the environment file on disk (with ``status`` if known)."""
        environment = sha256_file(self.environment_path(name))
        return UnitObservation.of_text(name, self.read(name), status, environment)

    async def observe(self, name: str) -> UnitObservation:
        """The unit's files (read from disk) and systemd's view of the unit, now."""
        try:
            status: UnitStatus | None = await self.bus.unit_status(unit_name(name))
        except NoSuchUnit:
            status = None
        # systemd keeps the UnitFileState it found when it loaded the unit until the next
        # daemon-reload: after an enable or a disable without one (an operator's
        # `systemctl disable --no-reload`, the agent's own enable) it is stale. The link
        # says which; the manager reads the disk again only when the two disagree.
        if (
            status is not None
            and status.exists
            and self.wants_link(name).is_symlink() != (status.unit_file_state == "enabled")
        ):
            with suppress(SystemdError):  # no unit file left: systemd's view stands
                fresh = await self.bus.unit_file_state(unit_name(name))
                status = replace(status, unit_file_state=fresh)
        return self.observe_files(name, status)
