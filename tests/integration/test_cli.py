"""The ``pockestrator`` command against a real agent on the test bed.

Every command runs as its own process (``python -m pockestrator ...``), as a user runs it,
talking to the module's agent over HTTP with a token its store made. What the CLI says is
checked against the host: systemd's answer over D-Bus, PocketBase through Caddy, the
service folders on disk, the agent's database.

``logs -f`` ends with exit code 0 on Ctrl-C (SIGINT): ending a follow is not a failure.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from pockestrator.agent.daemon import Agent
from pockestrator.agent.sandbox import Sandbox, free_port
from pockestrator.specs.model import unit_name
from tests.testbed.cli_env import Cli, Run, agent_url, clean_environment
from tests.testbed.waiting import wait_for_pocketbase, wait_until


@pytest.fixture(scope="module")
def api_url(agent: Agent) -> str:
    return agent_url(agent)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli-home")


@pytest.fixture(scope="module")
def cli(agent: Agent, home: Path) -> Cli:
    return Cli.for_agent(agent, home, "cli-test")


def spec_text(name: str, version: str, **fields: Any) -> str:
    data = {"project_name": name, "port": free_port(), "pocketbase_version": version, **fields}
    return yaml.safe_dump(data, sort_keys=False)


async def unit_state(agent: Agent, name: str) -> tuple[str, int | None]:
    status = await agent.bus.unit_status(unit_name(name))
    return status.active_state, status.main_pid


async def stored(agent: Agent, name: str) -> bool:
    return agent.store.get_service(name) is not None


@dataclass
class Applied:
    folder: Path
    run: Run
    names: tuple[str, ...]


@pytest.fixture(scope="module")
async def applied(cli: Cli, home: Path, version: str) -> Applied:
    """A folder of two spec files (three services) applied with --wait."""
    folder = home / "specs"
    folder.mkdir()
    (folder / "shop.yaml").write_text(
        spec_text("shop", version, superuser_email="owner@shop.example")
        + "---\n"
        + spec_text("shop-admin", version, env={"GOMEMLIMIT": "200MiB", "FEATURE": "on"})
    )
    (folder / "blog.yml").write_text(spec_text("blog", version, description="A blog"))
    run = await cli("apply", "-f", str(folder), "--wait", "--timeout", "120")
    return Applied(folder, run, ("blog", "shop", "shop-admin"))


async def pocketbase_through_caddy(sandbox: Sandbox, domain: str) -> bool:
    return await wait_for_pocketbase(sandbox.caddy_url, host=domain, timeout=20)


# -- apply -----------------------------------------------------------------------------------


async def test_apply_with_wait_creates_every_service_of_a_folder_and_sees_them_active(
    applied: Applied, agent: Agent, sandbox: Sandbox
) -> None:
    run = applied.run
    assert run.code == 0, run
    rows = [line.split() for line in run.out.splitlines()[1:4]]
    assert sorted((row[0], row[1], row[2]) for row in rows) == [
        (name, "created", "active") for name in applied.names
    ]
    # Off a terminal, progress is one line per state change, on stderr only.
    for name in applied.names:
        assert f"{name}: active" in run.err.splitlines(), run
    assert "\r" not in run.err
    for name in applied.names:
        state, pid = await unit_state(agent, name)
        assert state == "active" and pid
        assert await pocketbase_through_caddy(sandbox, f"{name}.localhost")


async def test_apply_prints_the_generated_superuser_password_once_and_it_works(
    applied: Applied, sandbox: Sandbox
) -> None:
    line = next(line for line in applied.run.out.splitlines() if "superuser" in line)
    assert line.startswith("shop: superuser owner@shop.example has the password ")
    password = line.split("has the password ")[1].split(" ")[0]
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{sandbox.caddy_url}/api/collections/_superusers/auth-with-password",
            json={"identity": "owner@shop.example", "password": password},
            headers={"Host": "shop.localhost"},
            timeout=aiohttp.ClientTimeout(total=10),
        ) as response,
    ):
        assert response.status == 200, await response.text()


async def test_apply_again_patches_only_what_changed_and_leaves_the_rest(
    applied: Applied, cli: Cli, agent: Agent
) -> None:
    shop_file = applied.folder / "shop.yaml"
    documents = list(yaml.safe_load_all(shop_file.read_text()))
    documents[1]["env"] = {"GOMEMLIMIT": "300MiB"}  # one changed, FEATURE removed
    documents[1]["description"] = "the admin side"
    shop_file.write_text(yaml.safe_dump_all(documents, sort_keys=False))

    preview = await cli("apply", "-f", str(applied.folder), "--dry-run", "-o", "json")
    assert preview.code == 0, preview
    planned = {item["project_name"]: item for item in preview.json()}
    assert planned["shop-admin"]["action"] == "would configure"
    assert planned["shop-admin"]["changed"] == ["description", "env"]
    assert agent.store.get_service("shop-admin").spec.env["FEATURE"] == "on"  # dry run

    run = await cli("apply", "-f", str(applied.folder))
    assert run.code == 0, run
    rows = {line.split()[0]: line.split() for line in run.out.splitlines()[1:]}
    assert rows["shop-admin"][1] == "configured" and rows["shop-admin"][-1] == "description,env"
    assert rows["shop"][1] == "unchanged" and rows["blog"][1] == "unchanged"
    record = agent.store.get_service("shop-admin")
    assert record is not None
    assert dict(record.spec.env) == {"GOMEMLIMIT": "300MiB"}
    assert record.spec.description == "the admin side"
    assert agent.store.get_service("shop").generation == 1  # not written at all

    again = await cli("apply", "-f", str(applied.folder), "-o", "json")
    assert {item["action"] for item in again.json()} == {"unchanged"}


async def test_apply_reports_a_service_owned_by_a_spec_file_as_a_409_naming_the_file(
    cli: Cli, agent: Agent, home: Path, version: str
) -> None:
    owned = agent.config.spec_dir / "owned.yaml"
    owned.write_text(spec_text("owned", version))
    assert await wait_until(lambda: stored(agent, "owned"), 20)
    mine = home / "owned-copy.yaml"
    mine.write_text(owned.read_text())
    same = await cli("apply", "-f", str(mine))
    assert same.code == 0, same
    assert same.out.splitlines()[1].split()[:2] == ["owned", "unchanged"]

    mine.write_text(owned.read_text() + "description: changed here\n")
    run = await cli("apply", "-f", str(mine))
    assert run.code == 1, run
    assert run.out.splitlines()[1].split()[:2] == ["owned", "failed"]
    assert "OWNED_BY_FILE" in run.out
    assert f"spec file {owned}" in run.err and "(409 OWNED_BY_FILE)" in run.err
    assert agent.store.get_service("owned").spec.description == ""


async def test_apply_refuses_a_folder_with_a_broken_file_and_applies_nothing(
    cli: Cli, agent: Agent, home: Path, version: str
) -> None:
    folder = home / "half-broken"
    folder.mkdir()
    (folder / "good.yaml").write_text(spec_text("would-be-good", version))
    (folder / "bad.yaml").write_text(f'project_name: Bad_Name\nport: 22\nversion: "{version}"\n')
    run = await cli("apply", "-f", str(folder))
    assert run.code == 1, run
    bad = folder / "bad.yaml"
    assert f"{bad}:1: project_name: " in run.err
    assert f"{bad}:2: port: port must be between 1024 and 65535 [PORT_OUT_OF_RANGE]" in run.err
    assert f"{bad}:3: version: unknown field 'version' [UNKNOWN_FIELD]" in run.err
    assert "nothing was applied" in run.err
    assert run.out == ""
    assert agent.store.get_service("would-be-good") is None


async def test_apply_with_too_short_a_wait_exits_1_and_says_what_is_not_ready(
    cli: Cli, home: Path, version: str, agent: Agent
) -> None:
    spec = home / "slowpoke.yaml"
    spec.write_text(spec_text("slowpoke", version))
    run = await cli("apply", "-f", str(spec), "--wait", "--timeout", "0.05")
    assert run.code == 1, run
    assert "timed out after 0.05s; not ready: slowpoke" in run.err
    # The wait ran out, not the write: it was answered (and so stored) before the exit.
    assert await stored(agent, "slowpoke")


# -- reading ---------------------------------------------------------------------------------


async def test_get_lists_services_as_a_table_json_and_yaml_and_shows_one(
    applied: Applied, cli: Cli, agent: Agent
) -> None:
    table = await cli("get")
    assert table.code == 0, table
    header = table.out.splitlines()[0].split()
    assert header == [
        *("NAME", "STATUS", "DESIRED", "VERSION", "PORT", "DOMAIN", "SOURCE", "HEALTHY", "NODE")
    ]
    rows = {line.split()[0]: line.split() for line in table.out.splitlines()[1:]}
    assert rows["blog"][1:3] == ["active", "running"] and rows["blog"][5] == "blog.localhost"
    # One host: every service runs on the host's own node.
    assert {row[8] for row in rows.values()} == {agent.config.node}
    wide = await cli("get", "-o", "wide")
    assert "NODE" in wide.out.splitlines()[0].split()

    listed = (await cli("get", "-o", "json")).json()
    assert {"blog", "shop", "shop-admin"} <= {s["project_name"] for s in listed}
    one = yaml.safe_load((await cli("get", "blog", "-o", "yaml")).out)
    assert (one["project_name"], one["description"], one["status"]) == ("blog", "A blog", "active")
    by_id = (await cli("-o", "json", "get", one["id"])).json()
    assert by_id["project_name"] == "blog"
    active = (await cli("get", "--status", "active", "-o", "json")).json()
    assert all(s["status"] == "active" for s in active) and active

    missing = await cli("get", "no-such-service")
    assert missing.code == 4  # not found
    assert "Service 'no-such-service' not found (404 SERVICE_NOT_FOUND)" in missing.err


async def test_describe_shows_status_hashes_runtime_and_recent_events(
    applied: Applied, cli: Cli, agent: Agent
) -> None:
    status = agent.store.get_status("blog")
    assert status is not None and status.systemd_config_hash and status.caddy_config_hash
    text = await cli("describe", "blog")
    assert text.code == 0, text
    _state, pid = await unit_state(agent, "blog")
    assert "Status:        active (desired: running)" in text.out
    assert f"Unit hash:     {status.systemd_config_hash[:12]}" in text.out
    assert f"Caddy hash:    {status.caddy_config_hash[:12]}" in text.out
    assert f"blog-pocketbase.service (active/running, pid {pid}, since" in text.out
    assert "Events (newest first):" in text.out and "reconciled" in text.out

    data = (await cli("describe", "blog", "-o", "json", "--events", "1")).json()
    assert set(data) == {"service", "runtime_status", "status", "events"}
    assert data["status"]["pid"] == pid
    assert data["runtime_status"]["config_match"] is True
    assert len(data["events"]) == 1


# -- control ---------------------------------------------------------------------------------


async def test_stop_start_and_restart_drive_the_unit_as_systemd_then_reports(
    applied: Applied, cli: Cli, agent: Agent
) -> None:
    stopped = await cli("stop", "shop-admin")
    assert stopped.code == 0, stopped
    assert stopped.out.strip() == "shop-admin: stopped (systemd inactive/dead)"
    assert (await unit_state(agent, "shop-admin"))[0] == "inactive"

    started = await cli("start", "shop-admin", "-o", "json")
    assert started.code == 0, started
    assert started.json()["desired_state"] == "running"
    state, pid_before = await unit_state(agent, "shop-admin")
    assert state == "active"

    restarted = await cli("restart", "shop-admin")
    assert restarted.code == 0, restarted
    assert restarted.out.strip() == "shop-admin: restarted (systemd active/running)"
    state, pid_after = await unit_state(agent, "shop-admin")
    assert state == "active" and pid_after != pid_before

    unknown = await cli("stop", "no-such-service")
    assert unknown.code == 4 and "404 SERVICE_NOT_FOUND" in unknown.err


# -- logs ------------------------------------------------------------------------------------


async def test_logs_prints_the_latest_lines_of_the_journal(applied: Applied, cli: Cli) -> None:
    run = await cli("logs", "blog", "-n", "50")
    assert run.code == 0, run
    assert any("Server started at http://127.0.0.1:" in line for line in run.out.splitlines())
    two = await cli("logs", "blog", "-n", "2")
    assert len(two.out.splitlines()) == 2
    entries = (await cli("logs", "blog", "-n", "3", "-o", "json")).json()
    assert len(entries) == 3 and all(e["line"] and e["cursor"] for e in entries)


async def test_logs_follow_streams_new_lines_until_ctrl_c_and_exits_0(
    applied: Applied, cli: Cli
) -> None:
    process = await cli.start("logs", "shop", "-f", "-n", "1")
    stdout, stderr = process.stdout, process.stderr
    assert stdout is not None and stderr is not None
    try:
        first = await asyncio.wait_for(stdout.readline(), 20)
        assert first.strip(), "the last line comes first"
        # A restart writes new lines to the journal; the stream must carry them.
        restarted = await cli("restart", "shop")
        assert restarted.code == 0, restarted

        async def saw_server_start() -> bool:
            line = await asyncio.wait_for(stdout.readline(), 20)
            return b"Server started" in line

        assert await wait_until(saw_server_start, 30, 0)
    finally:
        process.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(process.wait(), 20)
    err = (await stderr.read()).decode()
    assert code == 0, err
    assert "Traceback" not in err


# -- delete ----------------------------------------------------------------------------------


async def test_delete_archives_the_data_and_says_where(
    cli: Cli, agent: Agent, home: Path, version: str
) -> None:
    spec = home / "to-archive.yaml"
    spec.write_text(spec_text("to-archive", version))
    assert (await cli("apply", "-f", str(spec), "--wait")).code == 0
    service_dir = agent.config.base_dir / "to-archive"
    assert (service_dir / "pb_data").is_dir()

    run = await cli("delete", "to-archive")
    assert run.code == 0, run
    prefix = "deleted to-archive; its data was archived to "
    assert run.out.startswith(prefix), run
    archive = Path(run.out.strip().removeprefix(prefix))
    assert archive.parent == agent.config.archive_path
    assert (archive / "pb_data").is_dir()
    assert not service_dir.exists()
    assert (await agent.bus.unit_status(unit_name("to-archive"))).load_state == "not-found"


async def test_delete_with_purge_removes_the_data_and_says_so(
    cli: Cli, agent: Agent, home: Path, version: str
) -> None:
    spec = home / "to-purge.yaml"
    spec.write_text(spec_text("to-purge", version))
    assert (await cli("apply", "-f", str(spec), "--wait")).code == 0
    run = await cli("delete", "to-purge", "--purge", "-o", "json")
    assert run.code == 0, run
    answer = run.json()
    assert (answer["purge"], answer["removed"], answer["archived_to"]) == (True, True, None)
    assert not (agent.config.base_dir / "to-purge").exists()
    archive = agent.config.archive_path
    assert not any(p.name.startswith("to-purge") for p in archive.glob("*")), "not archived"

    text = await cli("delete", "to-purge")
    assert text.code == 4 and "not found" in text.err


async def test_delete_of_a_file_owned_service_exits_1_and_names_the_file(
    cli: Cli, agent: Agent, version: str
) -> None:
    owned = agent.config.spec_dir / "kept.yaml"
    owned.write_text(spec_text("kept", version))
    assert await wait_until(lambda: stored(agent, "kept"), 20)
    run = await cli("delete", "kept")
    assert run.code == 1
    assert f"defined in spec file {owned}" in run.err
    assert agent.store.get_service("kept") is not None


# -- tokens ----------------------------------------------------------------------------------


async def test_token_create_save_list_and_revoke_through_the_api(
    cli: Cli, api_url: str, tmp_path: Path
) -> None:
    env = clean_environment(POCKESTRATOR_URL=api_url, XDG_CONFIG_HOME=str(tmp_path))
    env_with_token = {**env, "POCKESTRATOR_TOKEN": cli.env["POCKESTRATOR_TOKEN"]}
    created = await cli("token", "create", "cli-saved", "--save", env=env_with_token)
    assert created.code == 0, created
    token = created.out.strip()
    assert token.startswith("pks_") and len(created.out.splitlines()) == 1
    saved = tmp_path / "pockestrator" / "token"
    assert saved.read_text() == token + "\n"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert f"saved to {saved}" in created.err

    # No --token and no POCKESTRATOR_TOKEN: the saved file is used.
    listed = await cli("token", "list", "-o", "json", env=env)
    assert listed.code == 0, listed
    mine = [t for t in listed.json() if t["name"] == "cli-saved"]
    assert len(mine) == 1 and mine[0]["revoked"] is False and mine[0]["last_used_at"]
    table = await cli("token", "list", env=env)
    assert table.out.splitlines()[0].split() == ["ID", "NAME", "CREATED", "LAST", "USED", "REVOKED"]

    revoked = await cli("token", "revoke", "cli-saved", env=env_with_token)
    assert revoked.code == 0, revoked
    assert revoked.out.strip() == f"Token revoked (id {mine[0]['id']})"
    refused = await cli("get", env=env)
    assert refused.code == 6  # refused
    assert f"the agent refused the token from the token file {saved}" in refused.err


async def test_a_missing_token_is_reported_with_where_it_was_looked_for(
    cli: Cli, api_url: str, tmp_path: Path
) -> None:
    env = clean_environment(POCKESTRATOR_URL=api_url, XDG_CONFIG_HOME=str(tmp_path))
    run = await cli("get", env=env)
    assert run.code == 6  # refused
    assert "the agent wants an API token, and none was found" in run.err
    assert str(tmp_path / "pockestrator" / "token") in run.err


# -- the agent -------------------------------------------------------------------------------


async def test_system_reports_a_healthy_agent_with_0_and_a_stopped_caddy_with_1(
    cli: Cli, agent: Agent
) -> None:
    healthy = await cli("system")
    assert healthy.code == 0, healthy
    assert "Healthy:      yes" in healthy.out
    assert (await cli("system", "-o", "json")).json()["health"]["healthy"] is True

    await agent.bus.stop_unit(agent.config.caddy_unit)
    try:
        sick = await cli("system", "-o", "json")
    finally:
        await agent.bus.start_unit(agent.config.caddy_unit)
    assert sick.code == 1, sick
    report = sick.json()["health"]
    assert report["healthy"] is False
    assert "CADDY_NOT_RUNNING" in {e["code"] for e in report["errors"]}


async def test_an_unreachable_agent_is_reported_with_its_url_and_how_to_start_one(
    cli: Cli,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    run = await cli("system", env={**cli.env, "POCKESTRATOR_URL": url})
    assert run.code == 5  # unreachable
    assert f"cannot reach the agent at {url}" in run.err
    assert "the URL came from POCKESTRATOR_URL" in run.err and "pockestrator up" in run.err


# -- offline ---------------------------------------------------------------------------------


async def test_validate_works_offline_and_points_at_each_problem(
    cli: Cli, tmp_path: Path, version: str
) -> None:
    offline = {**cli.env, "POCKESTRATOR_URL": "http://127.0.0.1:9"}
    good = tmp_path / "good.yaml"
    good.write_text(spec_text("fine", version))
    ok = await cli("validate", "-f", str(good), env=offline)
    assert ok.code == 0, ok
    assert ok.out.strip() == f"{good}: ok (1 service: fine)"

    bad = tmp_path / "bad.yaml"
    bad.write_text(f'project_name: fine2\nport: 99999\npocketbase_version: "{version}"\nx: 1\n')
    run = await cli("validate", "-f", str(good), "-f", str(bad), env=offline)
    assert run.code == 1
    assert f"{bad}:2: port: port must be between 1024 and 65535 [PORT_OUT_OF_RANGE]" in run.out
    assert f"{bad}:4: x: unknown field 'x' [UNKNOWN_FIELD]" in run.out


async def test_admin_create_writes_an_admin_who_can_then_log_in(
    cli: Cli, agent: Agent, api_url: str, tmp_path: Path
) -> None:
    password = "correct horse battery staple"
    run = await cli(
        "admin",
        "create",
        "ops@example.test",
        "--database",
        str(agent.config.database),
        "--password-stdin",
        stdin=password + "\n",
    )
    assert run.code == 0, run
    assert run.out.startswith("created admin ops@example.test (id ")
    assert password not in run.out + run.err

    config = tmp_path / "config.yaml"
    # An admin is hashed as the agent's logins check (the agent's configuration says how).
    settings = {"database": str(agent.config.database), "password_hashing": "owasp-minimum"}
    config.write_text(yaml.safe_dump(settings))
    second = await cli(
        "admin",
        "create",
        "night@example.test",
        "--config",
        str(config),
        "--password-stdin",
        "-o",
        "json",
        stdin=password,
    )
    assert second.code == 0, second
    assert second.json()["database"] == str(agent.config.database)
    night = agent.accounts.get_admin("night@example.test")
    assert night is not None and "$m=19456,t=2,p=1$" in night.password_hash

    async with aiohttp.ClientSession() as session:
        for email in ("ops@example.test", "night@example.test"):
            async with session.post(
                f"{api_url}/api/pockestrator/auth/login",
                json={"email": email, "password": password},
                timeout=aiohttp.ClientTimeout(total=30),
            ) as response:
                body = await response.json()
                assert response.status == 200, body
                assert body["token"].startswith("pkss_") and body["admin"]["email"] == email

    again = await cli(
        "admin",
        "create",
        "ops@example.test",
        "--database",
        str(agent.config.database),
        "--password-stdin",
        stdin=password,
    )
    assert again.code == 1 and "already exists" in again.err
    short = await cli(
        "admin",
        "create",
        "new@example.test",
        "--database",
        str(agent.config.database),
        "--password-stdin",
        stdin="short",
    )
    assert short.code == 1 and "12 to 1024 characters" in short.err
