"""The CLI's kubectl, systemctl, docker and journalctl habits, each driven through the
real ``pockestrator`` command (its own process) against a real agent on the test bed:
``--tail``, ``--since``/``--until`` in local time, several names, ``-o name|wide|jsonpath``,
``version``, contexts, completion of service names, the exit codes, and the first token
made on the host with ``token create --local``."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from pockestrator import API_VERSION, __version__
from pockestrator.agent.daemon import Agent
from pockestrator.agent.sandbox import free_port
from pockestrator.cli import build_parser
from pockestrator.client.completion import render
from tests.testbed.cli_env import Cli, agent_url, clean_environment

TOKYO = "Asia/Tokyo"  # far from UTC: a time read in the wrong zone is nine hours off


@pytest.fixture(scope="module")
def api_url(agent: Agent) -> str:
    return agent_url(agent)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("habits-home")


@pytest.fixture(scope="module")
def cli(agent: Agent, home: Path) -> Cli:
    return Cli.for_agent(agent, home, "cli-habits")


@pytest.fixture(scope="module")
async def services(cli: Cli, home: Path, pocketbase_versions: tuple[str, str]) -> list[str]:
    """Three running services the tests share (named as a user would)."""
    names = ["h-one", "h-two", "h-three"]
    folder = home / "specs"
    folder.mkdir()
    for name in names:
        data = {
            "project_name": name,
            "port": free_port(),
            "pocketbase_version": pocketbase_versions[1],
        }
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(data))
    run = await cli("apply", "-f", str(folder), "--wait", "--timeout", "120")
    assert run.code == 0, run
    return names


async def unit_active(agent: Agent, name: str) -> str:
    return (await agent.bus.unit_status(f"{name}-pocketbase.service")).active_state


async def test_several_names_are_stopped_and_started_in_one_command(
    cli: Cli, agent: Agent, services: list[str]
) -> None:
    stopped = await cli("stop", "h-one", "h-two")
    assert stopped.code == 0, stopped
    assert [await unit_active(agent, n) for n in ("h-one", "h-two")] == ["inactive", "inactive"]
    assert await unit_active(agent, "h-three") == "active"
    started = await cli("start", "service/h-one", "h-two")  # -o name's form is a name too
    assert started.code == 0, started
    assert [await unit_active(agent, n) for n in ("h-one", "h-two")] == ["active", "active"]
    described = await cli("describe", "h-one", "h-three", "-o", "json")
    assert described.code == 0
    docs = [json.loads(part) for part in described.out.replace("}\n{", "}\n\x00{").split("\x00")]
    assert [d["service"]["project_name"] for d in docs] == ["h-one", "h-three"]


async def test_one_missing_name_of_several_is_said_and_the_others_are_done(
    cli: Cli, agent: Agent, services: list[str]
) -> None:
    run = await cli("restart", "h-three", "nobody")
    assert run.code == 4, run
    assert "nobody:" in run.err and "h-three: restarted" in run.out


async def test_output_name_wide_and_jsonpath(cli: Cli, services: list[str]) -> None:
    names = await cli("get", "-o", "name")
    assert names.code == 0
    assert {f"service/{n}" for n in services} <= set(names.out.split())
    wide = await cli("get", "-o", "wide", env={**cli.env, "COLUMNS": "400"})
    header = wide.out.splitlines()[0].split()
    assert header[-4:] == ["URL", "CREATED", "LAST", "ERROR"] and "ID" in header
    narrow = await cli("get", "-o", "wide", env={**cli.env, "COLUMNS": "30"})
    assert all(len(line) <= 30 for line in narrow.out.splitlines())
    picked = await cli("get", "-o", 'jsonpath={range .items[*]}{.project_name}={.port}{"\\n"}{end}')
    assert picked.code == 0 and all("=" in line for line in picked.out.splitlines()), picked
    pairs = dict(line.split("=") for line in picked.out.splitlines())
    listed = json.loads((await cli("get", "-o", "json")).out)
    assert pairs == {s["project_name"]: str(s["port"]) for s in listed}
    one = await cli("get", "h-one", "-o", "jsonpath={.status}")
    assert one.out.strip() == "active"
    bad = await cli("get", "-o", "jsonpath={.items[?(@.port)]}")
    assert bad.code == 2 and "not in the supported subset" in bad.err


async def test_get_status_is_filtered_by_the_agent(
    cli: Cli, agent: Agent, services: list[str]
) -> None:
    await cli("stop", "h-two")
    try:
        inactive = await cli("get", "--status", "inactive", "-o", "name")
        assert inactive.code == 0
        assert "service/h-two" in inactive.out.split()
        assert "service/h-one" not in inactive.out.split()
    finally:
        assert (await cli("start", "h-two")).code == 0


async def test_logs_tail_since_and_until_take_durations_and_local_times(
    cli: Cli, services: list[str]
) -> None:
    everything = await cli("logs", "h-one", "-o", "json")
    entries = json.loads(everything.out)
    assert len(entries) >= 2, everything
    tail = await cli("logs", "h-one", "--tail", "1", "-o", "json")
    assert json.loads(tail.out) == entries[-1:]
    recent = await cli("logs", "h-one", "--since", "-1h", "-o", "json")
    assert json.loads(recent.out) == entries
    assert json.loads((await cli("logs", "h-one", "--since", "10m", "-o", "json")).out) == entries
    # A local time of Tokyo, with no zone: the CLI reads it in its TZ, as journalctl does.
    tokyo = {**cli.env, "TZ": TOKYO}
    an_hour_ago = (datetime.now(ZoneInfo(TOKYO)) - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")
    since_local = await cli("logs", "h-one", "--since", an_hour_ago, "-o", "json", env=tokyo)
    assert since_local.code == 0, since_local
    assert json.loads(since_local.out) == entries
    until_local = await cli("logs", "h-one", "--until", an_hour_ago, "-o", "json", env=tokyo)
    assert json.loads(until_local.out) == []
    iso = await cli("logs", "h-one", "--until", "2020-01-01T00:00:00Z", "-o", "json")
    assert json.loads(iso.out) == []


async def test_version_shows_client_and_agent(cli: Cli) -> None:
    run = await cli("version", "-o", "json")
    assert run.code == 0, run
    data = run.json()
    assert data["client"] == {"version": __version__, "api_version": API_VERSION}
    assert data["agent"]["api_version"] == API_VERSION
    assert "warning" not in run.err
    table = await cli("version")
    assert table.out.startswith(f"Client:  {__version__} (API {API_VERSION})")


async def test_contexts_choose_the_agent_and_its_token_file(
    cli: Cli, api_url: str, agent: Agent, tmp_path: Path, services: list[str]
) -> None:
    token, _record = agent.accounts.create_token("context")
    token_file = tmp_path / "test.token"
    token_file.write_text(token + "\n")
    env = clean_environment(XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    made = await cli(
        "config", "set-context", "bed", "--url", api_url, "--token-file", str(token_file), env=env
    )
    assert made.code == 0, made
    other = await cli(
        "config", "set-context", "dead", "--url", f"http://127.0.0.1:{free_port()}", env=env
    )
    assert other.code == 0
    assert (
        await cli("--context", "bed", "get", "h-one", "-o", "name", env=env)
    ).out.strip() == "service/h-one"
    assert (await cli("get", "h-one", "--context", "dead", env=env)).code == 5
    assert (await cli("config", "use-context", "bed", env=env)).code == 0
    listed = await cli("config", "get-contexts", env=env)
    assert [line.split()[:2] for line in listed.out.splitlines()[1:]] == [
        ["*", "bed"],
        ["dead", f"http://127.0.0.1:{other.out.split(':')[-1]}".split()[0]],
    ] or "* " in listed.out
    current = await cli("get", "h-one", "-o", "name", env=env)
    assert current.code == 0 and current.out.strip() == "service/h-one"
    unknown = await cli("--context", "nope", "get", env=env)
    assert unknown.code == 2 and "no context 'nope'" in unknown.err


async def test_exit_codes_tell_not_found_unreachable_refused_and_invalid(
    cli: Cli, api_url: str
) -> None:
    assert (await cli("get", "nobody")).code == 4
    assert (
        await cli("get", env={**cli.env, "POCKESTRATOR_URL": f"http://127.0.0.1:{free_port()}"})
    ).code == 5
    refused = await cli("get", env={**cli.env, "POCKESTRATOR_TOKEN": "pks_not-a-real-token"})
    assert refused.code == 6 and "refused the token" in refused.err
    invalid = await cli("token", "create", "x" * 101)
    assert invalid.code == 3, invalid
    assert (await cli("get", "--status", "running")).code == 2


async def bash_complete(env: dict[str, str], line: str) -> list[str]:
    """What bash completes (run as its own process: the agent shares this event loop)."""
    words = line.split(" ")
    script = render("bash", build_parser())
    program = "\n".join(
        [
            script,
            f"COMP_WORDS=({' '.join(repr(w) for w in words)})",
            f"COMP_CWORD={len(words) - 1}",
            "_pockestrator",
            'printf "%s\\n" "${COMPREPLY[@]}"',
        ]
    )
    process = await asyncio.create_subprocess_exec(
        "bash", "-c", program, env=env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0
    return sorted(out.decode().split())


async def test_bash_completes_service_names_from_the_agent(cli: Cli, services: list[str]) -> None:
    import shutil
    import sys

    folder = Path(sys.executable).parent
    assert shutil.which("pockestrator", path=str(folder))
    env = {**cli.env, "PATH": f"{folder}:{cli.env.get('PATH', '')}"}
    assert await bash_complete(env, "pockestrator logs h-t") == ["h-three", "h-two"]
    assert await bash_complete(env, "pockestrator stop h-one h-o") == ["h-one"]


async def test_the_first_token_is_made_on_the_host_without_an_agent_token(
    cli: Cli, agent: Agent, api_url: str, tmp_path: Path, services: list[str]
) -> None:
    env = clean_environment(XDG_CONFIG_HOME=str(tmp_path), POCKESTRATOR_URL=api_url)
    assert (await cli("get", env=env)).code == 6  # no token anywhere yet
    made = await cli(
        "token",
        "create",
        "first",
        "--local",
        "--save",
        "--database",
        str(agent.config.database),
        env=env,
    )
    assert made.code == 0, made
    token = made.out.strip()
    assert token.startswith("pks_") and len(made.out.splitlines()) == 1
    assert (tmp_path / "pockestrator" / "token").read_text() == token + "\n"
    listed = await cli("get", "-o", "name", env=env)
    assert listed.code == 0 and "service/h-one" in listed.out.split()
    missing = await cli(
        "token", "create", "x", "--local", "--database", str(tmp_path / "none.db"), env=env
    )
    assert missing.code == 1 and "no agent database" in missing.err
