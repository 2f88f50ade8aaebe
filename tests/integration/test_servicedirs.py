"""Service directories on the test bed: real owners, real binaries, a real first superuser.

The cache holds two real PocketBase versions (the installed one seeded, the older one
downloaded from the session's mirror); the service folders live in the module's sandbox,
owned by ``nobody:nogroup`` as the sandbox configures. The superuser is checked the way a
person would: PocketBase runs as a unit of the sandbox's systemd, as the instance user, and
the password logs in through its HTTP API.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from pockestrator.agent.sandbox import Sandbox, free_port
from pockestrator.config import AgentConfig
from pockestrator.controllers.releases import ReleaseCache, ReleaseStore, seed_from_installed
from pockestrator.controllers.servicedirs import (
    ServiceDirError,
    ServiceDirs,
    SuperuserError,
    UnsafePath,
    read_password_file,
)
from pockestrator.specs.model import ServiceSpec
from tests.testbed.mirror import ReleaseMirror
from tests.testbed.waiting import wait_for_pocketbase

NOBODY, NOGROUP = 65534, 65534


@dataclass(frozen=True)
class Bed:
    sandbox: Sandbox
    config: AgentConfig
    dirs: ServiceDirs
    older: str
    newer: str

    @property
    def base(self) -> Path:
        return self.config.base_dir


@pytest.fixture(scope="module")
async def bed(
    sandbox: Sandbox, release_mirror: ReleaseMirror, pocketbase_versions: tuple[str, str]
) -> AsyncIterator[Bed]:
    older, newer = pocketbase_versions
    config = sandbox.agent_config(
        release_source="mirror",
        release_base_url=release_mirror.base_url,
        release_index_url=release_mirror.index_url,
    )
    assert seed_from_installed(config.release_cache_dir) == newer
    async with ReleaseCache(config) as releases:
        await releases.ensure(older)
        yield Bed(sandbox, config, ServiceDirs(config, releases.store), older, newer)


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
            "port": 20000,
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


def pocketbase_version_of(binary: Path) -> str:
    return subprocess.run([str(binary), "--version"], capture_output=True, text=True).stdout


# Creation, idempotence, versions, drift -----------------------------------------------


async def test_service_directory_is_created_for_the_instance_user_with_the_binary_linked(
    bed: Bed,
) -> None:
    spec = make_spec("alpha", bed.newer, extra_dirs=["pb_hooks", "pb_public"])
    assert not (await bed.dirs.observe(spec)).exists

    result = await bed.dirs.apply(spec)

    folder = bed.base / "alpha"
    assert result.changed and f"created {folder}" in result.changes
    for path in (folder, folder / "pb_data", folder / "pb_hooks", folder / "pb_public"):
        assert owner_mode(path) == (NOBODY, NOGROUP, 0o750), path
    assert not (folder / "pb_migrations").exists()
    binary = folder / "pocketbase"
    cached = bed.config.release_cache_dir / bed.newer / "pocketbase"
    assert owner_mode(binary) == (0, 0, 0o755)
    assert os.stat(binary).st_ino == os.stat(cached).st_ino  # a hard link, not a copy
    assert f"version {bed.newer}" in pocketbase_version_of(binary)
    state = await bed.dirs.observe(spec)
    assert state.converged and state.problems() == []


async def test_second_apply_with_nothing_changed_changes_nothing(bed: Bed) -> None:
    spec = make_spec("idem", bed.newer, extra_dirs=["pb_migrations"])
    assert (await bed.dirs.apply(spec)).changed
    before = snapshot(bed.base / "idem")

    again = await bed.dirs.apply(spec)

    assert not again.changed and again.changes == ()
    assert snapshot(bed.base / "idem") == before


async def test_version_change_swaps_the_binary_in_one_step(bed: Bed) -> None:
    folder = bed.base / "upgrade"
    await bed.dirs.apply(make_spec("upgrade", bed.older))
    assert f"version {bed.older}" in pocketbase_version_of(folder / "pocketbase")
    spec = make_spec("upgrade", bed.newer)
    assert not (await bed.dirs.observe(spec)).binary_matches

    result = await bed.dirs.apply(spec)

    assert result.changes == (
        f"PocketBase {bed.newer} linked to {folder / 'pocketbase'} (replacing a different file)",
    )
    assert f"version {bed.newer}" in pocketbase_version_of(folder / "pocketbase")
    older_cached = bed.config.release_cache_dir / bed.older / "pocketbase"
    assert f"version {bed.older}" in pocketbase_version_of(older_cached)
    assert sorted(p.name for p in folder.iterdir()) == ["pb_data", "pocketbase"]


async def test_drift_is_observed_and_repaired_with_every_change_reported(bed: Bed) -> None:
    spec = make_spec("drift", bed.newer, extra_dirs=["pb_hooks"])
    folder = bed.base / "drift"
    await bed.dirs.apply(spec)
    folder.chmod(0o777)
    os.chown(folder / "pb_data", 0, 0)
    (folder / "pb_hooks").rmdir()
    (folder / "pocketbase").unlink()
    (folder / "pocketbase").write_bytes(b"\x7fELF not the real thing")

    state = await bed.dirs.observe(spec)
    assert not state.converged
    assert not state.mode_ok and state.owner_ok
    assert state.drifted_dirs == ("pb_data",) and state.missing_dirs == ("pb_hooks",)
    assert state.binary_present and not state.binary_matches

    result = await bed.dirs.apply(spec)

    assert result.changes == (
        f"mode of {folder} set to 750 (was 777)",
        f"owner of {folder / 'pb_data'} set to nobody:nogroup (was 0:0)",
        f"created {folder / 'pb_hooks'}",
        f"PocketBase {bed.newer} linked to {folder / 'pocketbase'} (replacing a different file)",
    )
    assert (await bed.dirs.observe(spec)).converged


async def test_binary_is_copied_and_checked_by_hash_across_file_systems(bed: Bed) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(bed.base).st_dev:
        pytest.skip("needs a cache on another file system than base_dir (/dev/shm)")
    cache_root = Path(tempfile.mkdtemp(prefix="pockestrator-cache-", dir=shm))
    try:
        store = ReleaseStore(cache_root)
        source = bed.config.release_cache_dir / bed.newer / "pocketbase"
        store.install_file(bed.newer, source, source="test", origin=str(source))
        dirs = ServiceDirs(bed.config, store)
        spec = make_spec("copied", bed.newer)
        folder = bed.base / "copied"

        result = await dirs.apply(spec)

        assert f"PocketBase {bed.newer} copied to {folder / 'pocketbase'}" in result.changes
        binary = folder / "pocketbase"
        assert owner_mode(binary) == (0, 0, 0o755)
        assert os.stat(binary).st_dev != os.stat(cache_root).st_dev
        assert (await dirs.observe(spec)).converged
        # Same size, same owner and mode, one byte different: only the hash can tell.
        data = bytearray(binary.read_bytes())
        data[-1] ^= 0xFF
        binary.write_bytes(bytes(data))
        assert not (await dirs.observe(spec)).binary_matches
        assert (await dirs.apply(spec)).changed
        assert (await dirs.observe(spec)).converged
    finally:
        shutil.rmtree(cache_root, ignore_errors=True)


async def test_apply_refuses_a_version_that_is_not_cached(bed: Bed) -> None:
    with pytest.raises(ServiceDirError, match=r"0\.1\.0 is not in the release cache"):
        await bed.dirs.apply(make_spec("uncached", "0.1.0"))
    assert not (bed.base / "uncached").exists()


# Delete, archive, backups -------------------------------------------------------------


async def test_delete_archives_the_folder_by_default(bed: Bed) -> None:
    spec = make_spec("archived", bed.newer)
    await bed.dirs.apply(spec)
    data = bed.base / "archived" / "pb_data" / "data.txt"
    data.write_text("user data")

    result = await bed.dirs.delete("archived")

    assert result.existed and not result.purged and result.archived_to is not None
    assert result.archived_to.parent == bed.config.archive_path
    assert re.fullmatch(r"archived-\d{8}T\d{6}Z(-\d+)?", result.archived_to.name)
    assert (result.archived_to / "pb_data" / "data.txt").read_text() == "user data"
    assert owner_mode(result.archived_to / "pb_data") == (NOBODY, NOGROUP, 0o750)
    assert not (bed.base / "archived").exists()
    assert not (await bed.dirs.delete("archived")).existed


async def test_purge_removes_the_folder_without_archiving(bed: Bed) -> None:
    await bed.dirs.apply(make_spec("purged", bed.newer))
    archive = bed.config.archive_path
    before = sorted(archive.iterdir()) if archive.exists() else []

    result = await bed.dirs.delete("purged", purge=True)

    assert result.existed and result.purged and result.archived_to is None
    assert not (bed.base / "purged").exists()
    assert (sorted(archive.iterdir()) if archive.exists() else []) == before


async def test_backup_of_pb_data_restores_the_data_and_its_owner(bed: Bed) -> None:
    await bed.dirs.apply(make_spec("backed", bed.newer))
    data_dir = bed.base / "backed" / "pb_data"
    (data_dir / "storage").mkdir()
    record = data_dir / "storage" / "record.txt"
    record.write_text("before upgrade")
    for path in (data_dir / "storage", record):
        os.chown(path, NOBODY, NOGROUP)

    backup = await bed.dirs.backup_data("backed")

    assert backup.parent == bed.base / ".backups" / "backed"
    assert owner_mode(bed.base / ".backups")[2] == 0o700
    record.write_text("after a failed upgrade")
    (data_dir / "new.db").write_text("migrated")

    displaced = await bed.dirs.restore_data("backed", backup)

    assert record.read_text() == "before upgrade"
    assert not (data_dir / "new.db").exists()
    assert owner_mode(record)[:2] == (NOBODY, NOGROUP)
    assert owner_mode(data_dir) == (NOBODY, NOGROUP, 0o750)
    assert (displaced / "new.db").read_text() == "migrated"
    assert (backup / "storage" / "record.txt").read_text() == "before upgrade"
    assert sorted(p.name for p in (bed.base / "backed").iterdir()) == ["pb_data", "pocketbase"]


# The first superuser ------------------------------------------------------------------


async def run_pocketbase(bed: Bed, name: str) -> tuple[str, str]:
    """Start the service's PocketBase as a unit of the sandbox, as the instance user."""
    port = free_port()
    folder = bed.base / name
    unit = f"{name}-pocketbase.service"
    (bed.sandbox.systemd.paths.unit_dir / unit).write_text(
        "[Service]\n"
        "User=nobody\n"
        "Group=nogroup\n"
        f"ExecStart={folder}/pocketbase serve --http=127.0.0.1:{port} --dir={folder}/pb_data\n"
    )
    assert bed.sandbox.bus is not None
    await bed.sandbox.bus.daemon_reload()
    await bed.sandbox.bus.start_unit(unit)
    url = f"http://127.0.0.1:{port}"
    assert await wait_for_pocketbase(url)
    return url, unit


async def login(url: str, email: str, password: str) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{url}/api/collections/_superusers/auth-with-password",
            json={"identity": email, "password": password},
            timeout=aiohttp.ClientTimeout(total=5),
        ) as response,
    ):
        return response.status, await response.json()


async def test_first_superuser_is_created_once_and_logs_in_to_pocketbase(bed: Bed) -> None:
    spec = make_spec("admins", bed.newer, superuser_email="owner@example.com")
    await bed.dirs.apply(spec)
    assert (await bed.dirs.observe(spec)).superuser_done is False

    created = await bed.dirs.ensure_superuser(spec)

    assert created is not None and created.email == "owner@example.com"
    assert created.password is not None and len(created.password) >= 30
    assert created.password not in repr(created)
    assert await bed.dirs.ensure_superuser(spec) is None  # once, and the password only once
    assert (await bed.dirs.observe(spec)).superuser_done is True
    data_dir = bed.base / "admins" / "pb_data"
    created_files = list(data_dir.rglob("*"))
    assert created_files, "pocketbase superuser upsert created the database"
    assert {owner_mode(path)[:2] for path in created_files} == {(NOBODY, NOGROUP)}
    assert not (await bed.dirs.apply(spec)).changed

    url, unit = await run_pocketbase(bed, "admins")
    try:
        status, body = await login(url, "owner@example.com", created.password)
        assert status == 200 and isinstance(body.get("token"), str)
        status, _ = await login(url, "owner@example.com", created.password + "x")
        assert status == 400
    finally:
        assert bed.sandbox.bus is not None
        await bed.sandbox.bus.stop_unit(unit)


async def test_a_password_that_starts_with_a_dash_is_not_read_as_an_option(bed: Bed) -> None:
    # token_urlsafe's alphabet has "-": a generated password can look like a flag.
    spec = make_spec("dashed", bed.newer, superuser_email="dash@example.com")
    await bed.dirs.apply(spec)

    created = await bed.dirs.ensure_superuser(spec, password="-eDashFirst-1234567890")

    assert created is not None
    url, unit = await run_pocketbase(bed, "dashed")
    try:
        status, body = await login(url, "dash@example.com", "-eDashFirst-1234567890")
        assert status == 200 and "token" in body
    finally:
        assert bed.sandbox.bus is not None
        await bed.sandbox.bus.stop_unit(unit)


async def test_superuser_password_can_come_from_a_file(bed: Bed) -> None:
    secret = bed.sandbox.layout.root / "admin-password"
    secret.write_text("correct-horse-battery-staple\n")
    secret.chmod(0o600)
    spec = make_spec(
        "filed",
        bed.newer,
        superuser_email="ops@example.com",
        superuser_password_file=str(secret),
    )
    await bed.dirs.apply(spec)

    created = await bed.dirs.ensure_superuser(spec)

    assert created is not None and created.password is None
    url, unit = await run_pocketbase(bed, "filed")
    try:
        status, body = await login(url, "ops@example.com", "correct-horse-battery-staple")
        assert status == 200 and "token" in body
    finally:
        assert bed.sandbox.bus is not None
        await bed.sandbox.bus.stop_unit(unit)


async def test_rejected_password_never_appears_in_the_error_or_the_logs(
    bed: Bed, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    password = "Qz7-short"[:6]  # PocketBase wants at least 8 characters
    secret = bed.sandbox.layout.root / "short-password"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    spec = make_spec(
        "shortpw", bed.newer, superuser_email="x@example.com", superuser_password_file=str(secret)
    )
    await bed.dirs.apply(spec)

    with pytest.raises(SuperuserError, match="failed") as raised:
        await bed.dirs.ensure_superuser(spec)

    assert password not in str(raised.value) and password not in repr(raised.value)
    assert raised.value.__cause__ is None and raised.value.__context__ is None
    captured = capsys.readouterr()
    assert password not in captured.out + captured.err + caplog.text
    assert (await bed.dirs.observe(spec)).superuser_done is False


async def test_password_echoed_by_a_failing_tool_is_redacted_from_the_error(
    bed: Bed, capsys: pytest.CaptureFixture[str]
) -> None:
    # A stand-in binary that prints its arguments, as a verbose tool might, and fails.
    cache = Path(tempfile.mkdtemp(prefix="echo-cache-", dir=bed.sandbox.layout.root))
    version_dir = cache / "7.7.7"
    version_dir.mkdir()
    script = version_dir / "pocketbase"
    script.write_text('#!/bin/sh\necho "args: $*" >&2\nid -u\nexit 3\n')
    script.chmod(0o755)
    digest = subprocess.run(["sha256sum", str(script)], capture_output=True, text=True)
    (version_dir / "release.json").write_text(
        json.dumps({"version": "7.7.7", "sha256": digest.stdout.split()[0]})
    )
    password = "Echo-Me-If-You-Dare-1234"
    secret = bed.sandbox.layout.root / "echo-password"
    secret.write_text(password)
    secret.chmod(0o600)
    dirs = ServiceDirs(bed.config, ReleaseStore(cache))
    spec = make_spec(
        "echoer", "7.7.7", superuser_email="e@example.com", superuser_password_file=str(secret)
    )
    await dirs.apply(spec)

    with pytest.raises(SuperuserError) as raised:
        await dirs.ensure_superuser(spec)

    message = str(raised.value)
    assert "args: superuser upsert --dir=" in message
    assert "-- e@example.com [redacted]" in message
    assert f"\n{NOBODY}" in message  # it ran as the instance user
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


async def test_symlink_planted_as_the_service_folder_is_never_followed(
    bed: Bed, outside: Path
) -> None:
    before = snapshot(outside)
    (bed.base / "planted").symlink_to(outside)
    spec = make_spec("planted", bed.newer)

    for attempt in (
        bed.dirs.apply(spec),
        bed.dirs.observe(spec),
        bed.dirs.delete("planted"),
        bed.dirs.delete("planted", purge=True),
        bed.dirs.backup_data("planted"),
        bed.dirs.ensure_superuser(make_spec("planted", bed.newer, superuser_email="a@b.example")),
    ):
        with pytest.raises(UnsafePath):
            await attempt

    assert snapshot(outside) == before
    assert (bed.base / "planted").is_symlink()


async def test_symlink_planted_as_pb_data_is_refused_and_its_target_untouched(
    bed: Bed, outside: Path
) -> None:
    spec = make_spec("dataplant", bed.newer)
    await bed.dirs.apply(spec)
    data_dir = bed.base / "dataplant" / "pb_data"
    data_dir.rmdir()
    data_dir.symlink_to(outside)
    before = snapshot(outside)

    with pytest.raises(UnsafePath, match="pb_data"):
        await bed.dirs.apply(spec)
    with pytest.raises(UnsafePath, match="pb_data"):
        await bed.dirs.observe(spec)
    with pytest.raises(UnsafePath, match="pb_data"):
        await bed.dirs.backup_data("dataplant")

    assert snapshot(outside) == before
    await bed.dirs.delete("dataplant", purge=True)
    assert snapshot(outside) == before


async def test_symlink_planted_as_the_binary_is_replaced_not_written_through(
    bed: Bed, outside: Path
) -> None:
    spec = make_spec("binplant", bed.newer)
    await bed.dirs.apply(spec)
    binary = bed.base / "binplant" / "pocketbase"
    binary.unlink()
    binary.symlink_to(outside / "precious")
    before = snapshot(outside)

    result = await bed.dirs.apply(spec)

    assert result.changed and not binary.is_symlink()
    assert f"version {bed.newer}" in pocketbase_version_of(binary)
    assert snapshot(outside) == before


async def test_links_inside_pb_data_are_copied_as_links_and_never_followed(
    bed: Bed, outside: Path
) -> None:
    await bed.dirs.apply(make_spec("linky", bed.newer))
    (bed.base / "linky" / "pb_data" / "escape").symlink_to(outside / "precious")
    before = snapshot(outside)

    backup = await bed.dirs.backup_data("linky")
    archived = (await bed.dirs.delete("linky")).archived_to

    for copy in (backup / "escape", archived and archived / "pb_data" / "escape"):
        assert copy and copy.is_symlink() and os.readlink(copy) == str(outside / "precious")
    assert snapshot(outside) == before


async def test_restore_accepts_only_this_services_backups(bed: Bed, outside: Path) -> None:
    await bed.dirs.apply(make_spec("restorer", bed.newer))
    await bed.dirs.apply(make_spec("other", bed.newer))
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
