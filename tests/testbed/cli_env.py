"""The CLI as a test runs it: its own process, in a clean environment."""

from __future__ import annotations

import asyncio
import os
import sys

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


async def run_cli(url: str, token: str, *args: str, timeout: float = 150.0) -> tuple[int, str, str]:
    """``python -m pockestrator ARGS`` against the agent at ``url`` with ``token``, as an
    operator runs it: (exit code, stdout, stderr)."""
    env = clean_environment(POCKESTRATOR_URL=url, POCKESTRATOR_TOKEN=token)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pockestrator",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None, err
    return process.returncode, out.decode(), err.decode()
