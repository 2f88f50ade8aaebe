"""Settings for property tests that ask for more than hypothesis' defaults.

An explicit ``@settings(...)`` replaces what the active profile says, so a test that wants
300 examples would ignore ``make mutants``' smaller, derandomized profile (tests/conftest.py).
These keep the test's own request as a proportion of the profile's budget, and the
profile's suppressed health checks beside the test's own.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

DEFAULT_EXAMPLES = 100  # hypothesis' own default, the scale these counts are written for


def examples(count: int) -> int:
    """``count`` examples under the default profile, proportionally fewer under a smaller one."""
    return max(10, count * settings().max_examples // DEFAULT_EXAMPLES)


def health_checks(*extra: HealthCheck) -> list[HealthCheck]:
    """The active profile's suppressed health checks plus ``extra``."""
    return [*settings().suppress_health_check, *extra]
