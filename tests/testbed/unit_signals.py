"""Every property change systemd announces for one unit, as it happens.

Some states last a moment: a unit killed by its watchdog shows ``Result=watchdog`` only
until its restart (``RestartSec=``) resets it, about 200 ms in the test bed. Polling the
properties can miss that; a ``PropertiesChanged`` subscription cannot, because systemd
sends a signal for every state the unit passes through and D-Bus queues them for us.

``UnitSignals.watching`` opens a D-Bus connection of its own to the test bed's manager,
matches the unit's ``PropertiesChanged`` signals, calls ``Subscribe()`` (without which
systemd sends none to a client) and records each signal's changed values in order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus

from pockestrator.agent.sandbox import Sandbox

SYSTEMD = "org.freedesktop.systemd1"
UNIT_INTERFACE = "org.freedesktop.systemd1.Unit"
SERVICE_INTERFACE = "org.freedesktop.systemd1.Service"
PROPERTIES_INTERFACE = "org.freedesktop.DBus.Properties"


@dataclass
class UnitSignals:
    path: str
    changes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def _on_message(self, message: Message) -> None:
        if (
            message.message_type == MessageType.SIGNAL
            and message.member == "PropertiesChanged"
            and message.path == self.path
        ):
            interface, changed, _invalidated = message.body
            self.changes.append((interface, {key: value.value for key, value in changed.items()}))
            self._arrived.set()

    def values(self, interface: str, name: str) -> list[Any]:
        """The values ``name`` was announced with, in order, repeats of a value dropped."""
        seen: list[Any] = []
        for changed_interface, changed in self.changes:
            if changed_interface == interface and name in changed:
                value = changed[name]
                if not seen or seen[-1] != value:
                    seen.append(value)
        return seen

    def latest(self, interface: str, name: str) -> Any:
        values = self.values(interface, name)
        return values[-1] if values else None

    async def wait_for(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``condition`` holds after some signal, at most ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)
        return True

    @classmethod
    @asynccontextmanager
    async def watching(cls, sandbox: Sandbox, unit: str) -> AsyncIterator[UnitSignals]:
        assert sandbox.bus is not None
        (path,) = await sandbox.bus.call("LoadUnit", "s", [unit])
        signals = cls(str(path))
        bus = MessageBus(bus_address=sandbox.systemd.paths.bus_address, bus_type=BusType.SESSION)
        await bus.connect()
        try:
            bus.add_message_handler(signals._on_message)
            rule = (
                f"type='signal',sender='{SYSTEMD}',path='{signals.path}',"
                f"interface='{PROPERTIES_INTERFACE}',member='PropertiesChanged'"
            )
            for call in (
                Message(
                    destination="org.freedesktop.DBus",
                    path="/org/freedesktop/DBus",
                    interface="org.freedesktop.DBus",
                    member="AddMatch",
                    signature="s",
                    body=[rule],
                ),
                Message(
                    destination=SYSTEMD,
                    path="/org/freedesktop/systemd1",
                    interface="org.freedesktop.systemd1.Manager",
                    member="Subscribe",
                ),
            ):
                reply = await asyncio.wait_for(bus.call(call), 10)
                assert reply is not None and reply.message_type == MessageType.METHOD_RETURN, reply
            yield signals
        finally:
            bus.disconnect()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(bus.wait_for_disconnect(), 2.0)
