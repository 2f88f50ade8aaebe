"""Verifying a snapshot: its files as the manifest says, its databases whole, and a boot.

A snapshot is only as good as a restore of it, so verification restores it: every file is
hashed against the manifest; the snapshot is copied into a throwaway folder; SQLite's
``PRAGMA integrity_check`` runs on each database; and the PocketBase version the manifest
records boots on it, on a free loopback port, until ``/api/health`` answers. The copy is a
systemd state directory of a throwaway dynamic user (``UnitSettings.scratch_box``), and
the checks and the boot run in that box, with loopback only: the snapshot holds the
owner's hooks and migrations, which run at the boot as they would in production, and must
reach nothing of anyone's. The folder is removed afterwards, whatever happened.

Neighbours: ``folder`` records the outcome (``verification.json``); ``take`` made the
snapshot; ``controllers.systemd.transient`` runs the checks and the boot.
"""

from __future__ import annotations

import asyncio
import shutil
from datetime import datetime
from pathlib import Path

import structlog

from pockestrator.controllers.service_layout import DATA_DIR
from pockestrator.controllers.servicedirs.folders import make_private_tree
from pockestrator.controllers.snapshots.folder import Snapshot, Verification
from pockestrator.controllers.snapshots.take import APP_DIRS
from pockestrator.controllers.systemd import SystemdBus, UnitSettings
from pockestrator.controllers.systemd.scratch import (
    Healthy,
    ScratchFolder,
    free_loopback_port,
    serves,
)
from pockestrator.controllers.systemd.transient import run_transient
from pockestrator.controllers.systemd.unit_state import SystemdError
from pockestrator.files import read_chunks, sized_sha256

log = structlog.get_logger("pockestrator.snapshots")

CHECK_TIMEOUT = 1800.0
BOOT_DEADLINE = 60.0

# Runs as the throwaway user, in the copy: every database's integrity_check, or exit 1.
INTEGRITY_CHECK = r"""
import os, sqlite3, sys
bad = []
for name in ("data.db", "auxiliary.db"):
    path = os.path.join("pb_data", name)
    if not os.path.exists(path):
        continue
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    rows = [row[0] for row in db.execute("PRAGMA integrity_check")]
    db.close()
    if rows != ["ok"]:
        bad.append(f"{name}: " + "; ".join(rows[:5]))
print("\n".join(bad) or "ok")
sys.exit(1 if bad else 0)
"""


def check_files(snapshot: Snapshot) -> str | None:
    """None when every file is there with the manifest's size and hash; else the first
    difference."""
    for entry in snapshot.manifest.files:
        path = snapshot.path / entry.path
        try:
            with path.open("rb") as reader:
                size, sha256 = sized_sha256(read_chunks(reader))
        except OSError as exc:
            return f"{entry.path}: {exc.strerror}"
        if size != entry.size or sha256 != entry.sha256:
            return f"{entry.path} is not the file the manifest describes"
    return None


async def verify_snapshot(
    bus: SystemdBus,
    settings: UnitSettings,
    snapshot: Snapshot,
    *,
    now: datetime,
    python: Path,
    healthy: Healthy,
    boot_deadline: float = BOOT_DEADLINE,
) -> Verification:
    """Restore ``snapshot`` into a throwaway box and check it (see the module)."""
    problem = await asyncio.to_thread(check_files, snapshot)
    if problem is not None:
        return Verification(now, False, problem)
    version = snapshot.manifest.pocketbase_version
    if version is None:
        return Verification(now, False, "the manifest names no PocketBase version to boot")
    scratch = ScratchFolder.new(settings)
    link = scratch.link
    unit = f"pockestrator-verify-{snapshot.manifest.service}.service"
    try:
        await asyncio.to_thread(_copy_into, snapshot.path, settings.state_root, scratch.private)
        check = await run_transient(
            bus,
            unit,
            [str(python), "-I", "-S", "-c", INTEGRITY_CHECK],
            scratch.properties,
            timeout=CHECK_TIMEOUT,
        )
        if not check.ok:
            return Verification(now, False, f"integrity_check: {check.output.strip()[-500:]}")
        port = free_loopback_port()
        arguments = [
            str(settings.binary(version)),
            "serve",
            f"--http=127.0.0.1:{port}",
            f"--dir={link}/{DATA_DIR}",
        ]
        flags = {"pb_hooks": "--hooksDir", "pb_migrations": "--migrationsDir"}
        arguments += [
            f"{flag}={link}/{folder}"
            for folder, flag in flags.items()
            if (snapshot.path / folder).is_dir()
        ]
        if (snapshot.path / "pb_public").is_dir():
            arguments.append(f"--publicDir={link}/pb_public")
        try:
            booted = await serves(
                bus, unit, arguments, scratch.properties, port, healthy, boot_deadline
            )
        except SystemdError as exc:
            return Verification(now, False, f"PocketBase {version} did not start: {exc}")
        if not booted:
            return Verification(
                now, False, f"PocketBase {version} did not answer /api/health in {boot_deadline:g}s"
            )
    finally:
        await asyncio.to_thread(scratch.remove)
    log.info("snapshot verified", service=snapshot.manifest.service, snapshot=snapshot.snapshot_id)
    return Verification(now, True, f"files, integrity_check and a boot of PocketBase {version}")


def _copy_into(snapshot: Path, state_root: Path, private: Path) -> None:
    """The snapshot's folders into a new private state directory, root's until systemd
    hands it to the throwaway user at the first start."""
    make_private_tree(state_root, private.parent)
    private.mkdir(mode=0o700)
    for folder in (DATA_DIR, *APP_DIRS):
        if (snapshot / folder).is_dir():
            shutil.copytree(snapshot / folder, private / folder, symlinks=True)
