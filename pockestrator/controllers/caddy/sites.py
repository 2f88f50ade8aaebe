"""The folder of Caddy site snippets: ``CaddySites`` observes it and applies waves to it.

``CaddySites`` owns one folder (``caddy_sites_dir``) with ``<project_name>.caddy`` files,
which the main Caddyfile pulls in with one absolute ``import <dir>/*.caddy`` line.
``observe`` reports the snippets' hashes, whether the import line is there and whether
Caddy runs; ``apply`` takes a *wave* (every site change the reconciler has gathered) and
makes it live with one ``POST /load`` to Caddy's admin API (``wave``): Caddy adapts the
main Caddyfile itself, provisions the new config and switches to it, or keeps the old one
and says why. No subprocess runs while Caddy's admin API answers. Without it (Caddy
stopped, or ``caddy_reload: systemd`` with an admin endpoint the agent cannot reach),
waves fall back to ``caddy validate`` (run through ``pockestrator.subprocesses``: an
argument list with a deadline) and, for a running Caddy, ``ReloadUnit`` over
``controllers.systemd.bus``.

Neighbours: ``render`` (what a snippet should say), ``wave`` (how a wave is settled),
``errors`` (Caddy's error text); deciding *what* each site should be is the reconciler's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import aiohttp

from pockestrator.config import RENDERABLE_PATH, AgentConfig
from pockestrator.controllers.caddy.caddyfile import public_ports
from pockestrator.controllers.caddy.certificates import Certificate, served_certificate
from pockestrator.controllers.caddy.errors import (
    CaddyError,
    admin_error_text,
    caddy_error_text,
)
from pockestrator.controllers.caddy.render import SNIPPET_SUFFIX, has_import, snippet_file_name
from pockestrator.controllers.caddy.wave import Wave, WaveResult
from pockestrator.controllers.systemd.bus import SystemdBus
from pockestrator.controllers.systemd.unit_state import SystemdError
from pockestrator.files import sha256_file
from pockestrator.specs import grammar
from pockestrator.specs.grammar import GrammarError
from pockestrator.specs.public_url import PublicPorts
from pockestrator.subprocesses import ProcessTimedOut, run_bounded

# ``caddy adapt`` prints the whole JSON config: 37 KB for 100 sites (measured), so this bound
# is far past any host's, and a Caddy that prints more is stopped rather than believed.
CADDY_OUTPUT_MAX_BYTES = 64 * 1024 * 1024
# The main Caddyfile is the operator's; its global options are at its top.
MAIN_CADDYFILE_READ_MAX = 1024 * 1024
# A handshake with Caddy on loopback takes milliseconds; one that hangs says "none".
CERTIFICATE_TIMEOUT = 5.0

# How a wave reaches Caddy: its admin API; ``caddy validate`` and a systemd reload; or only
# ``caddy validate`` while Caddy is not running (it reads the files when it starts).
ApplyMode = Literal["admin", "reload", "offline"]


@dataclass(frozen=True)
class CaddyObservation:
    """What is on disk and whether Caddy runs. ``snippets`` maps name -> SHA-256 or None."""

    snippets: dict[str, str | None] = field(default_factory=dict)
    import_present: bool = False
    caddy_running: bool = False


class CaddySites:
    """Observe and apply the snippet folder; one validation and one reload per wave.

    ``validation_count`` counts every config Caddy judged (a ``/load``, an ``/adapt`` or
    a ``caddy validate``) and ``reload_count`` every new config the running Caddy took,
    over the object's life, for status pages and tests.
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

    def public_ports(self) -> PublicPorts:
        """Caddy's HTTP and HTTPS ports from the main Caddyfile's global options, for the
        services' URLs (``specs.public_url.service_url``); Caddy's defaults if unreadable."""
        try:
            with self.main_file.open("rb") as file:
                text = file.read(MAIN_CADDYFILE_READ_MAX).decode("utf-8", errors="replace")
        except OSError:
            return PublicPorts()
        return public_ports(text)

    async def served_certificate(self, domain: str) -> Certificate | None:
        """The certificate Caddy serves for ``domain`` on its HTTPS port (on loopback)."""
        return await served_certificate(
            domain, self.public_ports().https, timeout=CERTIFICATE_TIMEOUT
        )

    def import_present(self) -> bool:
        try:
            content = self.main_file.read_bytes()
        except FileNotFoundError:
            return False
        return has_import(content.decode("utf-8", errors="replace"), self.sites_dir)

    async def caddy_running(self) -> bool:
        """systemd mode: the unit's ActiveState; admin mode: the admin API answers."""
        if self.config.caddy_reload == "admin":
            return await self.admin_answers()
        assert self.bus is not None
        unit = await self.bus.unit_status(self.config.caddy_unit)
        return unit.active_state in ("active", "reloading")

    async def admin_metrics(self) -> str | None:
        """Caddy's own Prometheus text from its admin API (``GET /metrics``); None when
        nothing answers there (Caddy down, or its admin API off)."""
        status, body = await self._admin_request("GET", "/metrics")
        return body if status == 200 else None

    async def requests_in_flight(self) -> dict[str, int] | None:
        """The requests Caddy is proxying right now, per upstream address (its admin API's
        ``GET /reverse_proxy/upstreams``); None when that does not answer."""
        status, body = await self._admin_request("GET", "/reverse_proxy/upstreams")
        return upstream_requests(body) if status == 200 else None

    async def admin_answers(self) -> bool:
        """True when Caddy's admin API at ``caddy_admin_url`` answers as the admin API."""
        status, body = await self._admin_request("GET", "/config/")
        # Only the admin API answers with JSON; a site port answers 200 to anything.
        try:
            return status == 200 and isinstance(json.loads(body), dict | None)
        except ValueError:
            return False

    async def apply_mode(self) -> ApplyMode:
        """How the next wave reaches Caddy (``ApplyMode``)."""
        if self.config.caddy_reload == "admin":
            return "admin" if await self.admin_answers() else "offline"
        if not await self.caddy_running():
            return "offline"
        return "admin" if await self.admin_answers() else "reload"

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

        Unchanged snippets cost nothing: nothing is sent to Caddy. Otherwise the changed
        ones are written and Caddy is asked once to load the whole config. Snippets Caddy
        refuses are put back as they were and reported with Caddy's text.
        """
        async with self._lock:
            wave_run = Wave(self, wave)
            try:
                return await wave_run.run()
            except BaseException:
                wave_run.restore_everything()
                raise

    async def load_what_is_on_disk(self) -> str | None:
        """Make the running Caddy load the snippets on disk (once, when the agent starts).

        An agent killed between writing a snippet and reloading Caddy leaves a file that
        already matches its spec, so no later plan touches it, while Caddy runs without
        it. Which snippets the running Caddy has loaded is not worth working out from its
        JSON, so a new agent has Caddy load the files on disk once (a no-op for Caddy when
        nothing differs). Returns Caddy's text when they are refused (Caddy is then left
        running as it is), else None.
        """
        async with self._lock:
            if not self.list_sites():
                return None  # nothing of ours
            mode = await self.apply_mode()
            if mode == "offline":
                return None  # Caddy reads the files when it starts
            if mode == "admin":
                return await self.load()
            error = await self.validate()
            if error is None:
                await self.reload()
            return error

    async def validate(self) -> str | None:
        """One ``caddy validate`` of the main Caddyfile; None when valid, else Caddy's text."""
        self.validation_count += 1
        code, out, err = await self._caddy("validate", "--config", str(self.main_file))
        return None if code == 0 else caddy_error_text(out, err)

    async def load(self) -> str | None:
        """``POST /load`` of the main Caddyfile: Caddy adapts it (reading the snippets from
        disk), provisions it and switches, or rolls back to the config it ran. None when
        Caddy took it, else its reason; ``CaddyError`` when the admin API does not answer.
        """
        self.validation_count += 1
        status, body = await self._admin_request(
            "POST", "/load", self._caddyfile_body(), content_type="text/caddyfile"
        )
        if status == 200:
            self.reload_count += 1
            return None
        if status == 400:
            return f"Caddy refused to reload: {admin_error_text(body)}"
        raise CaddyError(f"Caddy's admin API did not load the config (HTTP {status}): {body}")

    async def adapt(self) -> str | None:
        """``POST /adapt`` of the main Caddyfile: Caddy reads it as it would for a load and
        loads nothing. None when it adapts, else Caddy's reason (a config that adapts can
        still fail to provision: only ``load`` says that)."""
        self.validation_count += 1
        status, body = await self._admin_request(
            "POST", "/adapt", self._caddyfile_body(), content_type="text/caddyfile"
        )
        if status == 200:
            return None
        if status == 400:
            return f"Caddy refused the config: {admin_error_text(body)}"
        raise CaddyError(f"Caddy's admin API did not adapt the config (HTTP {status}): {body}")

    def _caddyfile_body(self) -> bytes:
        """What ``load`` and ``adapt`` send: one import of the main Caddyfile, so that Caddy
        reads it from disk under its own name (relative imports in it resolve from its
        folder, and errors name its path), as ``caddy run --config`` does."""
        path = str(self.main_file.resolve())
        if RENDERABLE_PATH.fullmatch(path):
            return f"import {path}\n".encode()
        return self.main_file.read_bytes()  # relative imports then resolve from Caddy's cwd

    async def reload(self) -> None:
        """Make the running Caddy load the files on disk; raises ``CaddyError`` on refusal."""
        if self.config.caddy_reload == "admin":
            error = await self.load()
            if error is not None:
                raise CaddyError(error)
            return
        self.reload_count += 1
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
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        *,
        content_type: str = "application/json",
    ) -> tuple[int, str]:
        """One admin API call, over TCP or a unix socket; (0, reason) when nothing answers."""
        address = self.config.caddy_admin_url
        connector: aiohttp.BaseConnector | None = None
        if address.startswith("unix/"):
            connector = aiohttp.UnixConnector(path=address.removeprefix("unix/"))
            url = "http://localhost" + path  # Caddy takes any Host on its socket
        else:
            url = address.rstrip("/") + path
        headers = {"Content-Type": content_type} if body is not None else {}
        timeout = aiohttp.ClientTimeout(total=self.command_timeout)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout, connector=connector) as session,
                session.request(method, url, data=body, headers=headers) as response,
            ):
                return response.status, await response.text()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return 0, f"admin API at {address} unreachable: {exc}"


def upstream_requests(body: str) -> dict[str, int] | None:
    """``address -> num_requests`` of Caddy's upstreams answer; None when it is not that
    answer (rows of another shape are left out, never guessed at)."""
    try:
        rows = json.loads(body)
    except ValueError:
        return None
    if not isinstance(rows, list):
        return None
    counts: dict[str, int] = {}
    for row in rows:
        if not isinstance(row, dict):
            continue
        address, number = row.get("address"), row.get("num_requests")
        if isinstance(address, str) and isinstance(number, int) and not isinstance(number, bool):
            counts[address] = counts.get(address, 0) + max(0, number)
    return counts
