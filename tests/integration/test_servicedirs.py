"""Service folders on the test bed: systemd's state directories, real owners, a real superuser.

Every folder here is made the way production makes it: by the test bed's systemd, for the
instance's dynamic user, when something runs in the instance's box (``run_in_box``, a
transient unit with exactly the rendered unit's identity and hardening). The superuser is
checked the way a person would: the service's rendered unit runs PocketBase, and the
password logs in through its HTTP API. Folders an earlier agent made (plain folders with a
hard-linked binary and a marker file) are built by hand, as that agent left them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from pockestrator.agent.sandbox import Sandbox, free_port
from pockestrator.config import AgentConfig
from pockestrator.controllers.releases import seed_from_installed
from pockestrator.controllers.servicedirs import (
    Place,
    ServiceDirError,
    ServiceDirs,
    SuperuserError,
    UnsafePath,
    read_password_file,
)
from pockestrator.controllers.servicedirs.dirs import LEGACY_MARKER
from pockestrator.controllers.systemd import SystemdBus, SystemdUnits
from pockestrator.controllers.systemd.render import render_environment, render_unit
from pockestrator.controllers.systemd.transient import TransientRun
from pockestrator.specs.model import ServiceSpec
from tests.testbed import boxes
from tests.testbed.waiting import wait_for_pocketbase

NOBODY, NOGROUP = 65534, 65534
DYNAMIC_UIDS = range(61184, 65520)  # systemd's range for DynamicUser=


@dataclass(frozen=True)
class Bed:
    sandbox: Sandbox
    config: AgentConfig
    bus: SystemdBus
    dirs: ServiceDirs
    version: str

    @property
    def base(self) -> Path:
        return self.config.base_dir


@pytest.fixture(scope="module")
async def bed(sandbox: Sandbox) -> AsyncIterator[Bed]:
    config = sandbox.agent_config()
    version = seed_from_installed(config.release_cache_dir)
    assert version is not None
    assert sandbox.bus is not None
    yield Bed(sandbox, config, sandbox.bus, ServiceDirs(config, sandbox.bus), version)


@pytest.fixture
def outside(bed: Bed) -> Iterator[Path]:
    """A root-owned folder of the test bed outside ``base_dir``, which must stay untouched."""
    folder = Path(tempfile.mkdtemp(prefix="outside-", dir=bed.sandbox.layout.root))
    folder.chmod(0o755)
    (folder / "precious").write_text("do not touch")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def make_spec(name: str, version: str, **fields: object) -> ServiceSpec:
    return ServiceSpec.model_validate(
        {
            "project_name": name,
            "port": free_port(),
            "pocketbase_version": version,
            "domain": f"{name}.localhost",
            **fields,
        }
    )


def owner_mode(path: Path) -> tuple[int, int, int]:
    info = os.lstat(path)
    return info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)


def snapshot(folder: Path) -> dict[str, tuple[int, int, int, bytes | None]]:
    """Owner, mode and content of everything in ``folder`` (to prove it was not touched)."""
    found: dict[str, tuple[int, int, int, bytes | None]] = {".": (*owner_mode(folder), None)}
    for path in sorted(folder.rglob("*")):
        content = path.read_bytes() if path.is_file() and not path.is_symlink() else None
        found[str(path.relative_to(folder))] = (*owner_mode(path), content)
    return found


async def run_in_box(bed: Bed, spec: ServiceSpec, script: str) -> TransientRun:
    """``sh -c script`` as the instance: its dynamic user, its state directory, its box."""
    return await boxes.run_in_box(bed.bus, bed.dirs.settings, spec, script)


async def make_folder(bed: Bed, spec: ServiceSpec, record: str = "user data") -> Path:
    """The service's folder as systemd makes it, with ``pb_data/record.txt`` in it."""
    run = await run_in_box(bed, spec, f"mkdir -p pb_data && printf '{record}' > pb_data/record.txt")
    assert run.ok, run.output
    return bed.base / spec.project_name


def make_legacy_folder(bed: Bed, name: str, emails: list[str]) -> Path:
    """A folder as an earlier agent left it: plain, ``nobody``'s, binary and marker inside."""
    folder = bed.base / name
    (folder / "pb_data").mkdir(parents=True)
    (folder / "pb_data" / "record.txt").write_text("kept across the move")
    shutil.copy2(bed.config.release_cache_dir / bed.version / "pocketbase", folder / "pocketbase")
    (folder / LEGACY_MARKER).write_text(json.dumps({"emails": emails}))
    for path in (folder, folder / "pb_data", folder / "pb_data" / "record.txt"):
        os.chown(path, NOBODY, NOGROUP)
    return folder


# Where the folder is: systemd's private tree ---------------------------------------------


async def test_systemd_makes_the_folder_private_to_the_instances_dynamic_user(bed: Bed) -> None:
    spec = make_spec("alpha", bed.version, extra_dirs=["pb_hooks", "pb_public"])
    assert (await bed.dirs.observe(spec)).place is Place.NONE

    folder = await make_folder(bed, spec)

    state = await bed.dirs.observe(spec)
    assert state.place is Place.PRIVATE and state.path == folder and not state.legacy
    private = bed.dirs.folders.private_path("alpha")
    assert folder.is_symlink() and folder.resolve() == private
    assert owner_mode(private.parent.parent)[::2] == (0, 0o700)  # only root passes here
    uid, gid, mode = owner_mode(private)
    assert uid in DYNAMIC_UIDS and gid == uid and mode == 0o700
    for extra in ("pb_hooks", "pb_public"):
        assert owner_mode(private / extra) == (uid, gid, 0o700)
    assert owner_mode(private / "pb_data" / "record.txt")[:2] == (uid, gid)


async def test_two_services_get_two_users_and_cannot_read_each_other(bed: Bed) -> None:
    first, second = make_spec("first", bed.version), make_spec("second", bed.version)
    await make_folder(bed, first, "first-secret")
    await make_folder(bed, second)

    record = f"{bed.base}/first/pb_data/record.txt"
    peek = await run_in_box(bed, second, f"cat {record}")
    write = await run_in_box(bed, second, f"echo pwned > {record}")

    assert not peek.ok and "first-secret" not in peek.output
    assert not write.ok
    assert (bed.dirs.folders.private_path("first") / "pb_data/record.txt").read_text() == (
        "first-secret"
    )
    uids = {owner_mode(bed.dirs.folders.private_path(n))[0] for n in ("first", "second")}
    assert len(uids) == 2


async def test_a_symlink_planted_where_the_folder_would_be_is_not_a_folder(
    bed: Bed, outside: Path
) -> None:
    before = snapshot(outside)
    (bed.base / "planted").symlink_to(outside)
    spec = make_spec("planted", bed.version)

    assert (await bed.dirs.observe(spec)).place is Place.NONE
    with pytest.raises(ServiceDirError, match="does not exist"):
        await bed.dirs.backup_data("planted")
    assert not (await bed.dirs.delete("planted")).existed

    assert snapshot(outside) == before
    assert not (bed.base / "planted").exists()  # the link went, its target did not


# A folder an earlier agent made ---------------------------------------------------------


async def test_a_legacy_folder_is_cleaned_then_moved_into_systemds_care(bed: Bed) -> None:
    folder = make_legacy_folder(bed, "legacy", ["first@example.com", "second@example.com"])
    spec = make_spec("legacy", bed.version)

    state = await bed.dirs.observe(spec)
    assert state.place is Place.LEGACY and state.legacy
    assert state.legacy_superusers == ("first@example.com", "second@example.com")

    changes = await bed.dirs.migrate_legacy("legacy")

    assert changes == [
        f"removed {folder / 'pocketbase'} (left by an earlier agent)",
        f"removed {folder / LEGACY_MARKER} (left by an earlier agent)",
    ]
    assert sorted(p.name for p in folder.iterdir()) == ["pb_data"]
    assert await bed.dirs.migrate_legacy("legacy") == []

    await make_folder(bed, spec, "written after the move")

    private = bed.dirs.folders.private_path("legacy")
    assert (await bed.dirs.observe(spec)).place is Place.PRIVATE and folder.is_symlink()
    uid = owner_mode(private)[0]
    assert uid in DYNAMIC_UIDS
    assert {owner_mode(p)[0] for p in private.rglob("*")} == {uid}  # systemd chowned it all
    assert sorted(p.name for p in (private / "pb_data").iterdir()) == ["record.txt"]


@pytest.mark.parametrize("planted", ["fifo", "symlink", "huge", "not-a-list", "directory"])
async def test_a_legacy_marker_the_instance_replaced_is_read_as_no_superusers(
    bed: Bed, outside: Path, planted: str
) -> None:
    name = f"marker-{planted}"
    folder = make_legacy_folder(bed, name, ["owner@example.com"])
    marker = folder / LEGACY_MARKER
    marker.unlink()
    secret = outside / "secret.json"
    secret.write_text(json.dumps({"emails": ["root-only@example.com"]}))
    secret.chmod(0o600)
    match planted:
        case "fifo":
            os.mkfifo(marker)  # a naive open() would wait forever for a writer
        case "symlink":
            marker.symlink_to(secret)
        case "huge":
            marker.write_text(json.dumps({"emails": ["x@example.com"] * 20_000}))
        case "not-a-list":
            marker.write_text(json.dumps({"emails": "owner@example.com"}))
        case "directory":
            marker.mkdir()
    before = snapshot(outside)
    started = time.monotonic()

    state = await bed.dirs.observe(make_spec(name, bed.version))

    assert time.monotonic() - started < 5
    assert state.place is Place.LEGACY and state.legacy_superusers == ()
    await bed.dirs.migrate_legacy(name)
    assert snapshot(outside) == before
    await bed.dirs.delete(name, purge=True)


async def test_a_directory_where_the_legacy_binary_was_is_the_instances_and_stays(
    bed: Bed,
) -> None:
    folder = make_legacy_folder(bed, "bindir", [])
    (folder / "pocketbase").unlink()
    (folder / "pocketbase").mkdir()
    (folder / "pocketbase" / "notes.txt").write_text("mine")

    changes = await bed.dirs.migrate_legacy("bindir")

    assert changes == [f"removed {folder / LEGACY_MARKER} (left by an earlier agent)"]
    assert (folder / "pocketbase" / "notes.txt").read_text() == "mine"


# Delete, archive, backups -------------------------------------------------------------


async def test_delete_archives_the_private_folder_and_removes_systemds_link(bed: Bed) -> None:
    spec = make_spec("archived", bed.version)
    await make_folder(bed, spec)
    uid = owner_mode(bed.dirs.folders.private_path("archived"))[0]

    result = await bed.dirs.delete("archived")

    assert result.existed and not result.purged and result.archived_to is not None
    assert result.archived_to.parent == bed.config.archive_path
    assert owner_mode(bed.config.archive_path)[::2] == (0, 0o700)
    assert re.fullmatch(r"archived-\d{8}T\d{6}Z(-\d+)?", result.archived_to.name)
    assert (result.archived_to / "pb_data" / "record.txt").read_text() == "user data"
    assert owner_mode(result.archived_to / "pb_data")[0] == uid
    assert not os.path.lexists(bed.base / "archived")
    assert not bed.dirs.folders.private_path("archived").exists()
    assert not (await bed.dirs.delete("archived")).existed


async def test_purge_removes_the_folder_without_archiving(bed: Bed) -> None:
    await make_folder(bed, make_spec("purged", bed.version))
    archive = bed.config.archive_path
    before = sorted(archive.iterdir()) if archive.exists() else []

    result = await bed.dirs.delete("purged", purge=True)

    assert result.existed and result.purged and result.archived_to is None
    assert not os.path.lexists(bed.base / "purged")
    assert not bed.dirs.folders.private_path("purged").exists()
    assert (sorted(archive.iterdir()) if archive.exists() else []) == before


async def test_a_legacy_folder_is_archived_from_where_it_is(bed: Bed) -> None:
    make_legacy_folder(bed, "oldarch", [])

    result = await bed.dirs.delete("oldarch")

    assert result.archived_to is not None
    assert (result.archived_to / "pb_data" / "record.txt").read_text() == "kept across the move"
    assert not os.path.lexists(bed.base / "oldarch")


async def test_backup_of_pb_data_restores_the_data_and_its_owner(bed: Bed) -> None:
    spec = make_spec("backed", bed.version)
    await make_folder(bed, spec, "before upgrade")
    private = bed.dirs.folders.private_path("backed")
    uid = owner_mode(private)[0]

    backup = await bed.dirs.backup_data("backed")

    assert backup.parent == bed.base / ".backups" / "backed"
    assert owner_mode(bed.base / ".backups")[::2] == (0, 0o700)
    assert owner_mode(backup / "record.txt")[0] == uid
    changed = await run_in_box(
        bed, spec, "printf 'after a failed upgrade' > pb_data/record.txt; echo x > pb_data/new.db"
    )
    assert changed.ok, changed.output

    displaced = await bed.dirs.restore_data("backed", backup)

    record = private / "pb_data" / "record.txt"
    assert record.read_text() == "before upgrade"
    assert not (private / "pb_data" / "new.db").exists()
    assert owner_mode(record)[0] == uid and owner_mode(private / "pb_data")[0] == uid
    assert (displaced / "new.db").read_text() == "x\n"
    assert displaced.parent == backup.parent
    assert (backup / "record.txt").read_text() == "before upgrade"
    assert sorted(p.name for p in private.iterdir()) == ["pb_data"]
    after = await run_in_box(bed, spec, "cat pb_data/record.txt && echo ok >> pb_data/record.txt")
    assert after.ok and after.output == "before upgrade"  # and the instance can write to it


async def test_an_interrupted_backup_never_looks_finished(bed: Bed) -> None:
    await make_folder(bed, make_spec("partial", bed.version))
    folder = bed.base / ".backups" / "partial"
    folder.mkdir(parents=True, exist_ok=True)
    leftover = folder / ".pb_data-20260101T000000Z.partial"
    leftover.mkdir()

    backup = await bed.dirs.backup_data("partial")

    assert [p.name for p in folder.iterdir() if p.name.endswith(".partial")] == [leftover.name]
    assert backup.name.startswith("pb_data-") and not backup.name.endswith(".partial")
    with pytest.raises(UnsafePath):
        await bed.dirs.restore_data("partial", leftover)


# The first superuser ------------------------------------------------------------------


async def run_service(bed: Bed, spec: ServiceSpec) -> str:
    """Start the service's own rendered unit; its base URL once PocketBase answers."""
    units = SystemdUnits(bed.config, bed.bus)
    units.write(spec.project_name, render_unit(spec, bed.dirs.settings))
    units.write_environment(spec.project_name, render_environment(spec))
    await bed.bus.daemon_reload()
    await bed.bus.start_unit(spec.unit_name)
    url = f"http://127.0.0.1:{spec.port}"
    assert await wait_for_pocketbase(url)
    return url


async def stop_service(bed: Bed, spec: ServiceSpec) -> None:
    await bed.bus.stop_unit(spec.unit_name)


async def login(url: str, email: str, password: str) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{url}/api/collections/_superusers/auth-with-password",
            json={"identity": email, "password": password},
            timeout=aiohttp.ClientTimeout(total=5),
        ) as response,
    ):
        body = await response.json()
        assert response.status != 200 or isinstance(body.get("token"), str)
        return response.status


async def test_a_generated_superuser_password_logs_in_to_the_running_instance(bed: Bed) -> None:
    spec = make_spec("admins", bed.version)

    created = await bed.dirs.ensure_superuser(spec, "owner@example.com")

    assert created.email == "owner@example.com"
    assert created.password is not None and len(created.password) >= 30
    assert created.password not in repr(created)
    private = bed.dirs.folders.private_path("admins")
    uid = owner_mode(private)[0]
    assert uid in DYNAMIC_UIDS
    assert {owner_mode(p)[0] for p in (private / "pb_data").rglob("*")} == {uid}
    assert list((bed.config.base_dir / ".bootstrap").iterdir()) == []
    assert not any(bed.dirs.settings.environment_dir.glob("*bootstrap*"))
    url = await run_service(bed, spec)
    try:
        assert await login(url, "owner@example.com", created.password) == 200
        assert await login(url, "owner@example.com", created.password + "x") == 400
    finally:
        await stop_service(bed, spec)


async def test_asking_again_updates_the_password_instead_of_failing(bed: Bed) -> None:
    spec = make_spec("rotate", bed.version)
    await bed.dirs.ensure_superuser(spec, "ops@example.com", "first-password-123")

    again = await bed.dirs.ensure_superuser(spec, "ops@example.com", "second-password-456")

    assert again.password is None  # the caller's own password is never echoed back
    url = await run_service(bed, spec)
    try:
        assert await login(url, "ops@example.com", "second-password-456") == 200
        assert await login(url, "ops@example.com", "first-password-123") == 400
    finally:
        await stop_service(bed, spec)


async def test_superuser_password_can_come_from_a_file(bed: Bed) -> None:
    secret = bed.sandbox.layout.root / "admin-password"
    secret.write_text("correct-horse-battery-staple\n")
    secret.chmod(0o600)
    spec = make_spec("filed", bed.version, superuser_password_file=str(secret))

    created = await bed.dirs.ensure_superuser(spec, "ops@example.com")

    assert created.password is None
    url = await run_service(bed, spec)
    try:
        assert await login(url, "ops@example.com", "correct-horse-battery-staple") == 200
    finally:
        await stop_service(bed, spec)


async def test_the_owners_hooks_and_migrations_do_not_run_with_the_bootstrap(bed: Bed) -> None:
    spec = make_spec("hooked", bed.version, extra_dirs=["pb_hooks", "pb_migrations"])
    await make_folder(bed, spec)
    planted = await run_in_box(
        bed,
        spec,
        'echo \'$os.writeFile("pb_data/hook-ran", "x", 0o644)\' > pb_hooks/spy.pb.js && '
        'echo \'migrate((app) => { $os.writeFile("pb_data/migration-ran", "x", 0o644) })\' '
        "> pb_migrations/1_spy.js",
    )
    assert planted.ok, planted.output

    await bed.dirs.ensure_superuser(spec, "a@example.com", "a-good-password-1")

    data = bed.dirs.folders.private_path("hooked") / "pb_data"
    assert (data / "data.db").exists()
    assert not (data / "hook-ran").exists() and not (data / "migration-ran").exists()
    await run_service(bed, spec)  # the spies work: the instance's own start runs them
    try:
        assert (data / "hook-ran").exists() and (data / "migration-ran").exists()
    finally:
        await stop_service(bed, spec)


async def test_a_password_that_starts_with_a_dash_is_not_read_as_an_option(bed: Bed) -> None:
    # token_urlsafe's alphabet has "-": a generated password can look like a flag.
    spec = make_spec("dashed", bed.version)

    await bed.dirs.ensure_superuser(spec, "dash@example.com", "-eDashFirst-1234567890")

    url = await run_service(bed, spec)
    try:
        assert await login(url, "dash@example.com", "-eDashFirst-1234567890") == 200
    finally:
        await stop_service(bed, spec)


async def test_a_rejected_password_never_appears_in_the_error_or_the_logs(
    bed: Bed, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    password = "Qz7sh"  # PocketBase wants at least 8 characters
    spec = make_spec("shortpw", bed.version)

    with pytest.raises(SuperuserError, match="failed") as raised:
        await bed.dirs.ensure_superuser(spec, "x@example.com", password)

    assert password not in str(raised.value) and password not in repr(raised.value)
    assert raised.value.__cause__ is None and raised.value.__context__ is None
    captured = capsys.readouterr()
    assert password not in captured.out + captured.err + caplog.text


async def test_the_password_never_reaches_an_argument_and_is_redacted_from_output(
    bed: Bed, capsys: pytest.CaptureFixture[str]
) -> None:
    # A stand-in binary that prints its arguments and its environment, and fails.
    cache = Path(tempfile.mkdtemp(prefix="echo-cache-", dir=bed.sandbox.layout.root))
    cache.chmod(0o755)
    (cache / "7.7.7").mkdir(mode=0o755)
    script = cache / "7.7.7" / "pocketbase"
    script.write_text('#!/bin/sh\necho "args: $*"\necho "uid: $(id -u)"\nenv | grep ^PB_\nexit 3\n')
    script.chmod(0o755)
    password = "Echo-Me-If-You-Dare-1234"
    dirs = ServiceDirs(bed.config.model_copy(update={"release_cache_dir": cache}), bed.bus)

    with pytest.raises(SuperuserError) as raised:
        await dirs.ensure_superuser(make_spec("echoer", "7.7.7"), "e@example.com", password)

    message = str(raised.value)
    arguments = re.search(r"args: (.*)", message)
    assert arguments and "migrate up --dir=" in arguments[1] and "--hooksDir=" in arguments[1]
    assert "e@example.com" not in arguments[1]
    assert "PB_BOOTSTRAP_PASSWORD=[redacted]" in message
    uid = re.search(r"uid: (\d+)", message)
    assert uid and int(uid[1]) in DYNAMIC_UIDS
    assert password not in message
    captured = capsys.readouterr()
    assert password not in captured.out + captured.err
    shutil.rmtree(cache)


# Path escapes -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["..", "../etc", "a/b", "/etc", "", ".archive", "Alpha", "a\x00"])
async def test_names_that_are_not_service_names_are_refused_everywhere(bed: Bed, name: str) -> None:
    with pytest.raises(UnsafePath):
        bed.dirs.path_for(name)
    with pytest.raises(UnsafePath):
        await bed.dirs.delete(name)
    with pytest.raises(UnsafePath):
        await bed.dirs.delete(name, purge=True)
    with pytest.raises(UnsafePath):
        await bed.dirs.backup_data(name)
    with pytest.raises(UnsafePath):
        await bed.dirs.migrate_legacy(name)


async def test_a_symlink_the_instance_plants_as_pb_data_is_refused_and_never_followed(
    bed: Bed, outside: Path
) -> None:
    spec = make_spec("dataplant", bed.version)
    await make_folder(bed, spec)
    backup = await bed.dirs.backup_data("dataplant")
    planted = await run_in_box(bed, spec, f"rm -rf pb_data && ln -s {outside} pb_data")
    assert planted.ok, planted.output
    before = snapshot(outside)

    with pytest.raises(UnsafePath, match="pb_data"):
        await bed.dirs.backup_data("dataplant")
    with pytest.raises(UnsafePath, match="pb_data"):
        await bed.dirs.restore_data("dataplant", backup)

    assert snapshot(outside) == before
    await bed.dirs.delete("dataplant", purge=True)
    assert snapshot(outside) == before


async def test_links_inside_pb_data_are_copied_as_links_and_never_followed(
    bed: Bed, outside: Path
) -> None:
    spec = make_spec("linky", bed.version)
    await make_folder(bed, spec)
    planted = await run_in_box(bed, spec, f"ln -s {outside}/precious pb_data/escape")
    assert planted.ok, planted.output
    before = snapshot(outside)

    backup = await bed.dirs.backup_data("linky")
    archived = (await bed.dirs.delete("linky")).archived_to

    for copy in (backup / "escape", archived and archived / "pb_data" / "escape"):
        assert copy and copy.is_symlink() and os.readlink(copy) == str(outside / "precious")
    assert snapshot(outside) == before


async def test_restore_accepts_only_this_services_backups(bed: Bed, outside: Path) -> None:
    await make_folder(bed, make_spec("restorer", bed.version))
    await make_folder(bed, make_spec("other", bed.version))
    others = await bed.dirs.backup_data("other")
    mine = await bed.dirs.backup_data("restorer")
    before = snapshot(outside)

    for backup in (outside, others, mine / ".." / ".." / "other" / others.name, Path("/etc")):
        with pytest.raises(UnsafePath):
            await bed.dirs.restore_data("restorer", backup)

    assert snapshot(outside) == before
    await bed.dirs.restore_data("restorer", mine)


@pytest.mark.parametrize("kind", ["world-readable", "group-readable", "symlink", "fifo"])
def test_a_password_file_must_be_a_private_regular_file(tmp_path: Path, kind: str) -> None:
    secret = tmp_path / "password"
    if kind == "fifo":
        os.mkfifo(secret, 0o600)  # would block a naive open() forever
    elif kind == "symlink":
        target = tmp_path / "real"
        target.write_text("pw\n")
        target.chmod(0o600)
        secret.symlink_to(target)
    else:
        secret.write_text("pw\n")
        secret.chmod(0o644 if kind == "world-readable" else 0o640)
    with pytest.raises(SuperuserError):
        read_password_file(secret)


def test_a_private_password_file_is_read(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret-value\nignored second line\n")
    secret.chmod(0o600)
    assert read_password_file(secret) == "s3cret-value"
