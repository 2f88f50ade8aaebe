"""When a failed webhook delivery is tried again: doubling from the base, capped, jittered
by at most half, and never past the last attempt; which answers are worth another try."""

from __future__ import annotations

import pytest

from pockestrator.agent.backoff import Backoff, worth_retrying

BACKOFF = Backoff(base=2.0, cap=60.0, max_attempts=8)


@pytest.mark.parametrize(
    ("attempt", "longest"),
    [(1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0), (5, 32.0), (6, 60.0), (7, 60.0)],
)
def test_the_wait_doubles_up_to_the_cap_and_jitter_takes_off_at_most_half(
    attempt: int, longest: float
) -> None:
    assert BACKOFF.delay(attempt, rng=lambda: 0.0) == longest
    assert BACKOFF.delay(attempt, rng=lambda: 1.0) == longest / 2
    assert BACKOFF.delay(attempt, rng=lambda: 0.5) == longest * 0.75


@pytest.mark.parametrize("attempt", [8, 9, 100])
def test_after_the_last_attempt_there_is_no_next_one(attempt: int) -> None:
    assert BACKOFF.delay(attempt, rng=lambda: 0.0) is None


def test_one_attempt_allowed_means_no_retry() -> None:
    assert Backoff(base=1.0, cap=1.0, max_attempts=1).delay(1) is None


def test_the_jitter_spreads_receivers_that_failed_together() -> None:
    draws = iter([0.0, 0.25, 0.5, 0.75, 0.99])
    waits = {BACKOFF.delay(3, rng=lambda: next(draws)) for _ in range(5)}
    assert len(waits) == 5
    assert all(w is not None and 4.0 < w <= 8.0 for w in waits)


@pytest.mark.parametrize(
    ("status", "again"),
    [
        (None, True),  # no answer: refused, reset, timed out
        (500, True),
        (502, True),
        (503, True),
        (429, True),
        (408, True),
        (400, False),
        (401, False),
        (404, False),
        (410, False),
        (301, False),  # redirects are not followed: the URL is wrong
    ],
)
def test_which_answers_are_tried_again(status: int | None, again: bool) -> None:
    assert worth_retrying(status) is again
