"""Bounded subprocesses: argument lists, deadlines, output bounds, and no child left behind."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path

import pytest

from pockestrator.subprocesses import (
    ProcessResult,
    ProcessTimedOut,
    end_process,
    find_tool,
    run_bounded,
)


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def is_reaped(pid: int) -> bool:
    """Gone from the process table: neither running nor a zombie waiting to be reaped."""
    return not Path(f"/proc/{pid}").exists()


async def wait_for_file(path: Path, seconds: float = 20.0) -> str:
    deadline = time.monotonic() + seconds
    while not path.exists() or not path.read_text():
        assert time.monotonic() < deadline, f"{path} never appeared"
        await asyncio.sleep(0.01)
    return path.read_text()


async def test_the_program_gets_its_arguments_as_a_list_never_through_a_shell() -> None:
    result = await run_bounded(["printf", "%s", "a; echo b $(id) `id`"], timeout=30)
    assert result == ProcessResult(0, b"a; echo b $(id) `id`", b"")


async def test_exit_status_stdout_and_stderr_come_back_separately() -> None:
    code = "import sys; sys.stdout.write('out'); sys.stderr.write('err'); sys.exit(3)"
    result = await run_bounded(python(code), timeout=30)
    assert result == ProcessResult(3, b"out", b"err")
    assert (result.stdout_text, result.stderr_text) == ("out", "err")


async def test_merged_stderr_keeps_the_order_of_the_writes() -> None:
    code = (
        "import sys\n"
        "for stream, text in ((sys.stdout, 'one '), (sys.stderr, 'two '), (sys.stdout, 'three')):\n"
        "    stream.write(text); stream.flush()\n"
    )
    result = await run_bounded(python(code), timeout=30, merge_stderr=True)
    assert result == ProcessResult(0, b"one two three", b"")


async def test_the_child_gets_exactly_the_environment_and_folder_it_is_given(
    tmp_path: Path,
) -> None:
    code = "import json, os; print(json.dumps([dict(os.environ), os.getcwd()]))"
    # LC_ALL set: the interpreter adds no LC_CTYPE of its own (PEP 538 coercion).
    environment = {"ONLY": "this", "LC_ALL": "C.UTF-8"}
    result = await run_bounded(python(code), timeout=30, env=environment, cwd=tmp_path)
    assert json.loads(result.stdout) == [environment, str(tmp_path)]


async def test_a_program_past_its_deadline_is_killed_and_reaped() -> None:
    started = time.monotonic()
    with pytest.raises(ProcessTimedOut) as raised:
        await run_bounded(["sleep", "60"], timeout=0.2)
    assert time.monotonic() - started < 10
    assert str(raised.value) == "sleep did not finish within 0.2 s"
    assert (raised.value.program, raised.value.timeout) == ("sleep", 0.2)
    assert is_reaped(raised.value.pid)


async def test_output_past_the_limit_is_cut_there_and_the_program_killed() -> None:
    code = "import sys, time; sys.stdout.write('x' * 1_000_000); sys.stdout.flush(); time.sleep(60)"
    started = time.monotonic()
    result = await run_bounded(python(code), timeout=30, output_limit=1000)
    assert time.monotonic() - started < 20
    assert result == ProcessResult(-signal.SIGKILL, b"x" * 1000, b"", truncated=True)


async def test_a_bound_on_stderr_ends_the_run_as_well() -> None:
    code = "import sys, time; sys.stderr.write('e' * 5000); sys.stderr.flush(); time.sleep(60)"
    result = await run_bounded(python(code), timeout=30, output_limit=10)
    assert result == ProcessResult(-signal.SIGKILL, b"", b"e" * 10, truncated=True)


async def test_output_exactly_at_the_limit_is_whole_and_not_truncated() -> None:
    result = await run_bounded(["printf", "%s", "12345"], timeout=30, output_limit=5)
    assert result == ProcessResult(0, b"12345", b"", truncated=False)


async def test_cancelling_the_caller_kills_and_reaps_the_program(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    code = "import os, sys, time\nopen(sys.argv[1], 'w').write(str(os.getpid()))\ntime.sleep(60)\n"
    run = asyncio.create_task(run_bounded([*python(code), str(pid_file)], timeout=60))
    pid = int(await wait_for_file(pid_file))
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert is_reaped(pid)


async def test_a_command_line_string_is_refused() -> None:
    with pytest.raises(ValueError, match="argument list"):
        await run_bounded("echo hi; id", timeout=30)


async def test_an_empty_argument_list_is_refused() -> None:
    with pytest.raises(ValueError, match="argument list"):
        await run_bounded([], timeout=30)


async def test_a_program_that_does_not_exist_raises_file_not_found() -> None:
    with pytest.raises(FileNotFoundError):
        await run_bounded(["/nonexistent/program"], timeout=30)


async def test_end_process_with_grace_lets_the_program_end_on_sigterm() -> None:
    process = await asyncio.create_subprocess_exec("sleep", "60")
    assert await end_process(process, grace=10) == -signal.SIGTERM
    assert is_reaped(process.pid)


async def test_end_process_kills_a_program_that_ignores_sigterm() -> None:
    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    process = await asyncio.create_subprocess_exec(*python(code), stdout=asyncio.subprocess.PIPE)
    assert process.stdout is not None
    assert await process.stdout.readline() == b"ready\n"
    assert await end_process(process, grace=0.2) == -signal.SIGKILL
    assert is_reaped(process.pid)


async def test_end_process_reaps_a_child_whose_full_pipe_nobody_reads() -> None:
    code = "import sys, time; sys.stdout.write('x' * 1_000_000); sys.stdout.flush(); time.sleep(60)"
    process = await asyncio.create_subprocess_exec(*python(code), stdout=asyncio.subprocess.PIPE)
    # Nobody reads: asyncio's buffer fills and it stops polling the pipe, which then never
    # reports EOF, and Process.wait() waits for that EOF as well as for the exit.
    stdout_pipe = process._transport.get_pipe_transport(1)  # type: ignore[attr-defined]
    deadline = time.monotonic() + 20
    while stdout_pipe.is_reading():
        assert time.monotonic() < deadline, "asyncio never paused the pipe"
        await asyncio.sleep(0.01)
    assert await asyncio.wait_for(end_process(process), 20) == -signal.SIGKILL
    assert is_reaped(process.pid)


async def test_end_process_returns_the_status_of_a_program_that_already_exited() -> None:
    process = await asyncio.create_subprocess_exec("sh", "-c", "exit 7")
    await process.wait()
    assert await end_process(process) == 7


def _tool(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_find_tool_takes_the_one_beside_this_python_before_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    beside = _tool(tmp_path / "venv" / "bin", "caddy")
    on_path = _tool(tmp_path / "usr" / "bin", "caddy")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "venv" / "bin" / "python"))
    monkeypatch.setenv("PATH", str(on_path.parent))
    assert find_tool("caddy") == beside
    beside.unlink()
    assert find_tool("caddy") == on_path
    on_path.unlink()
    assert find_tool("caddy") is None


def test_find_tool_passes_over_a_folder_beside_this_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "venv" / "bin" / "litestream").mkdir(parents=True)
    on_path = _tool(tmp_path / "usr" / "bin", "litestream")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "venv" / "bin" / "python"))
    monkeypatch.setenv("PATH", str(on_path.parent))
    assert find_tool("litestream") == on_path
