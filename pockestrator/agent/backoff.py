"""When to try a webhook delivery again: exponential backoff with jitter, up to a bound.

Attempt ``n`` failed (counting from 1): the next waits ``base * 2^(n-1)`` seconds, capped
at ``cap``, of which a random part (up to half) is taken off, so that receivers that failed
together (one outage) are not all retried in the same second. After ``max_attempts``
attempts there is no next one: the delivery is ``failed``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

# A status that says "try again later"; every other 4xx is the request's fault and final.
RETRIED_CLIENT_ERRORS = frozenset({408, 409, 425, 429})


@dataclass(frozen=True)
class Backoff:
    base: float
    cap: float
    max_attempts: int

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float | None:
        """Seconds before the attempt after ``attempt``; None when it was the last one."""
        if attempt >= self.max_attempts:
            return None
        full: float = min(self.cap, self.base * 2.0 ** (attempt - 1))
        return full - full / 2 * rng()


def worth_retrying(status: int | None) -> bool:
    """Whether an attempt that got ``status`` (None: no answer at all) may be tried again:
    no answer, a timeout, a 5xx, or one of the 4xx that mean "later"."""
    return status is None or status >= 500 or status in RETRIED_CLIENT_ERRORS
