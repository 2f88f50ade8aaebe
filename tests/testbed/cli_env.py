"""The environment a test runs the CLI in, as its own process."""

from __future__ import annotations

import os

# The agent's and the CLI's own settings, and a terminal's size: the CLI cuts tables at
# COLUMNS (as kubectl does), and pytest-xdist's workers export COLUMNS=80 and LINES=24.
_NOT_INHERITED = ("COLUMNS", "LINES")


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without ``POCKESTRATOR_*`` or a terminal size, plus
    ``extra``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("POCKESTRATOR_") and key not in _NOT_INHERITED
    }
    env.update(extra)
    return env
