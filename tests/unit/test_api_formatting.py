"""Human forms of numbers in API answers, as the reference shows them."""

from __future__ import annotations

import pytest

from pockestrator.api.formatting import go_duration, human_bytes, human_percent, short_hash


@pytest.mark.parametrize(
    ("size", "shown"),
    [
        (0, "0B"),
        (512, "512B"),
        (1536, "1.5KB"),
        (47_395_635, "45.2MB"),
        (3 * 1024**3, "3.0GB"),
        (5 * 1024**6, "5120.0PB"),
    ],
)
def test_memory_is_shown_like_the_reference(size: int, shown: str) -> None:
    assert human_bytes(size) == shown


def test_unknown_memory_stays_unknown() -> None:
    assert human_bytes(None) is None
    assert human_bytes(-1) is None


@pytest.mark.parametrize(("value", "shown"), [(2.14, "2.1%"), (0.0, "0.0%"), (150.06, "150.1%")])
def test_cpu_is_a_percentage_with_one_decimal(value: float, shown: str) -> None:
    assert human_percent(value) == shown


@pytest.mark.parametrize("value", [None, float("nan"), float("inf")])
def test_unknown_cpu_is_null_not_a_made_up_number(value: float | None) -> None:
    assert human_percent(value) is None


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (9015, "2h30m15s"),
        (9015.9, "2h30m15s"),
        (75, "1m15s"),
        (5, "5s"),
        (0, "0s"),
        (3600, "1h0m0s"),
        (-3, "0s"),
        (90061, "25h1m1s"),
    ],
)
def test_uptime_reads_like_a_go_duration(seconds: float, shown: str) -> None:
    assert go_duration(seconds) == shown


def test_config_hashes_are_shown_as_twelve_hex_characters() -> None:
    assert short_hash("a1b2c3d4e5f6a7b8c9d0") == "a1b2c3d4e5f6"
    assert short_hash(None) is None
