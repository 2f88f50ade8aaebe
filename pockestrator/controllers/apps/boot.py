"""Running a release's code before it is live: a dry boot on a copy, and ``migrate up``.

PocketBase loads every ``*.pb.js`` of its hooks folder at bootstrap, for any command; with
``--hooksWatch=false`` a hook that does not parse or throws stops it with the error (with
watching on it is skipped, one red line in the log). So both runs here pass it, and both
are ``migrate up``: it bootstraps (the hooks load), applies the release's migrations and
ends, its output captured (``run_transient``), so a refusal carries PocketBase's own text.

- ``dry_boot``: a scratch copy, in a throwaway box of its own (``scratch_box``: a dynamic
  user no service has, the same hardening, loopback only): the pre-deploy snapshot's
  ``pb_data`` and the release unpacked again from its archive. ``migrate up`` there proves
  the hooks load and the migrations apply to a copy of the real data; ``serve`` on a free
  port must then answer ``/api/health``. The live instance is not touched.
- ``migrate_live``: ``migrate up`` on the live data with the release's folders, as the
  instance's own user in its own box (``UnitSettings.box``), the instance stopped.

Neighbours: ``releases`` (the folders), ``controllers.snapshots`` (the copy it boots),
``controllers.systemd`` (the boxes and the transient units).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from dbus_fast import Variant

from pockestrator.config import AgentConfig
from pockestrator.controllers.apps.releases import unpack_into
from pockestrator.controllers.service_layout import DATA_DIR
from pockestrator.controllers.servicedirs.fds import DirFd
from pockestrator.controllers.servicedirs.folders import make_private_tree
from pockestrator.controllers.systemd import SystemdBus, UnitSettings
from pockestrator.controllers.systemd.scratch import (
    Healthy,
    ScratchFolder,
    free_loopback_port,
    serves,
)
from pockestrator.controllers.systemd.transient import (
    TransientRun,
    run_transient,
)
from pockestrator.controllers.systemd.unit_state import SystemdError
from pockestrator.specs.model import ServiceSpec

MIGRATE_TIMEOUT = 120.0
BOOT_DEADLINE = 30.0
ERROR_TEXT_MAX = 2000


class BootFailed(Exception):
    """The release's code failed; ``step`` says where, the message is PocketBase's text."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step


def pocketbase_error(run: TransientRun) -> str:
    """What PocketBase said, without a Go panic's stack (the message is above it)."""
    text = run.output.split("\ngoroutine ", 1)[0].strip()
    if not text:
        text = f"{run.result}, exit status {run.exit_status}"
    return text[-ERROR_TEXT_MAX:]


def _migrate_arguments(binary: Path, data: str, app: str, spec: ServiceSpec) -> list[str]:
    arguments = [
        str(binary),
        "migrate",
        "up",
        f"--dir={data}",
        f"--hooksDir={app}/pb_hooks",
        f"--migrationsDir={app}/pb_migrations",
        "--hooksWatch=false",
    ]
    if spec.flags.encryption_env is not None:
        arguments.append(f"--encryptionEnv={spec.flags.encryption_env}")
    return arguments


def _environment(settings: UnitSettings, name: str) -> list[tuple[str, Variant]]:
    """The instance's own variables (its encryption key, what its hooks read)."""
    path = settings.environment_file(name)
    if not path.exists():
        return []
    return [("EnvironmentFiles", Variant("a(sb)", [(str(path), False)]))]


async def dry_boot(
    bus: SystemdBus,
    config: AgentConfig,
    spec: ServiceSpec,
    data: Path | None,
    archive: Path,
    healthy: Healthy,
) -> None:
    """Boot ``archive``'s release on a copy of ``data`` (a snapshot's ``pb_data``; None:
    an empty one) in a throwaway box; ``BootFailed`` says which step failed and why."""
    settings = UnitSettings.from_config(config)
    scratch = ScratchFolder.new(settings, _environment(settings, spec.project_name))
    link = scratch.link
    unit = f"pockestrator-dryboot-{spec.project_name}.service"
    binary = settings.binary(spec.pocketbase_version)
    try:
        await asyncio.to_thread(
            _prepare_copy, settings.state_root, scratch.private, data, archive, config
        )
        run = await run_transient(
            bus,
            unit,
            _migrate_arguments(binary, f"{link}/{DATA_DIR}", f"{link}/app", spec),
            scratch.properties,
            timeout=MIGRATE_TIMEOUT,
        )
        if not run.ok:
            raise BootFailed("validate", pocketbase_error(run))
        port = free_loopback_port()
        arguments = [
            str(binary),
            "serve",
            f"--http=127.0.0.1:{port}",
            f"--dir={link}/{DATA_DIR}",
            f"--hooksDir={link}/app/pb_hooks",
            f"--migrationsDir={link}/app/pb_migrations",
            f"--publicDir={link}/app/pb_public",
            "--hooksWatch=false",
        ]
        if spec.flags.encryption_env is not None:
            arguments.append(f"--encryptionEnv={spec.flags.encryption_env}")
        try:
            booted = await serves(
                bus, unit, arguments, scratch.properties, port, healthy, BOOT_DEADLINE
            )
        except SystemdError as exc:
            raise BootFailed("validate", f"the dry boot did not start: {exc}") from None
        if not booted:
            raise BootFailed(
                "validate", f"the dry boot did not answer /api/health in {BOOT_DEADLINE:g}s"
            )
    finally:
        await asyncio.to_thread(scratch.remove)


def _prepare_copy(
    state_root: Path, private: Path, data: Path | None, archive: Path, config: AgentConfig
) -> None:
    """The scratch folder, root's until systemd hands it to the throwaway user."""
    make_private_tree(state_root, private.parent)
    private.mkdir(mode=0o700)
    if data is not None and data.is_dir():
        shutil.copytree(data, private / DATA_DIR, symlinks=True)
    else:
        (private / DATA_DIR).mkdir()
    (private / "app").mkdir()
    with DirFd(_open_dir(private / "app")) as app_fd, archive.open("rb") as source:
        unpack_into(app_fd, source, config)


def _open_dir(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)


async def migrate_live(
    bus: SystemdBus, settings: UnitSettings, spec: ServiceSpec, release_dir: Path
) -> None:
    """``migrate up`` of the live data with ``release_dir``'s folders, in the instance's
    own box (the instance is stopped); ``BootFailed("migrate", ...)`` with PocketBase's text."""
    name = spec.project_name
    folder = settings.service_dir(name)
    properties = [
        *(directive.as_property() for directive in settings.box(spec)),
        ("WorkingDirectory", Variant("s", str(folder))),
        *_environment(settings, name),
    ]
    run = await run_transient(
        bus,
        f"pockestrator-migrate-{name}.service",
        _migrate_arguments(
            settings.binary(spec.pocketbase_version),
            f"{folder}/{DATA_DIR}",
            str(release_dir),
            spec,
        ),
        properties,
        timeout=MIGRATE_TIMEOUT,
    )
    if not run.ok:
        raise BootFailed("migrate", pocketbase_error(run))
