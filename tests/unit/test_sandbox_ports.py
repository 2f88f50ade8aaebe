"""The sandbox's ports: handed out in turn from a share below the kernel's ephemeral range,
a bound one skipped, a share read strictly. The ports the tests bind lie below every
share (under 20000), so they cannot disturb a test bed running beside them."""

from __future__ import annotations

import socket

import pytest

from pockestrator.agent.sandbox_ports import (
    PREFERRED_PORTS,
    PortCursor,
    PortRangeError,
    default_ports,
    port_share,
    ports_outside,
)


def ephemeral_range() -> tuple[int, int]:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as file:
        low, high = (int(part) for part in file.read().split())
    return low, high


def test_the_default_range_lies_outside_this_machines_ephemeral_ports() -> None:
    first, last = ephemeral_range()
    low, high = default_ports()
    assert high <= first or low > last


@pytest.mark.parametrize(
    ("ephemeral", "ports"),
    [
        ((32768, 60999), PREFERRED_PORTS),  # Linux's default: the range lies below it
        ((40000, 65535), PREFERRED_PORTS),
        ((10000, 19999), PREFERRED_PORTS),  # entirely below the preferred range
        ((15000, 65535), (2232, 15000)),  # only below it is free: as wide as it may be
        ((30000, 60999), (17232, 30000)),  # below is wider than above
        ((1024, 50000), (50001, 62769)),  # only above it is free
        ((1024, 64000), PREFERRED_PORTS),  # no span of 4096 anywhere: shared, as before
        ((4000, 62000), PREFERRED_PORTS),
    ],
)
def test_the_sandbox_ports_avoid_the_kernels_ephemeral_range_where_they_can(
    ephemeral: tuple[int, int], ports: tuple[int, int]
) -> None:
    assert ports_outside(ephemeral) == ports


@pytest.mark.parametrize(
    ("text", "share"),
    [
        (None, default_ports()),
        ("", default_ports()),
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
