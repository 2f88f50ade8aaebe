"""App deploys and rollbacks of a service, done in its own turn: the steps and the way back.

A deploy or a rollback asked through the API is an operation (``specs.store.operations``);
the reconcile of the service does it after it converged, one at a time, so nothing else
changes the service meanwhile. A deploy, step by step (each failure names its step in the
operation and the event, with PocketBase's own text where it spoke):

1. ``unpack``: the uploaded archive, checked again as it is unpacked into a release folder
   (``controllers.apps``); a refusal names the entry and leaves nothing;
2. ``snapshot``: the pre-deploy snapshot of the running instance (online, ``snapshots``);
3. ``validate``: a dry boot of the release on a copy of that snapshot in a throwaway box
   (``apps.boot.dry_boot``): its hooks load, its migrations apply, it answers health;
4. ``migrate``: the instance stopped, ``migrate up`` of the live data with the release's
   migrations, as the instance's user in its box; when its migrations are the live
   release's (already applied), the same run only loads the hooks, before the stop, while
   the old code still serves;
5. ``switch``: the record points at the release (one atomic write), the unit is rendered
   at it and the instance started (the reconciler's own plan and apply);
6. ``health``: ``/api/health`` within ``upgrade_health_deadline``.

From step 4 on, a failure puts everything back: the instance stopped, the snapshot's data
restored, the record pointed at the release that was live, the unit converged on it again.
A rollback points at an earlier release (the previous one by default) and goes through
steps 5 and 6 with the same way back; the data stays as it is (migrations do not run
backwards). The last ``app_releases_kept`` releases stay.

A spec file's ``app.path`` (``follow_folder``) is watched (``appwatch``) and packed at each
reconcile; content that is neither live nor the last one tried becomes a deploy operation
like an upload, asked for by the spec file. A failed one is not tried again until the
folder changes.

Neighbours: the reconciler (which calls ``run`` and lends its apply), ``controllers.apps``,
``controllers.snapshots``.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog

from pockestrator.agent.appwatch import AppWatch
from pockestrator.agent.health import wait_healthy
from pockestrator.agent.parts import Part, Parts
from pockestrator.apparchive import UnsafeAppArchive, is_release_id, pack_app, read_app_archive
from pockestrator.config import AgentConfig
from pockestrator.controllers.apps import AppRecord, Release, ReleaseError, file_diff
from pockestrator.controllers.apps.boot import BootFailed, dry_boot, migrate_live
from pockestrator.controllers.snapshots import Snapshot
from pockestrator.specs.model import unit_name
from pockestrator.specs.store import DEPLOY_KINDS, Operation, ServiceRecord

log = structlog.get_logger("pockestrator.deploys")

UPLOADS_DIR = "uploads"
UPLOAD_NAME = re.compile(r"[0-9a-f]{24}\.tar\.gz")

Apply = Callable[[ServiceRecord], Awaitable[None]]


class DeployFailed(Exception):
    def __init__(self, step: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.step = step
        self.details = details or {}


def _migrations(release: Release | None) -> set[tuple[str, str]]:
    """A release's migration files by name and content: when the new release's are the
    live one's, they have been applied, and ``migrate up`` changes no data."""
    if release is None:
        return set()
    return {(f.path, f.sha256) for f in release.files if f.path.startswith("pb_migrations/")}


def _write_upload(folder: Path, upload: Path, data: bytes) -> None:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(upload, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def uploads_dir(config: AgentConfig) -> Path:
    """Where the API leaves an uploaded archive for the deploy (root-only)."""
    return config.apps_path / UPLOADS_DIR


class DeployRunner(Part):
    def __init__(self, parts: Parts, apply: Apply) -> None:
        super().__init__(parts)
        self.apps = parts.controllers.apps
        self.apply = apply
        # The app folders of spec files: the watch (the daemon sets it) and, per service,
        # the release id (or packing error) last tried, so a failure is not retried.
        self.watch: AppWatch | None = None
        self._tried: dict[str, str] = {}

    async def follow_folder(self, record: ServiceRecord) -> None:
        """A spec file's ``app.path``: watched, and when its content is not the live release
        (nor the one last tried), packed and asked for as a deploy (done by ``run``)."""
        name = record.name
        app = record.spec.app
        if self.watch is not None:
            self.watch.follow(name, Path(app.path) if app is not None else None)
        if app is None:
            self._tried.pop(name, None)
            return
        if any(op.kind in DEPLOY_KINDS for op in self.store.pending_operations(name)):
            return
        config = self.config
        try:
            data = await asyncio.to_thread(pack_app, Path(app.path))
            content = await asyncio.to_thread(
                read_app_archive,
                io.BytesIO(data),
                max_files=config.app_max_files,
                max_bytes=config.app_unpacked_max_bytes,
            )
        except (UnsafeAppArchive, OSError) as exc:
            reason = f"{app.path}: {exc}"
            if self._tried.get(name) != reason:
                self._tried[name] = reason
                self.store.add_event(
                    name,
                    "deploy_failed",
                    f"deploy failed at step pack: {reason}",
                    {"step": "pack", "error": reason, "folder": app.path},
                )
            return
        release_id = content.release_id
        if release_id == self._tried.get(name):
            return  # tried already (deployed, or failed): only a change tries again
        self._tried[name] = release_id
        if release_id == await asyncio.to_thread(self.apps.live, name):
            return
        folder = uploads_dir(config)
        upload = folder / f"{secrets.token_hex(12)}.tar.gz"
        await asyncio.to_thread(_write_upload, folder, upload, data)
        self.store.request_operation(name, "deploy", upload.name, record.owner)
        log.info("app folder changed", service=name, folder=app.path, release=release_id)

    async def run(self, record: ServiceRecord) -> None:
        """Do the deploys and rollbacks asked of ``record``, oldest first (the backups'
        operations are ``BackupRunner``'s, after these)."""
        for operation in self.store.pending_operations(record.name):
            if operation.kind not in DEPLOY_KINDS:
                continue
            current = self.store.get_service(record.name) or record
            try:
                if operation.kind == "deploy":
                    result = await self._deploy(current, operation)
                else:
                    result = await self._rollback(current, operation)
            except DeployFailed as exc:
                self._failed(record.name, operation, exc)
                continue
            except Exception as exc:  # recorded; the service goes on
                self._failed(record.name, operation, DeployFailed("internal", str(exc)))
                continue
            self.store.finish_operation(operation.id, "done", result)

    # -- a deploy ----------------------------------------------------------------------

    async def _deploy(self, record: ServiceRecord, operation: Operation) -> dict[str, Any]:
        config = self.config
        argument = operation.argument or ""
        if not UPLOAD_NAME.fullmatch(argument):
            raise DeployFailed("unpack", f"{argument[:40]!r} is not an upload of the API")
        upload = uploads_dir(config) / argument
        try:
            return await self._deploy_upload(record, operation, upload)
        finally:
            await asyncio.to_thread(upload.unlink, missing_ok=True)

    async def _deploy_upload(
        self, record: ServiceRecord, operation: Operation, upload: Path
    ) -> dict[str, Any]:
        name = record.name
        config = self.config
        before = await asyncio.to_thread(self.apps.load, name)
        try:
            release = await asyncio.to_thread(
                self.apps.stage,
                name,
                upload,
                by=operation.requested_by,
                source="file" if operation.requested_by.startswith("file:") else "api",
                now=self.clock.now(),
            )
        except (UnsafeAppArchive, ReleaseError, OSError) as exc:
            raise DeployFailed("unpack", str(exc)) from None
        previous = before.get(before.live) if before.live else None
        details: dict[str, Any] = {
            "release": release.release_id,
            "previous": before.live,
            "files": len(release.files),
            "bytes": release.size,
            "diff": file_diff(release, previous),
        }
        if before.live == release.release_id:
            return {**details, "unchanged": True}
        try:
            snapshot = await self.controllers.snapshots.take(
                record.spec, "safety", self.clock.now()
            )
        except Exception as exc:
            await self._discard(name, release, before)
            raise DeployFailed("snapshot", f"the pre-deploy snapshot failed: {exc}") from None
        details["snapshot"] = snapshot.snapshot_id
        try:
            await dry_boot(
                self.controllers.bus,
                config,
                record.spec,
                snapshot.path / "pb_data",
                upload,
                self._healthy,
            )
        except BootFailed as exc:
            await self._discard(name, release, before)
            raise DeployFailed(exc.step, str(exc), details) from None
        migrate = _migrations(release) != _migrations(previous)
        details["migrated"] = migrate
        if not migrate:
            # Nothing to apply: ``migrate up`` can load the hooks in the instance's own box
            # while the old code still serves, and the instance is down only to restart.
            try:
                await migrate_live(
                    self.controllers.bus,
                    self.controllers.units.settings,
                    record.spec,
                    self.apps.release_dir(name, release.release_id),
                )
            except BootFailed as exc:
                await self._discard(name, release, before)
                raise DeployFailed(exc.step, str(exc), details) from None
        await self._go_live(record, release.release_id, before.live, details, snapshot, migrate)
        if record.spec.flags.hooks_watch is True:
            self.store.add_event(
                name,
                "dev_mode",
                "hooks_watch is on (dev mode): a hook that fails to load is skipped, not "
                "refused; turn it off for production",
            )
        self.store.add_event(name, "app_deployed", f"release {release.release_id} is live", details)
        await self._prune(name)
        return details

    async def _go_live(
        self,
        record: ServiceRecord,
        release_id: str,
        was_live: str | None,
        details: dict[str, Any],
        snapshot: Snapshot | None,
        migrate: bool = False,
    ) -> None:
        """Steps 4 to 6 (4 only when ``migrate``); on failure, back (with the snapshot's
        data when there is one)."""
        name = record.name
        settings = self.controllers.units.settings
        unit = unit_name(name)
        step = "migrate"
        try:
            await self.controllers.bus.stop_unit(unit)
            # Deploys in a row must not run into the unit's start rate limit
            # (StartLimitBurst): the restart is the agent's own, not a crash loop.
            await self.controllers.bus.reset_failed_unit(unit)
            if migrate:
                await migrate_live(
                    self.controllers.bus,
                    settings,
                    record.spec,
                    self.apps.release_dir(name, release_id),
                )
            step = "switch"
            await asyncio.to_thread(self.apps.point, name, release_id)
            await self.apply(record)
            step = "health"
            if record.desired_state == "running" and not await self._healthy(
                record.spec.port, self.config.upgrade_health_deadline
            ):
                raise BootFailed(
                    "health",
                    f"release {release_id} did not answer /api/health within "
                    f"{self.config.upgrade_health_deadline:g}s",
                )
        except Exception as exc:
            reason = str(exc) or type(exc).__name__
            back = await self._put_back(record, was_live, snapshot)
            raise DeployFailed(
                exc.step if isinstance(exc, BootFailed) else step,
                f"{reason}; {back}",
                details,
            ) from None

    async def _put_back(
        self, record: ServiceRecord, was_live: str | None, snapshot: Snapshot | None
    ) -> str:
        name = record.name
        done: list[str] = []
        try:
            await self.controllers.bus.stop_unit(unit_name(name))
            await self.controllers.bus.reset_failed_unit(unit_name(name))
            if snapshot is not None:
                await self.controllers.snapshots.restore(name, snapshot)
                done.append(f"the data of snapshot {snapshot.snapshot_id} is back")
            await asyncio.to_thread(self.apps.point, name, was_live)
            await self.apply(record)
            done.append(f"release {was_live} is live again" if was_live else "no release is live")
        except Exception as exc:  # reported with the original failure
            log.error("deploy could not be undone", service=name, error=str(exc))
            done.append(f"putting it back failed too: {exc}")
        return ", ".join(done)

    async def _discard(self, name: str, release: Release, before: AppRecord) -> None:
        """A new release refused before it went live is not kept (its folder neither); one
        that was there already (a rollback's target) stays."""
        if before.get(release.release_id) is None:
            await asyncio.to_thread(self.apps.discard, name, release.release_id)

    # -- a rollback --------------------------------------------------------------------

    async def _rollback(self, record: ServiceRecord, operation: Operation) -> dict[str, Any]:
        name = record.name
        current = await asyncio.to_thread(self.apps.load, name)
        if operation.argument:
            if not is_release_id(operation.argument):
                raise DeployFailed("switch", f"{operation.argument[:40]!r} is not a release id")
            target = current.get(operation.argument)
            if target is None:
                raise DeployFailed("switch", f"{name} has no release {operation.argument}")
        else:
            target = current.previous()
            if target is None:
                raise DeployFailed("switch", f"{name} has no earlier release to roll back to")
        try:
            await asyncio.to_thread(self.apps.check_present, name, target.release_id)
        except ReleaseError as exc:
            raise DeployFailed("switch", str(exc)) from None
        live = current.get(current.live) if current.live else None
        details: dict[str, Any] = {
            "release": target.release_id,
            "previous": current.live,
            "diff": file_diff(target, live),
        }
        if target.release_id == current.live:
            return {**details, "unchanged": True}
        await self._go_live(record, target.release_id, current.live, details, None)
        self.store.add_event(
            name,
            "app_rolled_back",
            f"release {target.release_id} is live again (was {current.live})",
            details,
        )
        return details

    # -- helpers -----------------------------------------------------------------------

    async def _prune(self, name: str) -> None:
        dropped = await asyncio.to_thread(self.apps.prune, name, self.config.app_releases_kept)
        if dropped:
            self.store.add_event(
                name,
                "releases_pruned",
                f"{len(dropped)} old release(s) removed",
                {"releases": dropped},
            )

    async def _healthy(self, port: int, deadline: float) -> bool:
        loop = asyncio.get_running_loop()
        return await wait_healthy(self.session, port, loop.time() + deadline)

    def _failed(self, name: str, operation: Operation, exc: DeployFailed) -> None:
        reason = str(exc)[:4000] or type(exc).__name__
        what = "deploy" if operation.kind == "deploy" else "rollback"
        log.warning(f"{what} failed", service=name, step=exc.step, error=reason)
        details = {**exc.details, "step": exc.step, "error": reason}
        self.store.add_event(
            name, f"{what}_failed", f"{what} failed at step {exc.step}: {reason}", details
        )
        self.store.finish_operation(operation.id, "failed", details)
