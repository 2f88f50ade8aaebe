"""The CLI as a test runs it: its own process, in a clean environment."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pockestrator.agent.daemon import Agent

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


def agent_url(agent: Agent) -> str:
    """Where ``agent``'s API listens (``POCKESTRATOR_URL``)."""
    return f"http://{agent.config.listen_host}:{agent.config.listen_port}"


RUN_TIMEOUT = 150.0


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


class Cli:
    """Runs ``python -m pockestrator`` with a chosen environment."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env = env
        self.cwd = cwd

    @classmethod
    def for_agent(cls, agent: Agent, home: Path, token_name: str) -> Cli:
        """The CLI of an operator of ``agent`` with a token of its own (``token_name``),
        its contexts file under ``home``/xdg, run in ``home``."""
        token, _record = agent.accounts.create_token(token_name)
        env = clean_environment(
            POCKESTRATOR_URL=agent_url(agent),
            POCKESTRATOR_TOKEN=token,
            XDG_CONFIG_HOME=str(home / "xdg"),
        )
        return cls(env, home)

    async def start(
        self, *args: str, env: dict[str, str] | None = None, stdin: bool = False
    ) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "pockestrator",
            *args,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env or self.env,
            cwd=self.cwd,
            # As in a terminal's foreground job: Ctrl-C (SIGINT) is not ignored, even when
            # the test run itself was started in the background.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )

    async def __call__(
        self, *args: str, env: dict[str, str] | None = None, stdin: str | None = None
    ) -> Run:
        process = await self.start(*args, env=env, stdin=stdin is not None)
        data = stdin.encode() if stdin is not None else None
        out, err = await asyncio.wait_for(process.communicate(data), RUN_TIMEOUT)
        assert process.returncode is not None
        return Run(process.returncode, out.decode(), err.decode())
