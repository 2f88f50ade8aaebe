"""A throwaway box to run an owner's code in before it is trusted: a scratch folder and a boot.

A dry boot of a release and the verification of a snapshot both copy data into a folder of
their own, run PocketBase there as a dynamic user no service has (``UnitSettings.scratch_box``,
loopback only) and remove the folder afterwards, whatever happened. ``ScratchFolder`` is that
folder (root's while it is filled, handed to the throwaway user by systemd at the first
start); ``serves`` is the boot on a free loopback port until ``/api/health`` answers.
"""

from __future__ import annotations

import secrets
import shutil
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbus_fast import Variant

from pockestrator.controllers.systemd.bus import SystemdBus
from pockestrator.controllers.systemd.render import UnitSettings
from pockestrator.controllers.systemd.transient import (
    start_transient_service,
    stop_transient_service,
)

Healthy = Callable[[int, float], Awaitable[bool]]


@dataclass(frozen=True)
class ScratchFolder:
    private: Path  # where root fills it, before the first start
    link: Path  # where the unit sees it (its working directory)
    properties: list[tuple[str, Variant]]  # the box and the working directory

    @classmethod
    def new(
        cls, settings: UnitSettings, extra: Sequence[tuple[str, Variant]] = ()
    ) -> ScratchFolder:
        relative, box = settings.scratch_box(secrets.token_hex(6))
        link = settings.state_root / relative
        properties = [
            *(directive.as_property() for directive in box),
            ("WorkingDirectory", Variant("s", str(link))),
            *extra,
        ]
        return cls(settings.state_root / "private" / relative, link, properties)

    def remove(self) -> None:
        shutil.rmtree(self.private, ignore_errors=True)
        if self.link.is_symlink():
            self.link.unlink()


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def serves(
    bus: SystemdBus,
    unit: str,
    arguments: Sequence[str],
    properties: list[Any],
    port: int,
    healthy: Healthy,
    deadline: float,
) -> bool:
    """Start ``arguments`` as the transient ``unit``, wait for ``/api/health`` on ``port``
    and stop it again: whether it answered in time (``SystemdError`` if it did not start)."""
    try:
        await start_transient_service(bus, unit, list(arguments), properties, timeout=deadline)
        return await healthy(port, deadline)
    finally:
        await stop_transient_service(bus, unit)
