"""The sandbox's ports: handed out in turn from a share below the kernel's ephemeral range,
a bound one skipped, a share read strictly. The ports the tests bind lie below every
share (under 20000), so they cannot disturb a test bed running beside them."""

from __future__ import annotations

import socket

import pytest

from pockestrator.agent.sandbox_ports import (
    DEFAULT_PORTS,
    PortCursor,
    PortRangeError,
    port_share,
)


def ephemeral_range() -> tuple[int, int]:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as file:
        low, high = (int(part) for part in file.read().split())
    return low, high


def test_the_default_range_lies_below_the_kernels_ephemeral_ports() -> None:
    low, _high = ephemeral_range()
    assert DEFAULT_PORTS[1] <= low


@pytest.mark.parametrize(
    ("text", "share"),
    [
        (None, DEFAULT_PORTS),
        ("", DEFAULT_PORTS),
        ("20000-24255", (20000, 24256)),
        (" 30000-30000 ", (30000, 30001)),
        ("1024-65535", (1024, 65536)),
    ],
)
def test_a_share_is_read_as_low_dash_high_inclusive(
    text: str | None, share: tuple[int, int]
) -> None:
    assert port_share(text) == share


@pytest.mark.parametrize(
    "text", ["20000", "20000-", "-20000", "a-b", "2-3000", "30000-20000", "20000-70000", "1e4-2e4"]
)
def test_a_share_that_is_not_a_range_within_1024_to_65535_is_refused(text: str) -> None:
    with pytest.raises(PortRangeError):
        port_share(text)


def test_ports_come_in_turn_wrap_around_and_skip_a_bound_one() -> None:
    low, high = 19990, 19995
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 19993))
        cursor = PortCursor(low, high, start=19992)
        handed = [cursor.take() for _ in range(5)]
    assert handed == [19992, 19994, 19990, 19991, 19992]
    assert all(low <= port < high for port in handed)


def test_a_share_with_every_port_bound_is_an_error_not_a_loop() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 19989))
        with pytest.raises(OSError, match="no free port left in 19989-19989"):
            PortCursor(19989, 19990, start=19989).take()
