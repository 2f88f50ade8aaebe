"""Watch streams and the local socket, on a real agent (systemd, journald, Caddy, PocketBase).

``GET /services?watch=true`` and ``GET /services/{id}?watch=true`` are read as server-sent
events over HTTP, as a client reads them; the changes come from the API and from the
agent's own status writes. The local socket is reached as root (aiohttp, and the real CLI)
and, for the peer check, as two other users of this host through the system's Python:
``nobody``, whose primary group is the socket's group, and ``daemon``, who is in no such
group.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pockestrator.agent.daemon import Agent
from pockestrator.agent.sandbox import Sandbox, free_port
from pockestrator.api.server import start_api
from pockestrator.api.service_routes import watch as watch_module
from pockestrator.client.http import SseEvent, SseParser
from pockestrator.config import AgentConfig
from tests.testbed.api_client import Api, create, wait_running
from tests.testbed.cli_env import clean_environment

MEMBER_GROUP = "nogroup"  # nobody's primary group: nobody is a member, daemon is not
MAX_WATCHES = 4
SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture(scope="module")
def socket_dir() -> AsyncIterator[Path]:
    """A folder others may traverse (the sandbox's runtime folder is root's only)."""
    folder = Path(f"/run/pockestrator-watch-{secrets.token_hex(3)}")
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    yield folder  # type: ignore[misc]
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
async def agent_config(agent_config: AgentConfig, socket_dir: Path) -> AgentConfig:
    return agent_config.model_copy(
        update={
            "api_socket": socket_dir / "api.sock",
            "api_socket_group": MEMBER_GROUP,
            "max_watches": MAX_WATCHES,
        }
    )


@pytest.fixture(scope="module")
async def alpha(api: Api, version: str) -> dict[str, Any]:
    created = await create(api, version, "alpha", description="first")
    await wait_running(api, "alpha")
    return dict(created["service"])


class Stream:
    """One open watch: its events as they arrive (comments counted apart)."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.parser = SseParser()
        self.comments = 0

    async def next(self, timeout: float = 10.0) -> SseEvent:
        while True:
            raw = await asyncio.wait_for(self.response.content.readline(), timeout)
            if not raw:
                raise EOFError("the stream ended")
            line = raw.decode().rstrip("\r\n")
            if line.startswith(":"):
                self.comments += 1
            event = self.parser.feed(line)
            if event is not None:
                return event

    async def until(self, kind: str, timeout: float = 10.0) -> tuple[SseEvent, list[SseEvent]]:
        """Read to the first ``kind`` event; returns it and the events before it."""
        before: list[SseEvent] = []
        while True:
            event = await self.next(timeout)
            if event.event == kind:
                return event, before
            before.append(event)


@contextlib.asynccontextmanager
async def opened(
    api: Api, path: str, last_event_id: str | None = None, expect: int = 200
) -> AsyncIterator[Stream]:
    headers = {"Authorization": f"Bearer {api.token}", "Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    async with api.session.get(
        api.root + path, headers=headers, timeout=aiohttp.ClientTimeout(total=None)
    ) as response:
        assert response.status == expect, await response.text()
        if expect == 200:
            assert response.headers["Content-Type"].startswith("text/event-stream")
        yield Stream(response)


def data(event: SseEvent) -> dict[str, Any]:
    return dict(json.loads(event.data))


def counter(event_id: str | None) -> int:
    assert event_id is not None
    return int(event_id.rpartition("-")[2])


# -- the list watch ----------------------------------------------------------------------


async def test_a_list_watch_sends_every_service_then_synced_with_their_ids(
    api: Api, alpha: dict[str, Any]
) -> None:
    listed = (await api.call("GET", "/services")).body["services"]
    async with opened(api, "/services?watch=true") as stream:
        synced, before = await stream.until("synced")
    assert [e.event for e in before] == ["service"] * len(listed)
    sent = {data(e)["project_name"]: data(e) for e in before}
    assert set(sent) == {s["project_name"] for s in listed}
    # The same shape as the list answers, field for field.
    assert set(sent["alpha"]) == set(listed[0])
    body = data(synced)
    assert body["resource_version"] == synced.id
    assert sorted(body["ids"]) == sorted(s["id"] for s in listed)


async def test_a_spec_change_reaches_a_list_watch_within_100_ms(
    api: Api, alpha: dict[str, Any], agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed = agent.store.changes
    committed: dict[str, float] = {}
    record = feed.record

    def timed(names: Any) -> None:
        names = list(names)
        for name in names:
            committed.setdefault(name, time.monotonic())
        record(names)

    monkeypatch.setattr(feed, "record", timed)
    latencies = []
    async with opened(api, "/services?watch=true") as stream:
        synced, _ = await stream.until("synced")
        for round_ in range(5):
            committed.clear()
            wanted = f"watched {round_}"
            reply = await api.call("PATCH", "/services/alpha", {"description": wanted})
            assert reply.status == 200, reply.body
            while True:
                event = await stream.next()
                if event.event == "service" and data(event)["description"] == wanted:
                    break
            latencies.append(time.monotonic() - committed["alpha"])
            assert counter(event.id) > counter(synced.id)
    latencies.sort()
    print(f"\nwatch latency, store commit to the watcher's read: {latencies} s")
    # A benchmark figure (see the print), bounded generously: event-driven, not polled.
    assert latencies[len(latencies) // 2] < 1.0


async def test_a_status_change_alone_sends_the_service_again(
    api: Api, alpha: dict[str, Any], agent: Agent
) -> None:
    # The agent writes alpha's status too (every reconcile), so what the watch reads
    # when woken may already be a later write: the test waits for an event at or past the
    # version of its own write, not for its own text.
    async with opened(api, "/services?watch=true") as stream:
        await stream.until("synced")
        generation = agent.store.get_service("alpha").generation  # type: ignore[union-attr]
        agent.store.update_status("alpha", last_error="a status written by the test")
        written = agent.store.changes.version
        try:
            while True:
                event = await stream.next(timeout=30.0)
                body = data(event)
                if body.get("project_name") == "alpha" and counter(event.id) >= written:
                    break
        finally:
            agent.store.update_status("alpha", last_error=None)
    assert event.event == "service"
    assert body["generation"] == generation


async def test_a_watch_resumed_with_last_event_id_sends_only_what_changed_since(
    api: Api, alpha: dict[str, Any]
) -> None:
    async with opened(api, "/services?watch=true") as stream:
        synced, _ = await stream.until("synced")
    reply = await api.call("PATCH", "/services/alpha", {"description": "while away"})
    assert reply.status == 200
    async with opened(api, "/services?watch=true", last_event_id=synced.id) as stream:
        first = await stream.next()
    assert first.event == "service"
    assert data(first)["project_name"] == "alpha"
    assert data(first)["description"] == "while away"
    assert counter(first.id) > counter(synced.id)


async def test_an_id_from_another_run_of_the_agent_gets_the_whole_state_again(
    api: Api, alpha: dict[str, Any]
) -> None:
    async with opened(api, "/services?watch=true", last_event_id="0badc0de-7") as stream:
        synced, before = await stream.until("synced")
    assert "alpha" in {data(e)["project_name"] for e in before}
    assert synced.id is not None and not synced.id.startswith("0badc0de-")


async def test_a_filtered_list_watch_says_deleted_when_a_service_leaves_the_filter(
    api: Api, alpha: dict[str, Any], agent: Agent
) -> None:
    async with opened(api, "/services?watch=true&status=active") as stream:
        _, before = await stream.until("synced")
        assert "alpha" in {data(e)["project_name"] for e in before}
        agent.store.update_status("alpha", state="error")
        try:
            gone, _ = await stream.until("deleted")
        finally:
            agent.store.update_status("alpha", state="active")
        back = await stream.next()
    assert data(gone) == {"id": alpha["id"], "project_name": "alpha"}
    assert back.event == "service" and data(back)["status"] == "active"


async def test_heartbeats_keep_an_idle_watch_open(
    api: Api, alpha: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watch_module, "KEEPALIVE_SECONDS", 0.2)
    async with opened(api, "/services?watch=true") as stream:
        await stream.until("synced")
        heartbeats = 0
        async with asyncio.timeout(10):
            while heartbeats < 3:
                raw = await stream.response.content.readline()
                assert raw, "the stream ended"
                heartbeats += raw.startswith(b": heartbeat")
    assert heartbeats == 3


async def test_watches_past_max_watches_are_refused_with_503_until_one_closes(
    api: Api, alpha: dict[str, Any]
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(MAX_WATCHES):
            stream = await stack.enter_async_context(opened(api, "/services?watch=true"))
            await stream.until("synced")
        refused = await api.call("GET", "/services", params={"watch": "true"})
        assert refused.status == 503
        assert refused.body["code"] == "TOO_MANY_STREAMS"
        assert refused.headers["Retry-After"]

    async def reopens() -> bool:
        with contextlib.suppress(AssertionError):
            async with opened(api, "/services?watch=true") as stream:
                await stream.until("synced")
                return True
        return False

    # The server frees a slot once it sees the client go (its handler is cancelled).
    for _ in range(50):
        if await reopens():
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("no watch could open after the others closed")


# -- one service -------------------------------------------------------------------------


async def test_a_single_watch_sends_the_get_answer_then_deleted_and_ends(
    api: Api, version: str
) -> None:
    created = await create(api, version, "brief")
    got = (await api.call("GET", "/services/brief")).body
    async with opened(api, "/services/brief?watch=true") as stream:
        first = await stream.next()
        assert first.event == "service"
        assert set(data(first)) == set(got)
        assert data(first)["service"]["id"] == created["service"]["id"]
        reply = await api.call("DELETE", "/services/brief", params={"wait": "false"})
        assert reply.status in (200, 202), reply.body
        gone, _ = await stream.until("deleted")
        assert data(gone) == {"id": created["service"]["id"], "project_name": "brief"}
        with pytest.raises(EOFError):
            await stream.next()


async def test_a_single_watch_of_an_unknown_service_is_404(api: Api) -> None:
    async with opened(api, "/services/nosuch?watch=true", expect=404):
        pass


# -- the local socket --------------------------------------------------------------------


async def test_root_on_the_socket_is_an_operator_without_a_token(
    agent: Agent, alpha: dict[str, Any]
) -> None:
    path = agent.config.api_socket
    assert path is not None
    mode = path.stat().st_mode
    assert mode & 0o777 == 0o660
    assert path.stat().st_gid == int(_getent_gid(MEMBER_GROUP))
    connector = aiohttp.UnixConnector(path=str(path))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get("http://localhost/api/pockestrator/services") as response,
    ):
        assert response.status == 200
        body = await response.json()
    assert "alpha" in {s["project_name"] for s in body["services"]}


async def test_a_write_on_the_socket_is_recorded_as_the_local_operators(
    agent: Agent, version: str
) -> None:
    path = agent.config.api_socket
    assert path is not None
    body = {"project_name": "by-socket", "port": free_port(), "pocketbase_version": version}
    connector = aiohttp.UnixConnector(path=str(path))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post("http://localhost/api/pockestrator/services", json=body) as response,
    ):
        answer = await response.json()
    assert response.status == 201, answer
    assert answer["service"]["created_by"] == "root (local socket)"
    async with (
        aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(path))) as session,
        session.delete("http://localhost/api/pockestrator/services/by-socket") as response,
    ):
        assert response.status in (200, 202), await response.text()


def _getent_gid(group: str) -> str:
    line = subprocess.run(
        ["getent", "group", group], capture_output=True, text=True, check=True
    ).stdout
    return line.split(":")[2]


_PEER_CLIENT = """
import http.client, json, socket, sys
class Conn(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(sys.argv[1])
try:
    conn = Conn("localhost", timeout=10)
    conn.request("GET", "/api/pockestrator/services")
    answer = conn.getresponse()
    print(json.dumps({"status": answer.status, "body": json.loads(answer.read())}))
except OSError as exc:
    print(json.dumps({"errno": exc.errno}))
"""


def as_user(user: str, path: Path) -> dict[str, Any]:
    """What ``user`` gets from the socket, through the system's Python (no token)."""
    account = pwd.getpwnam(user)
    done = subprocess.run(
        [
            "setpriv",
            f"--reuid={account.pw_uid}",
            f"--regid={account.pw_gid}",
            "--init-groups",
            SYSTEM_PYTHON,
            "-c",
            _PEER_CLIENT,
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return dict(json.loads(done.stdout))


@pytest.fixture
def widened(agent: Agent) -> AsyncIterator[Path]:
    """The socket opened to everyone (a mode mistake), to reach the peer check itself."""
    path = agent.config.api_socket
    assert path is not None
    path.chmod(0o666)
    yield path  # type: ignore[misc]
    path.chmod(0o660)


@pytest.mark.skipif(not Path(SYSTEM_PYTHON).exists(), reason="no system python3")
async def test_a_member_of_the_group_is_an_operator_and_a_non_member_cannot_connect(
    agent: Agent, alpha: dict[str, Any]
) -> None:
    path = agent.config.api_socket
    assert path is not None
    member = await asyncio.to_thread(as_user, "nobody", path)
    assert member["status"] == 200, member
    assert "alpha" in {s["project_name"] for s in member["body"]["services"]}
    # The file's mode stops a non-member before the agent even sees them.
    stranger = await asyncio.to_thread(as_user, "daemon", path)
    assert stranger == {"errno": 13}


@pytest.mark.skipif(not Path(SYSTEM_PYTHON).exists(), reason="no system python3")
async def test_a_non_member_who_reaches_the_socket_is_refused_by_peer_credentials(
    agent: Agent, alpha: dict[str, Any], widened: Path
) -> None:
    stranger = await asyncio.to_thread(as_user, "daemon", widened)
    assert stranger["status"] == 403, stranger
    assert stranger["body"]["code"] == "PEER_NOT_ALLOWED"
    assert stranger["body"]["errors"][0]["field"] == "peer"
    assert "daemon" in stranger["body"]["message"]


# -- the CLI -----------------------------------------------------------------------------


@dataclass
class Cli:
    env: dict[str, str]

    async def start(self, *args: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "pockestrator",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )


@pytest.fixture(scope="module")
def cli(agent: Agent, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """The CLI with no URL and no token: only the socket's path (the agent's default
    /run/pockestrator/api.sock is not this test agent's)."""
    env = clean_environment()
    env["POCKESTRATOR_SOCKET"] = str(agent.config.api_socket)
    env["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("cli-watch"))
    return Cli(env)


async def test_the_cli_uses_the_socket_with_no_token(cli: Cli, alpha: dict[str, Any]) -> None:
    process = await cli.start("get", "-o", "json")
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    assert "alpha" in {s["project_name"] for s in json.loads(out)}


async def test_get_w_prints_the_table_then_a_line_per_change(
    cli: Cli, api: Api, alpha: dict[str, Any]
) -> None:
    process = await cli.start("get", "-w")
    assert process.stdout is not None
    try:
        header = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert header.split()[:2] == ["NAME", "STATUS"]
        lines = []
        while not any(line.startswith("alpha ") for line in lines):
            lines.append((await asyncio.wait_for(process.stdout.readline(), 30)).decode())
        reply = await api.call("PATCH", "/services/alpha", {"description": "seen by get -w"})
        assert reply.status == 200
        changed = ""
        while not changed.startswith("alpha "):  # another service's change is a line too
            changed = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
            assert changed and not changed.startswith("NAME"), changed
        # The columns keep the widths of the table above.
        assert changed.index(changed.split()[1]) == header.index("STATUS")
    finally:
        process.send_signal(signal.SIGINT)
        await asyncio.wait_for(process.communicate(), 30)


async def test_get_w_of_one_service_prints_it_then_its_changes_as_json_lines(
    cli: Cli, api: Api, alpha: dict[str, Any], sandbox: Sandbox
) -> None:
    process = await cli.start("get", "alpha", "-w", "-o", "json")
    assert process.stdout is not None
    try:
        first = json.loads(await asyncio.wait_for(process.stdout.readline(), 30))
        assert first["project_name"] == "alpha"
        reply = await api.call("PATCH", "/services/alpha", {"description": "json line"})
        assert reply.status == 200
        while True:
            line = json.loads(await asyncio.wait_for(process.stdout.readline(), 30))
            if line["description"] == "json line":
                break
    finally:
        process.send_signal(signal.SIGINT)
        await asyncio.wait_for(process.communicate(), 30)


async def test_apply_wait_follows_the_stream_instead_of_re_reading_the_list(
    cli: Cli, agent: Agent, version: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    store = agent.store
    paged: list[int | None] = []
    listed = store.list_services

    def counted(**kwargs: Any) -> Any:
        if kwargs.get("limit") is not None:  # the list answer; a watch reads unpaged
            paged.append(kwargs["limit"])
        return listed(**kwargs)

    monkeypatch.setattr(store, "list_services", counted)

    async def answered_at_once(name: str, timeout: float) -> bool:
        return False

    # The write is answered before its reconcile, so the CLI has to wait for it itself.
    monkeypatch.setattr(agent, "wait_reconciled", answered_at_once)
    spec = tmp_path / "follow.yaml"
    spec.write_text(
        json.dumps({"project_name": "follow", "port": free_port(), "pocketbase_version": version})
    )
    started = time.monotonic()
    process = await cli.start("apply", "-f", str(spec), "--wait", "--timeout", "120")
    _out, err = await asyncio.wait_for(process.communicate(), 150)
    took = time.monotonic() - started
    assert process.returncode == 0, err.decode()
    assert agent.store.get_status("follow").state == "active"  # type: ignore[union-attr]
    # One read of the list to plan the apply; none while waiting, however long that was.
    print(f"\napply --wait took {took:.2f} s, {len(paged)} paged list read(s)")
    assert len(paged) == 1, (paged, took)


class _OnAnotherSocket:
    """The module's agent as the API sees it, but with another socket and port."""

    def __init__(self, agent: Agent, config: AgentConfig) -> None:
        self._agent = agent
        self.config = config

    def __getattr__(self, name: str) -> Any:
        return getattr(self._agent, name)


async def test_the_socket_file_goes_with_the_api_and_a_stale_one_is_replaced(
    agent: Agent, socket_dir: Path
) -> None:
    """Stale socket files of a killed run do not stop the API, and a clean stop removes
    its socket (a CLI then finds none, not a dead one)."""
    path = socket_dir / "second.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # a socket file nobody listens on, as a killed agent leaves it
    config = agent.config.model_copy(update={"api_socket": path, "listen_port": free_port()})
    runner = await start_api(_OnAnotherSocket(agent, config))  # type: ignore[arg-type]
    try:
        assert stat.S_ISSOCK(path.stat().st_mode)
        connector = aiohttp.UnixConnector(path=str(path))
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.get("http://localhost/api/pockestrator/services") as response,
        ):
            assert response.status == 200
    finally:
        await runner.cleanup()
    assert not path.exists()
