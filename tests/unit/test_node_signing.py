"""The node credential: a signed call holds only for its method, path, nodes and moment,
once, under the fleet's secret; the secret's file must be root's alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from pockestrator.api.node_signing import (
    NODE_HEADER,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    SKEW_SECONDS,
    TIME_HEADER,
    CallRefused,
    FleetSecretUnusable,
    ReplayGuard,
    read_fleet_secret,
    signed_headers,
    verify,
)

SECRET = b"s" * 40
NOW = 1_800_000_000.0
TARGET = "/node-internal/v1/services/blog/logs?lines=5"


def check(headers: dict[str, str], **changes: object) -> str:
    call: dict[str, object] = {
        "secret": SECRET,
        "this_node": "beta",
        "method": "GET",
        "target": TARGET,
        "now": NOW,
        "replays": ReplayGuard(),
    }
    call.update(changes)
    return verify(
        call["secret"],  # type: ignore[arg-type]
        call["this_node"],  # type: ignore[arg-type]
        call["method"],  # type: ignore[arg-type]
        call["target"],  # type: ignore[arg-type]
        headers,
        call["now"],  # type: ignore[arg-type]
        call["replays"],  # type: ignore[arg-type]
    )


def test_a_call_signed_for_this_node_names_its_caller() -> None:
    assert check(signed_headers(SECRET, "GET", TARGET, "alpha", "beta", NOW)) == "alpha"


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"secret": b"t" * 40}, "does not hold"),
        ({"secret": None}, "no fleet_secret_file"),
        ({"this_node": "gamma"}, "does not hold"),
        ({"method": "POST"}, "does not hold"),
        ({"target": TARGET.replace("5", "500")}, "does not hold"),
        ({"target": "/node-internal/v1/services/other/logs?lines=5"}, "does not hold"),
        ({"now": NOW + SKEW_SECONDS + 1}, "from this node's clock"),
        ({"now": NOW - SKEW_SECONDS - 1}, "from this node's clock"),
    ],
)
def test_a_call_is_refused_for_anything_but_what_was_signed(
    changes: dict[str, object], why: str
) -> None:
    headers = signed_headers(SECRET, "GET", TARGET, "alpha", "beta", NOW)
    with pytest.raises(CallRefused, match=why):
        check(headers, **changes)


@pytest.mark.parametrize(
    "header", [NODE_HEADER, TIME_HEADER, NONCE_HEADER, SIGNATURE_HEADER], ids=str.lower
)
@pytest.mark.parametrize("value", ["", "ALPHA\n", "12ab" * 30])
def test_a_missing_or_malformed_header_is_refused(header: str, value: str) -> None:
    headers = signed_headers(SECRET, "GET", TARGET, "alpha", "beta", NOW)
    headers[header] = value
    with pytest.raises(CallRefused):
        check(headers)


def test_a_caller_that_claims_another_node_breaks_the_signature() -> None:
    headers = signed_headers(SECRET, "GET", TARGET, "alpha", "beta", NOW)
    headers[NODE_HEADER] = "gamma"
    with pytest.raises(CallRefused, match="does not hold"):
        check(headers)


def test_a_signed_call_is_taken_once_and_two_alike_in_one_second_both_hold() -> None:
    replays = ReplayGuard()
    first = signed_headers(SECRET, "GET", TARGET, "alpha", "beta", NOW)
    second = signed_headers(SECRET, "GET", TARGET, "alpha", "beta", NOW)
    assert check(first, replays=replays) == "alpha"
    assert check(second, replays=replays) == "alpha"
    with pytest.raises(CallRefused, match="already taken"):
        check(first, replays=replays)


def test_the_replay_memory_forgets_what_the_clock_window_refuses_anyway() -> None:
    replays = ReplayGuard()
    assert replays.first_time("a" * 64, NOW)
    assert not replays.first_time("a" * 64, NOW + 1)
    assert replays.first_time("b" * 64, NOW + 2 * SKEW_SECONDS + 1)
    assert list(replays.seen) == ["b" * 64]


def test_the_secret_is_read_from_a_private_file_of_enough_bytes(tmp_path: Path) -> None:
    path = tmp_path / "fleet-secret"
    path.write_bytes(b"  " + SECRET + b"\n")
    path.chmod(0o600)
    assert read_fleet_secret(path) == SECRET
    path.chmod(0o640)
    with pytest.raises(FleetSecretUnusable, match="mode 0600"):
        read_fleet_secret(path)
    path.chmod(0o600)
    path.write_bytes(b"short")
    with pytest.raises(FleetSecretUnusable, match="at least 32"):
        read_fleet_secret(path)
    link = tmp_path / "link"
    link.symlink_to(path)
    with pytest.raises(FleetSecretUnusable, match="cannot be read"):
        read_fleet_secret(link)
    with pytest.raises(FleetSecretUnusable, match="cannot be read"):
        read_fleet_secret(tmp_path / "absent")


def test_a_body_other_than_the_signed_one_breaks_the_signature() -> None:
    sent = b'{"action": "stop"}'
    headers = signed_headers(SECRET, "POST", TARGET, "alpha", "beta", NOW, sent)
    replays = ReplayGuard()
    with pytest.raises(CallRefused, match="does not hold"):
        verify(SECRET, "beta", "POST", TARGET, headers, NOW, replays, b'{"action": "restart"}')
    assert verify(SECRET, "beta", "POST", TARGET, headers, NOW, replays, sent) == "alpha"
