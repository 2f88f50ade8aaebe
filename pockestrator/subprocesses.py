"""Bounded subprocesses: an argument list, a timeout, bounded output, and no child left behind.

Every short-lived program the agent runs (``caddy validate``, ``pip download``,
``pocketbase superuser upsert``, ``journalctl``) goes through ``run_bounded``:

- the program gets exactly the argument list it is given, never a shell, and stdin is
  ``/dev/null``, so no value from a spec can become a second command or wait for input;
- the whole run (start to exit, output included) has a deadline; on expiry the child is
  killed and reaped and ``ProcessTimedOut`` is raised;
- each output stream is kept up to ``output_limit`` bytes; a child that prints more is
  killed and reaped, and the result says ``truncated`` (the caller decides whether a
  truncated answer is still useful: a log tail is, an adapted Caddy config is not);
- when the caller is cancelled (or anything else goes wrong), the child is killed and
  reaped before the exception leaves, so cancelling a reconcile never orphans a process.

``find_tool`` finds a program installed beside this Python (the virtual environment that
the package's tools such as Caddy and Litestream come in) before one on ``PATH``.

``end_process`` is the one way to end a child that still runs: optionally ``SIGTERM``
with a grace period (the journal follower, a long-lived ``journalctl -f``), then
``SIGKILL``, then wait for its exit status.

This module imports nothing of Pockestrator's, so both the controllers and the journal
reader (which the API uses) can build on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_OUTPUT_LIMIT = 4 * 1024 * 1024
READ_CHUNK = 64 * 1024


class ProcessTimedOut(Exception):
    """The program ran past its deadline; it was killed and reaped before this was raised.

    Deliberately not a ``TimeoutError``: that one is an ``OSError``, and callers map
    "cannot start the program" (``OSError``) and "it hung" to different messages.
    """

    def __init__(self, program: str, timeout: float, pid: int) -> None:
        super().__init__(f"{program} did not finish within {timeout:g} s")
        self.program = program
        self.timeout = timeout
        self.pid = pid


@dataclass(frozen=True)
class ProcessResult:
    """How a bounded run ended. ``truncated``: some output passed the limit and was cut
    there, and the program was killed at that point (``returncode`` is then its signal)."""

    returncode: int
    stdout: bytes
    stderr: bytes
    truncated: bool = False

    @property
    def stdout_text(self) -> str:
        return self.stdout.decode("utf-8", errors="replace")

    @property
    def stderr_text(self) -> str:
        return self.stderr.decode("utf-8", errors="replace")


class _OutputOverflow(Exception):
    """One stream passed the limit; ends the reading of both."""


async def run_bounded(
    arguments: Sequence[str],
    *,
    timeout: float,
    output_limit: int = DEFAULT_OUTPUT_LIMIT,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    merge_stderr: bool = False,
    pass_fds: Sequence[int] = (),
    new_session: bool = False,
) -> ProcessResult:
    """Run ``arguments`` (an argument list: ``arguments[0]`` is the program) to completion.

    Raises ``OSError`` when the program cannot be started and ``ProcessTimedOut`` when it
    does not finish within ``timeout`` seconds. With ``merge_stderr`` both streams land in
    ``stdout`` in the order they were written (``stderr`` is then empty). ``pass_fds`` are
    descriptors the program inherits (under the same numbers); ``new_session`` starts it
    in a session of its own (``setsid``). Errors name the
    program, never its arguments: those may hold a password (``superuser upsert``).
    """
    if isinstance(arguments, str) or not arguments:
        raise ValueError("run_bounded takes a non-empty argument list, never a command line")
    process = await asyncio.create_subprocess_exec(
        *arguments,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT if merge_stderr else asyncio.subprocess.PIPE,
        cwd=cwd,
        env=None if env is None else dict(env),
        pass_fds=tuple(pass_fds),
        start_new_session=new_session,
    )
    stdout, stderr = bytearray(), bytearray()
    truncated = False
    try:
        async with asyncio.timeout(timeout) as deadline:
            try:
                async with asyncio.TaskGroup() as readers:
                    assert process.stdout is not None
                    readers.create_task(_read_bounded(process.stdout, stdout, output_limit))
                    if process.stderr is not None:
                        readers.create_task(_read_bounded(process.stderr, stderr, output_limit))
            except* _OutputOverflow:
                truncated = True
            returncode = await end_process(process) if truncated else await process.wait()
    except TimeoutError:
        if not deadline.expired():
            raise
        await end_process(process)
        raise ProcessTimedOut(Path(arguments[0]).name, timeout, process.pid) from None
    finally:
        # Cancellation or any other error: the child must not outlive this call.
        await end_process(process)
    return ProcessResult(returncode, bytes(stdout), bytes(stderr), truncated)


async def _read_bounded(stream: asyncio.StreamReader, sink: bytearray, limit: int) -> None:
    while chunk := await stream.read(READ_CHUNK):
        room = limit - len(sink)
        sink += chunk[: max(room, 0)]
        if len(chunk) > room:
            raise _OutputOverflow


async def end_process(process: asyncio.subprocess.Process, *, grace: float = 0.0) -> int:
    """End ``process`` if it still runs and reap it; its exit status (negative: a signal).

    With ``grace`` it gets ``SIGTERM`` and that many seconds to exit before ``SIGKILL``.
    Whatever it still prints is dropped: our ends of its pipes are closed first.
    """
    _close_pipes(process)
    if process.returncode is None and grace > 0:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(process.wait(), grace)
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    return await process.wait()


def _close_pipes(process: asyncio.subprocess.Process) -> None:
    """Close our ends of the child's pipes, so that ``wait()`` can see it exit.

    asyncio's ``Process.wait()`` returns only once every pipe of the child has reached EOF
    (Python 3.11). A pipe nobody reads any more stops being polled when its buffer fills,
    and a grandchild may hold one open: either way a killed child would never be seen to
    exit. asyncio has no public handle on the pipes of a ``Process``, hence ``_transport``.
    """
    transport = getattr(process, "_transport", None)
    if not isinstance(transport, asyncio.SubprocessTransport):
        return
    for fd in (0, 1, 2):
        pipe = transport.get_pipe_transport(fd)
        if pipe is not None:
            pipe.close()


def find_tool(name: str) -> Path | None:
    """A program installed next to this Python (the virtual environment) or on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return beside
    found = shutil.which(name)
    return Path(found) if found else None
