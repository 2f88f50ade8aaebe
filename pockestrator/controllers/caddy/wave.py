"""One wave of site changes: written, validated once, reloaded once; refused sites put back.

``CaddySites.apply`` hands its wave (name -> snippet text, None = remove) to a ``Wave``.
Each reload makes Caddy re-provision every site, so a whole wave costs one
``caddy validate`` and one reload. A wave that does not validate never reaches the
running Caddy: the snippets are put back as they were, the offending service(s) are found
from Caddy's error text (it names the file and line, or the ambiguous address; see
``errors``), and the rest of the wave is validated and reloaded without them, so one bad
service never blocks the others. When the text names nobody, the group is halved until
the culprits are isolated (``_settle``).

Validation runs on the real files, so between the write and the restore of a failed wave
(one ``caddy validate``, about 0.1 s) the folder holds a state Caddy has not accepted; a
Caddy that restarted in that window would refuse it and keep failing until the restore.
That window is the only time the folder differs from a validated state.

A wave reaches Caddy only through ``WaveTarget`` (what ``CaddySites`` offers).
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pockestrator.controllers.caddy.caddyfile import brace_problem, host_of, site_addresses
from pockestrator.controllers.caddy.errors import (
    CaddyError,
    ambiguous_addresses,
    files_in_error,
)
from pockestrator.controllers.caddy.render import with_import
from pockestrator.controllers.files import remove_file, write_atomic
from pockestrator.specs.grammar import GrammarError

# Rounds in which Caddy's error names an offender, before falling back to bisection.
MAX_NAMED_ROUNDS = 8


class WaveTarget(Protocol):
    """What a wave needs of the Caddy it changes (``CaddySites`` is one)."""

    sites_dir: Path
    main_file: Path

    def snippet_path(self, project_name: str) -> Path: ...

    async def validate(self) -> str | None: ...

    async def caddy_running(self) -> bool: ...

    async def reload(self) -> None: ...


@dataclass(frozen=True)
class SiteOutcome:
    """What a wave did to one service's snippet. ``error`` is Caddy's text when refused."""

    ok: bool
    error: str | None = None
    changed: bool = False
    hash_before: str | None = None
    hash_after: str | None = None


@dataclass(frozen=True)
class WaveResult:
    """The outcome of one ``apply``: per service, and what it cost.

    ``validate_seconds`` and ``reload_seconds`` are wall-clock figures for benchmarks; on
    the 2-core test bed a wave of 50 new sites took about 0.08 s to validate and 0.09 s to
    reload (tests/integration/test_caddy.py prints them with ``-s``).
    """

    sites: dict[str, SiteOutcome]
    validations: int = 0
    reloaded: bool = False
    import_added: bool = False
    validate_seconds: float = 0.0
    reload_seconds: float = 0.0
    note: str | None = None

    @property
    def ok(self) -> bool:
        return all(outcome.ok for outcome in self.sites.values())

    @property
    def errors(self) -> dict[str, str]:
        return {name: o.error or "" for name, o in self.sites.items() if not o.ok}


class Wave:
    """One run of ``CaddySites.apply``: the snapshot, the trials and the final state."""

    def __init__(self, sites: WaveTarget, wave: Mapping[str, str | None]) -> None:
        self.sites = sites
        self.wave = dict(wave)
        self.errors: dict[str, str] = {}
        self.paths: dict[str, Path] = {}
        self.before: dict[str, bytes | None] = {}
        self.desired: dict[str, bytes | None] = {}
        self.on_disk: dict[str, bytes | None] = {}
        self.main_before: bytes | None = None
        self.main_mode = 0o644
        self.main_written = False
        self.validations = 0
        self.validate_seconds = 0.0
        # Sets of accepted names whose state (with the import line) validated.
        self.validated: set[frozenset[str]] = set()

    async def run(self) -> WaveResult:
        candidates = self._snapshot()
        main_after = self._main_with_import()
        if not candidates and main_after is None:
            return self._result([], reloaded=False)
        if main_after is not None:
            write_atomic(self.sites.main_file, main_after, self.main_mode)
            self.main_written = True

        applied = await self._settle(candidates)
        if not applied and not self.main_written:
            return self._result([], reloaded=False)  # every change was refused
        if frozenset(applied) not in self.validated:
            # Every change was refused but the import line is new: it must validate alone.
            error = await self._check([])
            if error is not None:
                self.restore_everything()
                return self._result(
                    [], reloaded=False, note=f"the import line was not added: {error}"
                )

        started = time.monotonic()
        reloaded = False
        note = None
        try:
            if await self.sites.caddy_running():
                await self.sites.reload()
                reloaded = True
            else:
                note = "Caddy is not running; it reads the new sites when it starts"
        except CaddyError as exc:
            self.restore_everything()
            for name in applied:
                self.errors[name] = str(exc)
            return self._result(
                [], reloaded=False, reload_seconds=time.monotonic() - started, note=str(exc)
            )
        return self._result(
            applied, reloaded=reloaded, reload_seconds=time.monotonic() - started, note=note
        )

    def _snapshot(self) -> list[str]:
        """Read what is on disk for every valid name; return the names whose text changes."""
        candidates = []
        for name, text in sorted(self.wave.items()):
            try:
                path = self.sites.snippet_path(name)
            except (GrammarError, ValueError) as exc:
                self.errors[name] = f"refused: {exc}"
                continue
            if text is not None:
                problem = brace_problem(text)
                if problem is not None:
                    self.errors[name] = f"{path}: {problem}"
                    continue
            self.paths[name] = path
            self.before[name] = self.on_disk[name] = _read(path)
            self.desired[name] = None if text is None else text.encode()
            if self.desired[name] != self.before[name]:
                candidates.append(name)
        return candidates

    def _main_with_import(self) -> bytes | None:
        main = self.sites.main_file
        try:
            self.main_before = main.read_bytes()
            self.main_mode = main.stat().st_mode & 0o7777
        except FileNotFoundError:
            self.main_before = None
        return with_import(self.main_before or b"", self.sites.sites_dir)

    def _materialise(self, chosen: Iterable[str]) -> None:
        """Put the desired text of ``chosen`` and the old text of every other name on disk."""
        chosen = set(chosen)
        for name, path in self.paths.items():
            target = self.desired[name] if name in chosen else self.before[name]
            if self.on_disk[name] == target:
                continue
            if target is None:
                remove_file(path)
            else:
                write_atomic(path, target)
            self.on_disk[name] = target

    async def _check(self, chosen: list[str]) -> str | None:
        self._materialise(chosen)
        started = time.monotonic()
        try:
            error = await self.sites.validate()
        finally:
            self.validations += 1
            self.validate_seconds += time.monotonic() - started
        if error is None:
            self.validated.add(frozenset(chosen))
        return error

    async def _settle(self, candidates: list[str]) -> list[str]:
        """The largest part of the wave that validates, found with as few runs as we can.

        First the whole wave. When Caddy names offenders (a file, an ambiguous address),
        they are dropped and the rest is tried again; otherwise the group is halved. The
        names left out get Caddy's error text. On return the disk holds exactly the
        accepted names' new text and everyone else's old text.
        """
        good: list[str] = []
        groups = [candidates] if candidates else []
        named_rounds = 0
        baseline_checked = False
        while groups:
            group = groups.pop(0)
            error = await self._check(good + group)
            if error is None:
                good += group
                continue
            named = self._offenders(error, group)
            if named and named_rounds < MAX_NAMED_ROUNDS:
                named_rounds += 1
                for name in named:
                    self.errors[name] = error
                rest = [name for name in group if name not in named]
                if rest:
                    groups.insert(0, rest)
                continue
            if len(group) == 1:
                self.errors[group[0]] = error
                continue
            if not good and not baseline_checked:
                baseline_checked = True
                baseline_error = await self._check([])
                if baseline_error is not None:
                    # Nothing of this wave can be proven good on top of a broken config.
                    for name in group + [n for g in groups for n in g]:
                        self.errors[name] = (
                            f"the Caddy configuration is invalid even without this change: "
                            f"{baseline_error}"
                        )
                    groups = []
                    continue
            half = len(group) // 2
            groups[:0] = [group[:half], group[half:]]
        self._materialise(good)
        return good

    def _offenders(self, error: str, group: list[str]) -> list[str]:
        """Names in ``group`` that Caddy's error text points at."""
        by_file: dict[str, str] = {}
        for name in group:
            # Caddy prints the path as the import glob spelled it; accept the real one too.
            by_file[str(self.paths[name])] = by_file[str(self.paths[name].resolve())] = name
        named = {by_file[found] for found in files_in_error(error) if found in by_file}
        for address in ambiguous_addresses(error):
            host = host_of(address)
            for name in group:
                text = self.desired[name]
                if text is not None and host in site_addresses(text.decode()):
                    named.add(name)
        return sorted(named)

    def restore_everything(self) -> None:
        """Put every snippet of the wave and the main Caddyfile back as they were."""
        with contextlib.suppress(OSError):
            self._materialise([])
        if self.main_written:
            if self.main_before is None:
                remove_file(self.sites.main_file)
            else:
                write_atomic(self.sites.main_file, self.main_before, self.main_mode)
            self.main_written = False

    def _result(
        self,
        applied: list[str],
        *,
        reloaded: bool,
        reload_seconds: float = 0.0,
        note: str | None = None,
    ) -> WaveResult:
        outcomes: dict[str, SiteOutcome] = {}
        for name in self.wave:
            before = self.before.get(name)
            hash_before = _hash(before)
            if name in self.errors:
                outcomes[name] = SiteOutcome(
                    ok=False,
                    error=self.errors[name],
                    hash_before=hash_before,
                    hash_after=_hash(self.on_disk.get(name, before)),
                )
            else:
                after = self.desired.get(name)
                outcomes[name] = SiteOutcome(
                    ok=True,
                    changed=name in applied,
                    hash_before=hash_before,
                    hash_after=_hash(after),
                )
        return WaveResult(
            sites=outcomes,
            validations=self.validations,
            reloaded=reloaded,
            import_added=self.main_written,
            validate_seconds=self.validate_seconds,
            reload_seconds=reload_seconds,
            note=note,
        )


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _hash(content: bytes | None) -> str | None:
    """The same digest as ``files.sha256_file`` (and ``sha256_text`` of UTF-8 text)."""
    return None if content is None else hashlib.sha256(content).hexdigest()
