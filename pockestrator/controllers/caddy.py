"""Caddy sites: one rendered snippet per service, validated and reloaded in waves.

``render_site`` turns a ``ServiceSpec`` into the text of one site block; it is pure and
deterministic, so its SHA-256 (``caddy_config_hash``) identifies the desired state and a
file on disk that hashes differently is drift. Every value it writes has passed a strict
grammar (``specs.grammar``), and it checks them again, so no spec can add a second site,
a directive, an import or an environment placeholder to the file.

``CaddySites`` owns one folder (``caddy_sites_dir``) with ``<project_name>.caddy`` files,
which the main Caddyfile pulls in with one absolute ``import <dir>/*.caddy`` line. Its
``apply`` takes a *wave* (every site change the reconciler has gathered) and turns it into
exactly one ``caddy validate`` and one reload, because each reload makes Caddy re-provision
every site. A wave that does not validate never reaches the running Caddy: the snippets
are put back as they were, the offending service(s) are found from Caddy's error text
(it names the file and line, or the ambiguous address), and the rest of the wave is
validated and reloaded without them, so one bad service never blocks the others.

Validation runs on the real files, so between the write and the restore of a failed wave
(one ``caddy validate``, about 0.1 s) the folder holds a state Caddy has not accepted; a
Caddy that restarted in that window would refuse it and keep failing until the restore.
That window is the only time the folder differs from a validated state.

The systemd side (``ReloadUnit``) goes through ``controllers.systemd.bus``; writing goes
through ``controllers.files``; deciding *what* each site should be is the reconciler's job.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from pockestrator.config import RENDERABLE_PATH, AgentConfig
from pockestrator.controllers.files import remove_file, sha256_file, write_atomic
from pockestrator.controllers.systemd.bus import SystemdBus, SystemdError
from pockestrator.specs import grammar
from pockestrator.specs.errors import ErrorCode
from pockestrator.specs.grammar import GrammarError
from pockestrator.specs.model import ServiceSpec
from pockestrator.subprocesses import ProcessTimedOut, run_bounded

# PocketBase's production guidance puts a body limit in front of it. 10MB admits a
# PocketBase file field at its default 5MB limit plus the rest of a multipart form; larger
# uploads are a deliberate per-host change (PocketBase's own per-field limits still apply).
MAX_REQUEST_BODY = "10MB"
# Realtime subscriptions are Server-Sent Events that stay open; PocketBase itself ends an
# idle one after 5 minutes, so Caddy's read timeout must be longer than that.
PROXY_READ_TIMEOUT = "360s"
SNIPPET_SUFFIX = ".caddy"
# Caddy's error text is shown to users in a service's status; keep it readable.
ERROR_TEXT_MAX = 2000
# Rounds in which Caddy's error names an offender, before falling back to bisection.
MAX_NAMED_ROUNDS = 8
# ``caddy adapt`` prints the whole JSON config: 37 KB for 100 sites (measured), so this bound
# is far past any host's, and a Caddy that prints more is stopped rather than believed.
CADDY_OUTPUT_MAX_BYTES = 64 * 1024 * 1024

# A folder path that can stand unquoted in a Caddyfile token (the import line).
_FILE_IN_ERROR = re.compile(r"([^\s:'\"\[\]()]+\.caddy):\d+")
_AMBIGUOUS_SITE = re.compile(r"ambiguous site definition: (\S+)")


# -- rendering (pure) ------------------------------------------------------------------


def site_address(domain: str, *, tls: bool) -> str:
    """The address of the site block.

    With TLS the bare domain lets Caddy manage certificates. A single-label domain gets an
    explicit ``https://``, because a bare word at the start of a line can be read as a
    Caddyfile keyword (``import`` would turn the site into an import directive).
    """
    if not tls:
        return f"http://{domain}"
    return domain if "." in domain else f"https://{domain}"


def render_site(spec: ServiceSpec, *, tls: bool) -> str:
    """The Caddy site block of one service; the same spec always gives the same bytes.

    The values are checked against their grammars again (a spec built with
    ``model_construct`` skips validation), so only a lowercase project name, an ASCII
    hostname and an integer port can ever reach the file.
    """
    name = grammar.check_project_name(spec.project_name)
    domain = spec.domain
    if grammar.normalize_domain(domain) != domain:
        raise GrammarError(ErrorCode.INVALID_DOMAIN, "domain is not in its normalised ASCII form")
    port = spec.port
    if isinstance(port, bool) or not isinstance(port, int) or not 1024 <= port <= 65535:
        raise GrammarError(ErrorCode.PORT_OUT_OF_RANGE, "port must be 1024-65535")
    return (
        f"# Generated by Pockestrator for service {name}. Do not edit: the agent detects\n"
        "# changes to this file by its hash and writes it again.\n"
        f"{site_address(domain, tls=tls)} {{\n"
        "\trequest_body {\n"
        f"\t\tmax_size {MAX_REQUEST_BODY}\n"
        "\t}\n"
        f"\treverse_proxy 127.0.0.1:{port} {{\n"
        # Caddy sets X-Forwarded-For/-Proto/-Host itself and ignores what clients send
        # unless trusted_proxies says otherwise; X-Real-IP is what PocketBase's
        # "trusted proxy" setting is usually pointed at.
        "\t\theader_up X-Real-IP {remote_host}\n"
        "\t\ttransport http {\n"
        f"\t\t\tread_timeout {PROXY_READ_TIMEOUT}\n"
        "\t\t}\n"
        "\t}\n"
        "}\n"
    )


def snippet_file_name(project_name: str) -> str:
    """``<project_name>.caddy``, only for a valid project name (which cannot hold a path)."""
    return grammar.check_project_name(project_name) + SNIPPET_SUFFIX


def import_line(sites_dir: Path) -> str:
    """The one line the main Caddyfile needs: an absolute glob over the snippets.

    ``*.caddy`` never matches ``write_atomic``'s temporary files (``.<name>.<random>.tmp``),
    and Caddy skips hidden files in import globs as well.
    """
    return f"import {sites_dir}/*{SNIPPET_SUFFIX}"


def _import_targets(sites_dir: Path) -> set[str]:
    pattern = f"*{SNIPPET_SUFFIX}"
    return {f"{sites_dir}/{pattern}", f"{sites_dir.resolve()}/{pattern}"}


def has_import(caddyfile: str, sites_dir: Path) -> bool:
    """Whether some line of ``caddyfile`` already imports every snippet of ``sites_dir``."""
    targets = _import_targets(sites_dir)
    for line in caddyfile.splitlines():
        tokens = line.split()
        if len(tokens) >= 2 and tokens[0] == "import" and tokens[1].strip("\"'`") in targets:
            return True
    return False


def with_import(caddyfile: bytes, sites_dir: Path) -> bytes | None:
    """``caddyfile`` with the import line appended, or None when it already has one.

    Nothing before the new line changes, byte for byte: the operator's file stays theirs.
    """
    if has_import(caddyfile.decode("utf-8", errors="replace"), sites_dir):
        return None
    newline = b"\r\n" if b"\r\n" in caddyfile else b"\n"
    prefix = caddyfile if not caddyfile or caddyfile.endswith(b"\n") else caddyfile + newline
    return prefix + import_line(sites_dir).encode() + newline


def caddyfile_tokens(text: str) -> list[tuple[str, int]]:
    """``(token, line)`` pairs the way Caddy's lexer splits a file, enough to see structure.

    Whitespace separates tokens; ``#`` at the start of a token comments out the rest of the
    line; ``"..."`` (with ``\\"``) and backticks quote; ``<<MARKER`` heredocs run to the line
    that starts with the marker. Quoted tokens come back with their quotes, so a quoted ``{``
    never counts as a brace.
    """
    tokens: list[tuple[str, int]] = []
    index, line, length = 0, 1, len(text)
    while index < length:
        char = text[index]
        if char == "\n":
            line += 1
            index += 1
        elif char.isspace():
            index += 1
        elif char == "#":
            while index < length and text[index] != "\n":
                index += 1
        elif char in '"`':
            start, start_line = index, line
            index += 1
            while index < length and text[index] != char:
                if char == '"' and text[index] == "\\" and index + 1 < length:
                    index += 1
                if text[index] == "\n":
                    line += 1
                index += 1
            index += 1
            tokens.append((text[start:index], start_line))
        elif _heredoc_marker(text, index):
            marker = _heredoc_marker(text, index)
            start, start_line = index, line
            cursor = text.find("\n", index)
            cursor = length if cursor < 0 else cursor
            closed_at = None
            while cursor < length:
                cursor += 1
                line += 1
                end = text.find("\n", cursor)
                end = length if end < 0 else end
                body = text[cursor:end].lstrip()
                # The closing marker may be indented and followed by more words.
                if body == marker or (body.startswith(marker) and body[len(marker)].isspace()):
                    closed_at = end - len(body) + len(marker)
                    break
                cursor = end
            index = closed_at if closed_at is not None else cursor
            tokens.append((text[start:index], start_line))
        else:
            start = index
            while index < length and not text[index].isspace():
                index += 1
            tokens.append((text[start:index], line))
    return tokens


def _heredoc_marker(text: str, index: int) -> str:
    """The marker of a ``<<MARKER`` heredoc starting at ``index``, or ""."""
    if not text.startswith("<<", index):
        return ""
    end = text.find("\n", index)
    marker = text[index + 2 : len(text) if end < 0 else end].strip()
    return marker if re.fullmatch(r"[A-Za-z0-9_-]+", marker) else ""


def brace_problem(text: str) -> str | None:
    """Why the braces of a snippet do not balance, or None when they do.

    An import glob splices every file into one token stream, so an unclosed block in one
    snippet makes Caddy blame the next file; checking each snippet on its own keeps the
    blame where it belongs.
    """
    depth = 0
    for word, line in caddyfile_tokens(text):
        if word == "{":
            depth += 1
        elif word == "}":
            depth -= 1
            if depth < 0:
                return f"line {line}: '}}' closes a block that was never opened"
    if depth:
        return f"{depth} block(s) opened with '{{' are never closed"
    return None


def site_addresses(text: str) -> set[str]:
    """Host names of the top-level site blocks a snippet declares (scheme and port cut)."""
    hosts: set[str] = set()
    depth = 0
    pending: list[tuple[str, int]] = []
    for word, line in caddyfile_tokens(text):
        if word == "{":
            if depth == 0:
                hosts.update(_host_of(address) for address, _ in pending)
            depth += 1
            pending = []
        elif word == "}":
            depth = max(depth - 1, 0)
            pending = []
        elif depth == 0:
            if pending and pending[-1][1] != line and not pending[-1][0].endswith(","):
                pending = []
            pending.append((word, line))
    hosts.discard("")
    return hosts


def _host_of(address: str) -> str:
    address = address.rstrip(",").strip("\"'`")
    if "://" in address:
        address = address.split("://", 1)[1]
    address = address.split("/", 1)[0]
    return address.rsplit(":", 1)[0] if address.count(":") == 1 else address


def caddy_error_text(stdout: str, stderr: str) -> str:
    """The useful line(s) of a failed Caddy command: its error log entries, else the tail."""
    messages = []
    for raw in stderr.splitlines():
        raw = raw.strip()
        if raw.startswith("{"):
            with contextlib.suppress(ValueError):
                entry = json.loads(raw)
                if isinstance(entry, dict) and entry.get("level") in ("error", "fatal"):
                    messages.append(str(entry.get("msg", "")) + _error_suffix(entry))
                continue
        elif raw.startswith("Error:"):
            messages.append(raw.removeprefix("Error:").strip())
    if not messages:
        tail = [line for line in (stderr + "\n" + stdout).splitlines() if line.strip()]
        messages = tail[-3:] or ["caddy failed without a message"]
    text = "; ".join(dict.fromkeys(messages))
    return text if len(text) <= ERROR_TEXT_MAX else text[: ERROR_TEXT_MAX - 3] + "..."


def _error_suffix(entry: dict[str, object]) -> str:
    detail = entry.get("error")
    return f": {detail}" if isinstance(detail, str) and detail else ""


# -- results ---------------------------------------------------------------------------


class CaddyError(Exception):
    """Caddy could not be run or reached at all (not a problem of one service's site)."""


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


@dataclass(frozen=True)
class CaddyObservation:
    """What is on disk and whether Caddy runs. ``snippets`` maps name -> SHA-256 or None."""

    snippets: dict[str, str | None] = field(default_factory=dict)
    import_present: bool = False
    caddy_running: bool = False


# -- the controller --------------------------------------------------------------------


class CaddySites:
    """Observe and apply the snippet folder; one validation and one reload per wave.

    ``validation_count`` and ``reload_count`` count real ``caddy validate`` runs and
    reloads over the object's life, for status pages and tests.
    """

    def __init__(
        self,
        config: AgentConfig,
        bus: SystemdBus | None = None,
        *,
        command_timeout: float = 30.0,
    ) -> None:
        if not RENDERABLE_PATH.fullmatch(str(config.caddy_sites_dir)):
            raise ValueError(
                f"caddy_sites_dir {str(config.caddy_sites_dir)!r} must be an absolute path of "
                "letters, digits and . _ + @ - only, to stand unquoted in the import line"
            )
        if config.caddy_reload == "systemd" and bus is None:
            raise ValueError("caddy_reload 'systemd' needs a SystemdBus")
        self.config = config
        self.bus = bus
        self.command_timeout = command_timeout
        self.sites_dir = config.caddy_sites_dir
        self.main_file = config.caddy_config
        self.validation_count = 0
        self.reload_count = 0
        self._lock = asyncio.Lock()

    # -- paths and observation ---------------------------------------------------------

    def snippet_path(self, project_name: str) -> Path:
        """The snippet of a service; refuses any name or link that would leave the folder."""
        path = self.sites_dir / snippet_file_name(project_name)
        if path.resolve().parent != self.sites_dir.resolve():
            raise ValueError(f"{path} does not stay inside {self.sites_dir}")
        return path

    def snippet_hash(self, project_name: str) -> str | None:
        return sha256_file(self.snippet_path(project_name))

    def list_sites(self) -> list[str]:
        """Project names of the snippets on disk; other files in the folder are ignored."""
        try:
            entries = sorted(self.sites_dir.iterdir())
        except FileNotFoundError:
            return []
        names = []
        for entry in entries:
            if entry.name.endswith(SNIPPET_SUFFIX):
                with contextlib.suppress(GrammarError):
                    names.append(grammar.check_project_name(entry.name[: -len(SNIPPET_SUFFIX)]))
        return names

    def import_present(self) -> bool:
        try:
            content = self.main_file.read_bytes()
        except FileNotFoundError:
            return False
        return has_import(content.decode("utf-8", errors="replace"), self.sites_dir)

    async def caddy_running(self) -> bool:
        """systemd mode: the unit's ActiveState; admin mode: the admin API answers."""
        if self.config.caddy_reload == "admin":
            status, body = await self._admin_request("GET", "/config/")
            # Only the admin API answers with JSON; a site port answers 200 to anything.
            try:
                return status == 200 and isinstance(json.loads(body), dict | None)
            except ValueError:
                return False
        assert self.bus is not None
        unit = await self.bus.unit_status(self.config.caddy_unit)
        return unit.active_state in ("active", "reloading")

    async def observe(self, names: Iterable[str] | None = None) -> CaddyObservation:
        """Snippet hashes (every snippet on disk when ``names`` is None), import, Caddy."""
        chosen = self.list_sites() if names is None else list(names)
        return CaddyObservation(
            snippets={name: self.snippet_hash(name) for name in chosen},
            import_present=self.import_present(),
            caddy_running=await self.caddy_running(),
        )

    # -- apply -------------------------------------------------------------------------

    async def apply(self, wave: Mapping[str, str | None]) -> WaveResult:
        """Make the snippets of ``wave`` (name -> text, None = remove) live, all or per site.

        Unchanged snippets cost nothing: no validation, no reload. Otherwise the changed
        ones are written, the whole config is validated once and Caddy is reloaded once.
        Snippets Caddy refuses are put back as they were and reported with Caddy's text.
        """
        async with self._lock:
            wave_run = _Wave(self, wave)
            try:
                return await wave_run.run()
            except BaseException:
                wave_run.restore_everything()
                raise

    async def validate(self) -> str | None:
        """One ``caddy validate`` of the main Caddyfile; None when valid, else Caddy's text."""
        self.validation_count += 1
        code, out, err = await self._caddy("validate", "--config", str(self.main_file))
        return None if code == 0 else caddy_error_text(out, err)

    async def reload(self) -> None:
        """Make the running Caddy load the files on disk; raises ``CaddyError`` on refusal."""
        self.reload_count += 1
        if self.config.caddy_reload == "admin":
            code, out, err = await self._caddy("adapt", "--config", str(self.main_file))
            if code != 0:
                raise CaddyError(f"caddy adapt failed: {caddy_error_text(out, err)}")
            status, body = await self._admin_request("POST", "/load", out.encode())
            if status != 200:
                raise CaddyError(
                    f"Caddy refused the new config (HTTP {status}): {body.strip()[:1000]}"
                )
            return
        assert self.bus is not None
        try:
            await self.bus.reload_unit(self.config.caddy_unit)
        except SystemdError as exc:
            raise CaddyError(
                f"reloading {self.config.caddy_unit} failed: {exc} "
                f"(Caddy's reason is in the journal of {self.config.caddy_unit})"
            ) from exc

    async def _caddy(self, command: str, *arguments: str) -> tuple[int, str, str]:
        """Run the Caddy binary with an argument list (never a shell) and a timeout."""
        try:
            result = await run_bounded(
                [self.config.caddy_binary, command, *arguments, "--adapter", "caddyfile"],
                timeout=self.command_timeout,
                output_limit=CADDY_OUTPUT_MAX_BYTES,
            )
        except ProcessTimedOut as exc:
            raise CaddyError(
                f"caddy {command} did not finish within {self.command_timeout}s"
            ) from exc
        except OSError as exc:
            raise CaddyError(f"cannot run {self.config.caddy_binary}: {exc}") from exc
        if result.truncated:
            raise CaddyError(
                f"caddy {command} printed more than {CADDY_OUTPUT_MAX_BYTES} bytes; stopped it"
            )
        return result.returncode, result.stdout_text, result.stderr_text

    async def _admin_request(
        self, method: str, path: str, body: bytes | None = None
    ) -> tuple[int, str]:
        """One admin API call; (0, reason) when nothing answers."""
        url = self.config.caddy_admin_url.rstrip("/") + path
        headers = {"Content-Type": "application/json"} if body is not None else {}
        timeout = aiohttp.ClientTimeout(total=self.command_timeout)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.request(method, url, data=body, headers=headers) as response,
            ):
                return response.status, await response.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            return 0, f"admin API at {self.config.caddy_admin_url} unreachable: {exc}"


class _Wave:
    """One run of ``CaddySites.apply``: the snapshot, the trials and the final state."""

    def __init__(self, sites: CaddySites, wave: Mapping[str, str | None]) -> None:
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
        named = {by_file[found] for found in _FILE_IN_ERROR.findall(error) if found in by_file}
        for address in _AMBIGUOUS_SITE.findall(error):
            host = _host_of(address)
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
