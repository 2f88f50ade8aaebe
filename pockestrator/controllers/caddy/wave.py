"""One wave of site changes: written, loaded by Caddy once; refused sites put back.

``CaddySites.apply`` hands its wave (name -> snippet text, None = remove) to a ``Wave``.
The changed snippets are written and Caddy's admin API is asked once to ``/load`` the
main Caddyfile: Caddy adapts it, provisions the new config and switches to it atomically,
or keeps running the old one and says why. So a wave costs one request and no
subprocess, and a refused config never reaches the running Caddy. Then the snippets are
put back as they were for the offending service(s), found from Caddy's error text (it
names the file and line, or the ambiguous address; see ``errors``), and the rest is
loaded without them, so one bad service never blocks the others. When the text names
nobody, the group is halved until the culprits are isolated (``_settle``): with
``/adapt``, which loads nothing, when the Caddyfile did not adapt; with ``/load`` itself
when the adapted config failed to provision (Caddy has no dry run for that), so each
half that loads is live at once, and Caddy only ever runs the old config plus accepted
changes.

Without an admin API to ask (Caddy stopped, or a systemd reload with an unreachable
admin endpoint), trials are ``caddy validate`` runs and the wave ends with one reload.

Caddy reads the snippets from disk, so between the write and the restore of a refused
trial (one request, milliseconds) the folder holds a state Caddy has not accepted; a
Caddy that restarted in that window would refuse it and keep failing until the restore.
That window is the only time the folder differs from an accepted state.

A wave reaches Caddy only through ``WaveTarget`` (what ``CaddySites`` offers).
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from pockestrator.controllers.caddy.caddyfile import brace_problem, host_of, site_addresses
from pockestrator.controllers.caddy.errors import (
    CaddyError,
    ambiguous_addresses,
    files_in_error,
    refused_while_adapting,
)
from pockestrator.controllers.caddy.render import with_import
from pockestrator.files import remove_file, write_atomic
from pockestrator.specs.grammar import GrammarError

# Rounds in which Caddy's error names an offender, before falling back to bisection.
MAX_NAMED_ROUNDS = 8

# How one trial is judged: Caddy loads it (and runs it when it is accepted), Caddy only
# adapts it, or ``caddy validate`` provisions it in a process of its own.
Trial = Literal["load", "adapt", "validate"]


class WaveTarget(Protocol):
    """What a wave needs of the Caddy it changes (``CaddySites`` is one)."""

    sites_dir: Path
    main_file: Path

    def snippet_path(self, project_name: str) -> Path: ...

    async def apply_mode(self) -> Literal["admin", "reload", "offline"]: ...

    async def load(self) -> str | None: ...

    async def adapt(self) -> str | None: ...

    async def validate(self) -> str | None: ...

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

    ``validations`` counts the configs Caddy judged (a ``/load``, an ``/adapt`` or a
    ``caddy validate``); ``reloaded`` says the running Caddy took a new config.
    ``validate_seconds`` (the trials Caddy refused or only checked) and ``reload_seconds``
    (the loads it took, or the systemd reload) are wall-clock figures for benchmarks
    (tests/integration/test_caddy.py prints them with ``-s``).
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
        self.load_seconds = 0.0
        # Sets of accepted names whose state (with the import line) validated.
        self.validated: set[frozenset[str]] = set()
        # The set of accepted names whose state the running Caddy last loaded from us.
        self.loaded: frozenset[str] | None = None

    async def run(self) -> WaveResult:
        candidates = self._snapshot()
        main_after = self._main_with_import()
        if not candidates and main_after is None:
            return self._result([], reloaded=False)
        if main_after is not None:
            write_atomic(self.sites.main_file, main_after, self.main_mode)
            self.main_written = True
        mode = await self.sites.apply_mode()
        if mode == "admin":
            return await self._run_through_admin(candidates)
        return await self._run_with_validate(candidates, running=mode == "reload")

    async def _run_through_admin(self, candidates: list[str]) -> WaveResult:
        """One ``/load`` of the whole wave; offenders found and dropped only if refused."""
        try:
            error = await self._check(candidates, "load")
            applied = candidates if error is None else []
            if error is not None and candidates:
                applied = await self._settle(candidates, first_error=error)
                settled = self.loaded == frozenset(applied)
                if not settled and (applied or self.main_written):
                    # Parts accepted by ``/adapt`` only; provisioning can still refuse them.
                    error = await self._check(applied, "load")
                    if error is not None:
                        base = sorted(self.loaded or ())
                        rest = [name for name in applied if name not in base]
                        applied = await self._settle(
                            rest, first_error=error, halve_with="load", base=base
                        )
        except CaddyError as exc:
            # The admin API stopped answering mid-wave: the disk goes back to how it was
            # (a part already loaded is repaired by the next resync, as drift).
            self.restore_everything()
            for name in candidates:
                self.errors.setdefault(name, str(exc))
            return self._result([], reloaded=self.loaded is not None, note=str(exc))
        if self.loaded != frozenset(applied):
            # Nothing was accepted, not even the new import line alone.
            note = f"the import line was not added: {error}" if self.main_written else None
            self.restore_everything()
            return self._result([], reloaded=False, note=note)
        return self._result(applied, reloaded=True, reload_seconds=self.load_seconds)

    async def _run_with_validate(self, candidates: list[str], *, running: bool) -> WaveResult:
        """``caddy validate`` trials, then one reload of a running Caddy (no admin API)."""
        applied = await self._settle(candidates, halve_with="validate", named_with="validate")
        if not applied and not self.main_written:
            return self._result([], reloaded=False)  # every change was refused
        if frozenset(applied) not in self.validated:
            # Every change was refused but the import line is new: it must validate alone.
            error = await self._check([], "validate")
            if error is not None:
                self.restore_everything()
                return self._result(
                    [], reloaded=False, note=f"the import line was not added: {error}"
                )

        started = time.monotonic()
        reloaded = False
        note = None
        try:
            if running:
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

    async def _check(self, chosen: list[str], trial: Trial) -> str | None:
        """Put the state of ``chosen`` on disk and have Caddy judge it (``Trial``)."""
        self._materialise(chosen)
        started = time.monotonic()
        try:
            if trial == "load":
                error = await self.sites.load()
            elif trial == "adapt":
                error = await self.sites.adapt()
            else:
                error = await self.sites.validate()
        finally:
            self.validations += 1
            elapsed = time.monotonic() - started
        if error is None and trial == "load":
            self.loaded = frozenset(chosen)
            self.load_seconds += elapsed
        else:
            self.validate_seconds += elapsed
        if error is None:
            self.validated.add(frozenset(chosen))
        return error

    async def _settle(
        self,
        candidates: list[str],
        *,
        first_error: str | None = None,
        named_with: Trial = "load",
        halve_with: Trial | None = None,
        base: list[str] | None = None,
    ) -> list[str]:
        """The largest part of the wave Caddy accepts, found with as few trials as we can.

        First the whole wave (``first_error`` when that trial was made already). When
        Caddy names offenders (a file, an ambiguous address), they are dropped and the
        rest is tried again (``named_with``: a load, which is the change wanted anyway
        when it is accepted); otherwise the group is halved, and halves are tried with
        ``halve_with``, by default ``adapt`` when the Caddyfile did not adapt, else
        ``load``. ``base`` is accepted already (loaded: a second round after a refused
        load keeps what runs). The names left out get Caddy's error text. On return the
        disk holds exactly the accepted names' new text and everyone else's old text.
        """
        good: list[str] = list(base or ())
        # (names, the trial that judges them, Caddy's answer when already known)
        groups: list[tuple[list[str], Trial, str | None]] = (
            [(candidates, named_with, first_error)] if candidates else []
        )
        named_rounds = 0
        baseline_checked = False
        while groups:
            group, trial, known = groups.pop(0)
            error = known if known is not None else await self._check(good + group, trial)
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
                    groups.insert(0, (rest, named_with, None))
                continue
            if len(group) == 1:
                self.errors[group[0]] = error
                continue
            halves: Trial = halve_with or ("adapt" if refused_while_adapting(error) else "load")
            if not good and not baseline_checked:
                baseline_checked = True
                # Loads nothing: a config that adapts but cannot provision is found below.
                baseline: Trial = "validate" if halves == "validate" else "adapt"
                baseline_error = await self._check([], baseline)
                if baseline_error is not None:
                    # Nothing of this wave can be proven good on top of a broken config.
                    for name in group + [n for g, _, _ in groups for n in g]:
                        self.errors[name] = (
                            f"the Caddy configuration is invalid even without this change: "
                            f"{baseline_error}"
                        )
                    groups = []
                    continue
            half = len(group) // 2
            groups[:0] = [(group[:half], halves, None), (group[half:], halves, None)]
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
