"""Login throttling: how long an account refuses attempts after failed logins.

After ``n`` consecutive failures an account refuses attempts for ``2**n * 100 ms``, capped
at five minutes; a success resets the count. The policy is pure (failures, the time of the
last one, now), so it is tested without waiting; the account store applies it with its
clock (``AccountStore.login_locked_for``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

THROTTLE_BASE_SECONDS = 0.1
THROTTLE_CAP_SECONDS = 300.0


def lockout_seconds(failures: int) -> float:
    """How long an account refuses logins after ``failures`` consecutive failures."""
    if failures <= 0:
        return 0.0
    if failures >= 32:  # 2**32 * 0.1 s is far past the cap; avoid huge floats
        return THROTTLE_CAP_SECONDS
    return min(THROTTLE_CAP_SECONDS, THROTTLE_BASE_SECONDS * float(2**failures))


def locked_for(failures: int, last_failed_at: datetime | None, now: datetime) -> float:
    """Seconds until the account accepts a login attempt again (0 when it does now)."""
    if failures <= 0 or last_failed_at is None:
        return 0.0
    unlocks = last_failed_at + timedelta(seconds=lockout_seconds(failures))
    return max(0.0, (unlocks - now).total_seconds())
