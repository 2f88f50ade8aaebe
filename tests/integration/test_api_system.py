"""System endpoints on a real agent: info with a real uptime, and health and system
validation that change when the host really changes (Caddy stopped, a directory that
cannot be written, a missing Caddyfile or Caddy binary)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import aiohttp
import pytest

from pockestrator import __version__
from pockestrator.agent.daemon import Agent
from pockestrator.api.reachability import is_local_address, resolves_here


class Client:
    def __init__(self, session: aiohttp.ClientSession, agent: Agent, token: str) -> None:
        self.session = session
        self.root = f"http://{agent.config.listen_host}:{agent.config.listen_port}/api/pockestrator"
        self.token = token

    async def get(self, path: str) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with self.session.get(self.root + path, headers=headers) as response:
            return response.status, json.loads(await response.text())


@pytest.fixture(scope="module")
async def client(agent: Agent) -> AsyncIterator[Client]:
    token, _record = agent.accounts.create_token("system tests")
    async with aiohttp.ClientSession() as session:
        yield Client(session, agent, token)


def codes(problems: list[dict[str, str]]) -> set[str]:
    return {problem["code"] for problem in problems}


@contextmanager
def reconfigured(agent: Agent, **changes: Any) -> Iterator[None]:
    """What a SIGHUP reload does to ``agent.config``, undone afterwards."""
    saved = agent.config
    agent.config = saved.model_copy(update=changes)
    try:
        yield
    finally:
        agent.config = saved


async def test_system_info_shows_version_real_uptime_and_configuration(
    client: Client, agent: Agent
) -> None:
    status, first = await client.get("/system/info")
    assert status == 200
    assert first["version"] == __version__
    assert datetime.fromisoformat(first["started_at"].replace("Z", "+00:00")) == agent.started_at
    assert re.fullmatch(r"(\d+h)?(\d+m)?\d+s", first["uptime"])
    config = agent.config
    assert first["config"] == {
        "base_dir": str(config.base_dir),
        "systemd_dir": str(config.systemd_dir),
        "caddy_config": str(config.caddy_config),
        "default_domain": config.default_domain,
        "caddy_sites_dir": str(config.caddy_sites_dir),
        "spec_dir": str(config.spec_dir),
        "systemd_manager": "user",
        "release_source": "mirror",
        "listen": f"{config.listen_host}:{config.listen_port}",
    }
    # This module creates no service, so the agent has nothing to reconcile: no key can be
    # waiting in its queue (the queue's own depth is tested in tests/unit/test_workqueue.py).
    assert agent.store.service_names() == []
    assert (first["services"], first["queue_depth"]) == (0, 0)
    await asyncio.sleep(1.1)
    _status, second = await client.get("/system/info")
    # Real time: at least the pause, more on a loaded machine.
    assert second["uptime_seconds"] - first["uptime_seconds"] >= 1.0


async def test_a_healthy_host_answers_200_with_every_check_true(client: Client) -> None:
    status, health = await client.get("/system/health")
    assert status == 200, health
    assert health["healthy"] is True
    assert health["errors"] == [] and health["warnings"] == []
    assert all(health["checks"].values()), health["checks"]
    status, validation = await client.get("/validate/system")
    assert status == 200
    assert validation["is_valid"] is True
    assert validation["checks"]["required_tools"] == {
        "systemctl": True,
        "journalctl": True,
        "caddy": True,
    }
    assert all(v for k, v in validation["checks"].items() if k != "required_tools")


async def test_a_stopped_caddy_makes_the_host_unhealthy_503(client: Client, agent: Agent) -> None:
    caddy = agent.config.caddy_unit
    await agent.bus.stop_unit(caddy)
    try:
        status, health = await client.get("/system/health")
        assert status == 503
        assert health["healthy"] is False
        assert "CADDY_NOT_RUNNING" in codes(health["errors"])
        assert health["checks"]["caddy"] is False and health["checks"]["caddy_running"] is False
        assert health["checks"]["systemd"] is True
        _status, validation = await client.get("/validate/system")
        assert validation["is_valid"] is False
        assert validation["checks"]["caddy_running"] is False
    finally:
        await agent.bus.start_unit(caddy)
    status, _health = await client.get("/system/health")
    assert status == 200


async def test_a_base_directory_that_cannot_be_written_is_reported(
    client: Client, agent: Agent
) -> None:
    base = agent.config.base_dir
    moved = base.with_name(base.name + ".moved")
    base.rename(moved)
    base.write_text("a file where the directory should be")
    try:
        status, health = await client.get("/system/health")
        assert status == 503
        assert "BASE_DIR_NOT_WRITABLE" in codes(health["errors"])
        assert health["checks"]["permissions"] is False
        assert health["checks"]["base_dir_writable"] is False
        _status, validation = await client.get("/validate/system")
        assert validation["checks"]["base_directory_writable"] is False
        assert "BASE_DIR_NOT_WRITABLE" in codes(validation["errors"])
    finally:
        base.unlink()
        moved.rename(base)
    assert (await client.get("/system/health"))[0] == 200


async def test_a_missing_caddyfile_is_a_warning(client: Client, agent: Agent) -> None:
    caddyfile = agent.config.caddy_config
    moved = caddyfile.with_name(caddyfile.name + ".moved")
    caddyfile.rename(moved)
    try:
        status, health = await client.get("/system/health")
        assert status == 200
        assert codes(health["warnings"]) == {"CADDYFILE_NOT_WRITABLE"}
        assert health["checks"]["caddyfile_writable"] is False
        _status, validation = await client.get("/validate/system")
        assert validation["checks"]["caddy_writable"] is False
    finally:
        moved.rename(caddyfile)


async def test_a_missing_caddy_binary_is_reported_as_the_reference_says(
    client: Client, agent: Agent
) -> None:
    with reconfigured(agent, caddy_binary="/nonexistent/caddy"):
        _status, health = await client.get("/system/health")
        assert "MISSING_CADDY" in codes(health["warnings"])
        assert health["checks"]["caddy_binary"] is False and health["checks"]["caddy"] is False
        _status, validation = await client.get("/validate/system")
        assert validation["checks"]["caddy_available"] is False
        assert validation["checks"]["required_tools"]["caddy"] is False
    _status, health = await client.get("/system/health")
    assert health["checks"]["caddy_binary"] is True


async def test_a_name_resolves_here_only_when_it_points_at_this_host() -> None:
    assert await resolves_here("localhost")
    assert not await resolves_here("no-such-name.invalid")
    assert is_local_address("127.0.0.1") and is_local_address("::1")
    assert not is_local_address("192.0.2.1")  # TEST-NET-1: never on a host
    assert not is_local_address("0.0.0.0")
    assert not is_local_address("not an address")


async def test_releases_lists_deployable_versions_newest_first(
    client: Client, pocketbase_versions: tuple[str, str]
) -> None:
    older, newer = pocketbase_versions
    status, body = await client.get("/releases")
    assert status == 200
    assert body["available"] is True and body["error"] is None
    assert body["source"] == "mirror"
    assert body["latest"] == newer
    assert body["versions"].index(newer) < body["versions"].index(older)


async def test_releases_fall_back_to_the_cache_when_the_index_is_unreachable(
    client: Client, agent: Agent
) -> None:
    from pockestrator.controllers.releases import ReleaseCache, seed_from_installed

    unreachable = agent.config.model_copy(
        update={
            "release_index_url": "http://127.0.0.1:9/none",
            "release_index_ttl": 0,
            "release_cache_dir": agent.config.base_dir.parent / "empty-release-cache",
        }
    )
    saved = agent.host.releases
    agent.host.releases = ReleaseCache(unreachable)  # what the API's host view answers from
    try:
        status, nothing = await client.get("/releases")
        seeded = seed_from_installed(unreachable.release_cache_dir)
        _, cached = await client.get("/releases")
    finally:
        await agent.host.releases.close()
        agent.host.releases = saved
    assert status == 200
    assert nothing["available"] is False and nothing["versions"] == []
    assert "127.0.0.1:9" in nothing["error"]
    assert cached["versions"] == [seeded] and cached["latest"] == seeded
