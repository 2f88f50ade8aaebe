"""The webhook signature: what the agent sends is what the documented check accepts, and
nothing else is (another body, secret or timestamp, a stale or future timestamp)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from pockestrator.agent.signatures import REPLAY_WINDOW_SECONDS, sign, verify

SECRET = "s3cr3t-of-the-webhook"
BODY = b'{"event":{"id":7},"idempotency_key":"7"}'
NOW = 1_800_000_000


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body_in_hex() -> None:
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, NOW, BODY) == f"sha256={expected}"


def test_a_signed_delivery_passes_the_check() -> None:
    assert verify(SECRET, str(NOW), BODY, sign(SECRET, NOW, BODY), now=NOW + 1)


@pytest.mark.parametrize(
    ("secret", "timestamp", "body", "why"),
    [
        ("another secret", str(NOW), BODY, "another secret"),
        (SECRET, str(NOW), BODY + b" ", "one byte more in the body"),
        (SECRET, str(NOW), BODY.replace(b"7", b"8"), "another event"),
        (SECRET, str(NOW + 1), BODY, "another timestamp than the one signed"),
        (SECRET, f"{NOW}.0", BODY, "a timestamp that is not whole seconds"),
        (SECRET, f"-{NOW}", BODY, "a signed timestamp"),
        (SECRET, "", BODY, "no timestamp"),
    ],
)
def test_a_changed_request_fails_the_check(
    secret: str, timestamp: str, body: bytes, why: str
) -> None:
    signature = sign(SECRET, NOW, BODY)
    assert not verify(secret, timestamp, body, signature, now=NOW), why


@pytest.mark.parametrize(
    ("age", "accepted"),
    [
        (0, True),
        (REPLAY_WINDOW_SECONDS, True),
        (REPLAY_WINDOW_SECONDS + 1, False),
        (-REPLAY_WINDOW_SECONDS, True),
        (-REPLAY_WINDOW_SECONDS - 1, False),
        (86_400, False),
    ],
)
def test_a_replay_outside_the_window_fails_the_check(age: int, accepted: bool) -> None:
    signature = sign(SECRET, NOW, BODY)
    assert verify(SECRET, str(NOW), BODY, signature, now=NOW + age) is accepted
