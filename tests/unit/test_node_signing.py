"""The node credential: a signed call holds only for its method, path, nodes and moment,
once, under the fleet's secret; the secret's file must be root's alone. An answer holds
only for its status, body, the call's nonce, both nodes and a recent moment."""

from __future__ import annotations

from pathlib import Path

import pytest

from pockestrator.api.node_signing import (
    ANSWER_SIGNATURE_HEADER,
    ANSWER_TIME_HEADER,
    NODE_HEADER,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    SKEW_SECONDS,
    STREAM,
    TIME_HEADER,
    CallRefused,
    FleetSecretUnusable,
    ReplayGuard,
    answer_headers,
    body_digest,
    check_answer,
    check_signature,
    credential_of,
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


NONCE = "0123456789abcdef" * 2
BODY = b'{"project_name": "blog"}'


def answer_of(status: int = 200, digest: str = "", at: float = NOW) -> dict[str, str]:
    return answer_headers(SECRET, status, NONCE, "beta", "alpha", at, digest or body_digest(BODY))


def check_the_answer(headers: dict[str, str], **changes: object) -> None:
    call: dict[str, object] = {
        "secret": SECRET,
        "status": 200,
        "nonce": NONCE,
        "answering": "beta",
        "asking": "alpha",
        "now": NOW,
        "digest": body_digest(BODY),
    }
    call.update(changes)
    check_answer(
        call["secret"],  # type: ignore[arg-type]
        headers,
        call["status"],  # type: ignore[arg-type]
        call["nonce"],  # type: ignore[arg-type]
        call["answering"],  # type: ignore[arg-type]
        call["asking"],  # type: ignore[arg-type]
        call["now"],  # type: ignore[arg-type]
        call["digest"],  # type: ignore[arg-type]
    )


def test_an_answer_signed_by_the_called_node_for_this_call_holds() -> None:
    check_the_answer(answer_of())
    check_the_answer(answer_of(digest=STREAM), digest=STREAM)


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"secret": b"t" * 40}, "does not hold"),  # a forger without the fleet's secret
        ({"status": 404}, "does not hold"),  # the status changed on the way
        ({"digest": body_digest(b'{"project_name": "other"}')}, "does not hold"),
        ({"nonce": "f" * 32}, "does not hold"),  # an earlier call's answer, replayed
        ({"answering": "gamma"}, "does not hold"),  # another node's answer
        ({"asking": "gamma"}, "does not hold"),  # an answer to another node's call
        ({"digest": STREAM}, "does not hold"),  # a body's answer passed off as a stream
        ({"now": NOW + SKEW_SECONDS + 1}, "from this node's clock"),  # an old answer
    ],
)
def test_an_answer_is_refused_for_anything_but_what_was_signed(
    changes: dict[str, object], why: str
) -> None:
    with pytest.raises(CallRefused, match=why):
        check_the_answer(answer_of(), **changes)


@pytest.mark.parametrize("header", [ANSWER_TIME_HEADER, ANSWER_SIGNATURE_HEADER])
@pytest.mark.parametrize("value", [None, "", "12ab" * 30])
def test_an_unsigned_or_malformed_answer_is_refused_naming_its_status(
    header: str, value: str | None
) -> None:
    headers = answer_of()
    if value is None:
        del headers[header]
    else:
        headers[header] = value
    with pytest.raises(CallRefused, match=r"its answer \(200\) is not signed"):
        check_the_answer(headers)


def test_a_call_signature_is_no_answer_signature() -> None:
    """The two are kept apart: a call's headers, turned round, do not sign an answer."""
    call = signed_headers(SECRET, "GET", TARGET, "alpha", "beta", NOW)
    turned = {
        ANSWER_TIME_HEADER: call[TIME_HEADER],
        ANSWER_SIGNATURE_HEADER: call[SIGNATURE_HEADER],
    }
    with pytest.raises(CallRefused, match="does not hold"):
        check_the_answer(turned, nonce=call[NONCE_HEADER])


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({NODE_HEADER: ""}, "malformed"),
        ({SIGNATURE_HEADER: "x"}, "malformed"),
        ({TIME_HEADER: str(int(NOW) - SKEW_SECONDS - 5)}, "from this node's clock"),
    ],
)
def test_a_calls_headers_are_judged_without_its_body(change: dict[str, str], why: str) -> None:
    """What the receiver checks before it reads a byte of the body: the headers alone."""
    headers = {**signed_headers(SECRET, "POST", TARGET, "alpha", "beta", NOW, b"{}"), **change}
    with pytest.raises(CallRefused, match=why):
        credential_of(headers, NOW)


def test_a_well_formed_fresh_credential_names_its_caller_before_the_body_is_checked() -> None:
    headers = signed_headers(SECRET, "POST", TARGET, "alpha", "beta", NOW, b"{}")
    credential = credential_of(headers, NOW)
    assert (credential.caller, credential.nonce) == ("alpha", headers[NONCE_HEADER])
    with pytest.raises(CallRefused, match="does not hold"):
        check_signature(SECRET, "beta", "POST", TARGET, credential, NOW, ReplayGuard(), b"[]")
    check_signature(SECRET, "beta", "POST", TARGET, credential, NOW, ReplayGuard(), b"{}")
