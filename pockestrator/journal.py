"""Instance logs from journald: ``journalctl -o json`` as a subprocess (an argument list).

Which entries belong to a service is decided only by fields journald sets itself, which no
process can forge (an instance is hostile; any local process may log under any
``SYSLOG_IDENTIFIER``): under the system manager the unit (``_SYSTEMD_UNIT=``) and what
PID 1 says about it (``UNIT=`` with ``_PID=1``: started, stopped, crashed); under a user
manager ``_SYSTEMD_USER_UNIT=``. journald derives those from the writer's cgroup, and where
its path parser cannot (the sandbox runs its user manager in a cgroup subtree of its own),
the cgroup itself is matched: ``_SYSTEMD_CGROUP=`` with the unit's cgroup, computed from the
manager's own (``UnitScope``, which the agent asks systemd for). journalctl ANDs matches of
different fields and ORs only matches of the same field, so the terms are joined with
``+`` (a disjunction); written side by side they would ask for entries that carry all of
them. What the sandbox cannot attribute is in docs/security.md.

``read`` returns the last entries (bounded in count, bytes and time); ``follow`` keeps one
``journalctl -f`` running for as long as its caller reads, and always ends the process.
The REST API turns entries into its log shape and the follow stream into server-sent events.

This module sits beside ``controllers``, not in it: reading logs observes the host and
manages nothing, and the API reads logs without importing any controller. Its runs go
through ``pockestrator.subprocesses``, like every other short-lived program the agent runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pockestrator.specs.grammar import check_project_name
from pockestrator.specs.model import unit_name
from pockestrator.subprocesses import ProcessTimedOut, end_process, run_bounded

MAX_LINES = 10_000
MESSAGE_MAX = 16 * 1024
OUTPUT_MAX_BYTES = 32 * 1024 * 1024
LINE_LIMIT = 1024 * 1024
# A follower's journalctl gets SIGTERM and this long to exit before SIGKILL.
FOLLOWER_STOP_GRACE = 2.0
OUTPUT_FIELDS = ("MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "_COMM", "_PID")
LEVELS = ("EMERG", "ALERT", "CRIT", "ERROR", "WARNING", "NOTICE", "INFO", "DEBUG")
# journald cursors: "s=<hex>;i=<hex>;b=<hex>;m=<hex>;t=<hex>;x=<hex>".
_CURSOR = re.compile(r"[A-Za-z0-9=;_-]{1,512}", re.ASCII)
# A cgroup path as systemd names them (it becomes one argument, never more).
_CGROUP = re.compile(r"(/[A-Za-z0-9_.@:-]+)*", re.ASCII)
CGROUP_MAX = 1024
_AGENT_UNIT = re.compile(r"pockestrator-[a-z0-9-]{1,120}\.service", re.ASCII)
# Where a manager puts services that name no Slice= (rendered units name none).
DEFAULT_SLICE = {"system": "system.slice", "user": "app.slice"}

ManagerKind = Literal["system", "user"]


@dataclass(frozen=True)
class UnitScope:
    """The manager whose units' logs are read, and its own cgroup when systemd said it.

    ``cgroup`` is ``Manager.ControlGroup``: empty for the system manager (the root),
    ``/user.slice/.../user@1000.service`` or the sandbox's subtree for a user manager.
    """

    manager: ManagerKind
    cgroup: str | None = None

    def __post_init__(self) -> None:
        if self.cgroup is not None and (
            len(self.cgroup) > CGROUP_MAX or not _CGROUP.fullmatch(self.cgroup.rstrip("/"))
        ):
            raise ValueError(f"{self.cgroup[:80]!r} is not a cgroup path")

    def unit_cgroup(self, unit: str) -> str | None:
        """The cgroup journald records for processes of ``unit`` (None: not known)."""
        if self.cgroup is None:
            return None
        return f"{self.cgroup.rstrip('/')}/{DEFAULT_SLICE[self.manager]}/{unit}"


class JournalError(Exception):
    """journalctl could not be run or failed; the message says why."""


class JournalUnavailable(JournalError):
    """There is no journalctl on this host."""


def is_cursor(text: str) -> bool:
    """True for text shaped like a journald cursor (it becomes one argument, never more)."""
    return _CURSOR.fullmatch(text) is not None


@dataclass(frozen=True)
class LogEntry:
    """One journal entry of an instance, in the API's terms."""

    timestamp: datetime
    level: str
    message: str
    source: str
    cursor: str | None = None
    pid: int | None = None

    def as_line(self) -> str:
        """The plain text form: ``2025-07-31 19:30:15 [INFO] message``."""
        return f"{self.timestamp:%Y-%m-%d %H:%M:%S} [{self.level}] {self.message}"


@dataclass(frozen=True)
class JournalQuery:
    """Which entries of one service: the last ``lines``, optionally since a moment or cursor."""

    project_name: str
    lines: int = 100
    since: datetime | None = None
    until: datetime | None = None
    after_cursor: str | None = None
    follow: bool = False
    # Another of the agent's units of this service (its replica's) instead of the instance's.
    unit: str | None = None


def syslog_identifier(project_name: str) -> str:
    return f"{project_name}-pocketbase"


def journal_matches(project_name: str, scope: UnitScope, unit: str | None = None) -> list[str]:
    """The match terms for one service, joined with ``+`` (OR) as journalctl expects.

    Only trusted fields (set by journald, never by the writer) are matched; see the module.
    ``unit`` is one of the agent's own units of the service (a name the agent made).
    """
    name = check_project_name(project_name)
    if unit is None:
        unit = unit_name(name)
    elif not _AGENT_UNIT.fullmatch(unit) or name not in unit:
        raise ValueError(f"{unit[:80]!r} is not a unit of {name}")
    terms: list[list[str]] = []
    if scope.manager == "system":
        terms.append([f"_SYSTEMD_UNIT={unit}"])
        terms.append([f"UNIT={unit}", "_PID=1"])  # what PID 1 says about the unit
    else:
        terms.append([f"_SYSTEMD_USER_UNIT={unit}"])
    cgroup = scope.unit_cgroup(unit)
    if cgroup is not None:
        terms.append([f"_SYSTEMD_CGROUP={cgroup}"])
    arguments: list[str] = []
    for term in terms:
        if arguments:
            arguments.append("+")
        arguments.extend(term)
    return arguments


def journalctl_arguments(
    query: JournalQuery,
    *,
    journal_dir: Path | None,
    scope: UnitScope,
    binary: str = "journalctl",
) -> list[str]:
    """The full argument list for ``query`` (pure; the subprocess gets exactly this list)."""
    if not 0 <= query.lines <= MAX_LINES:
        raise ValueError(f"lines must be between 0 and {MAX_LINES}")
    arguments = [
        binary,
        "--no-pager",
        "--quiet",
        "--all",
        "--output=json",
        "--output-fields=" + ",".join(OUTPUT_FIELDS),
        f"--lines={query.lines}",
    ]
    if journal_dir is not None:
        arguments.append(f"--directory={journal_dir}")
    if query.since is not None:
        since = query.since if query.since.tzinfo else query.since.replace(tzinfo=UTC)
        # "@<seconds since the epoch>" is unambiguous whatever the host's time zone.
        arguments.append(f"--since=@{since.timestamp():.6f}")
    if query.until is not None:
        until = query.until if query.until.tzinfo else query.until.replace(tzinfo=UTC)
        arguments.append(f"--until=@{until.timestamp():.6f}")
    if query.after_cursor is not None:
        if not is_cursor(query.after_cursor):
            raise ValueError("not a journal cursor")
        arguments.append(f"--after-cursor={query.after_cursor}")
    if query.follow:
        arguments.append("--follow")
    arguments.extend(journal_matches(query.project_name, scope, query.unit))
    return arguments


def _text(value: Any) -> str:
    """A journal field as text: journalctl writes non-UTF-8 values as arrays of bytes."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, int) and 0 <= item < 256 for item in value):
        return bytes(value).decode("utf-8", errors="replace")
    if value is None:
        return ""
    return str(value)


def _level(priority: Any) -> str:
    try:
        number = int(_text(priority))
    except ValueError:
        return "INFO"
    return LEVELS[number] if 0 <= number < len(LEVELS) else "INFO"


def parse_entry(line: str | bytes, project_name: str) -> LogEntry | None:
    """One line of ``journalctl -o json`` as a ``LogEntry``; None for anything else."""
    try:
        data = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, Mapping):
        return None
    try:
        micros = int(_text(data.get("__REALTIME_TIMESTAMP")))
        timestamp = datetime.fromtimestamp(micros / 1_000_000, UTC)
    except (ValueError, OverflowError, OSError):
        return None
    message = _text(data.get("MESSAGE"))
    if len(message) > MESSAGE_MAX:
        message = message[:MESSAGE_MAX] + " …[truncated]"
    identifier = _text(data.get("SYSLOG_IDENTIFIER")) or _text(data.get("_COMM"))
    source = "pocketbase" if identifier == syslog_identifier(project_name) else identifier
    cursor = _text(data.get("__CURSOR")) or None
    try:
        pid: int | None = int(_text(data.get("_PID")))
    except ValueError:
        pid = None
    return LogEntry(
        timestamp=timestamp,
        level=_level(data.get("PRIORITY")),
        message=message,
        source=source or "unknown",
        cursor=cursor if cursor and is_cursor(cursor) else None,
        pid=pid,
    )


@dataclass(eq=False)
class JournalReader:
    """Runs journalctl for services' logs; every run has a timeout and ends its process."""

    journal_dir: Path | None
    scope: Callable[[], Awaitable[UnitScope]]
    _: KW_ONLY
    binary: str = "journalctl"
    timeout: float = 15.0

    def available(self) -> bool:
        return shutil.which(self.binary) is not None

    async def arguments(self, query: JournalQuery) -> list[str]:
        return journalctl_arguments(
            query, journal_dir=self.journal_dir, scope=await self.scope(), binary=self.binary
        )

    async def _spawn(self, arguments: Sequence[str]) -> asyncio.subprocess.Process:
        try:
            return await asyncio.create_subprocess_exec(
                *arguments,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                limit=LINE_LIMIT,
            )
        except FileNotFoundError as exc:
            raise JournalUnavailable(f"{self.binary} is not installed") from exc
        except OSError as exc:
            raise JournalError(f"cannot run {self.binary}: {exc}") from exc

    async def read(self, query: JournalQuery) -> list[LogEntry]:
        """The last ``query.lines`` entries, oldest first (bounded output and time)."""
        if query.follow:
            raise ValueError("use follow() for a follow query")
        try:
            result = await run_bounded(
                await self.arguments(query), timeout=self.timeout, output_limit=OUTPUT_MAX_BYTES
            )
        except ProcessTimedOut as exc:
            raise JournalError(f"{self.binary} did not answer within {self.timeout:g}s") from exc
        except FileNotFoundError as exc:
            raise JournalUnavailable(f"{self.binary} is not installed") from exc
        except OSError as exc:
            raise JournalError(f"cannot run {self.binary}: {exc}") from exc
        entries = [
            entry
            for line in result.stdout.split(b"\n")
            # A line past LINE_LIMIT is skipped, as the follower's line reader skips it.
            if len(line) < LINE_LIMIT and (entry := parse_entry(line, query.project_name))
        ]
        # Output cut at OUTPUT_MAX_BYTES: journalctl was stopped, what came is the answer.
        code = 0 if result.truncated else result.returncode
        if code != 0 and not entries:
            text = result.stderr_text.strip()
            raise JournalError(f"{self.binary} failed (exit {code}): {text[:500]}")
        return entries

    def follow(self, query: JournalQuery) -> LogFollower:
        """A running ``journalctl --follow`` for ``query``; use as an async context manager."""
        follow_query = query if query.follow else replace(query, follow=True)
        return LogFollower(self, follow_query)


class LogFollower:
    """New entries of one service as they arrive; the process ends with the context."""

    def __init__(self, reader: JournalReader, query: JournalQuery) -> None:
        self.reader = reader
        self.query = query
        self._process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> LogFollower:
        self._process = await self.reader._spawn(await self.reader.arguments(self.query))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._process is not None:
            await end_process(self._process, grace=FOLLOWER_STOP_GRACE)
            self._process = None

    def stop(self) -> None:
        """Ask journalctl to end (e.g. at shutdown): ``next`` then raises ``EOFError``."""
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()

    async def next(self, timeout: float) -> LogEntry | None:
        """The next entry, or None when none arrived within ``timeout`` seconds.

        Raises ``EOFError`` when journalctl has ended (it should not while following).
        """
        process = self._process
        if process is None or process.stdout is None:
            raise RuntimeError("the follower is not running")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            try:
                # A cancelled readline leaves a partial line in the buffer for the next call.
                line = await asyncio.wait_for(process.stdout.readline(), remaining)
            except TimeoutError:
                return None
            except ValueError:
                continue
            if not line:
                raise EOFError(f"{self.reader.binary} ended (exit {await process.wait()})")
            entry = parse_entry(line, self.query.project_name)
            if entry is not None:
                return entry
