"""Version downgrades, crash loops and the plain-HTTP catch-all, on a real agent.

The test bed is conftest's (HTTP only). A downgrade goes through the API between two real
PocketBase releases from the mirror; a crash loop is a real PocketBase that cannot bind
its port, restarted by systemd until its start limit is hit.
"""

from __future__ import annotations

import socket
from typing import Any

from pockestrator.agent.daemon import Agent
from pockestrator.agent.sandbox import Sandbox, free_port
from tests.testbed.api_client import Api, create, wait_running
from tests.testbed.waiting import http_get, wait_for_pocketbase, wait_until


async def status_of(api: Api, name: str) -> dict[str, Any]:
    reply = await api.call("GET", f"/services/{name}/status")
    assert reply.status == 200, reply.body
    return dict(reply.body)


async def wait_deployed(api: Api, name: str, version: str, timeout: float = 60) -> None:
    latest: dict[str, Any] = {}

    async def deployed() -> bool:
        latest.update(await status_of(api, name))
        return bool(
            latest["state"] == "active"
            and latest["is_running"]
            and latest["deployed_version"] == version
        )

    assert await wait_until(deployed, timeout, 0.2), latest


async def events_of(api: Api, name: str) -> list[dict[str, Any]]:
    reply = await api.call("GET", f"/services/{name}/events", params={"limit": "100"})
    assert reply.status == 200, reply.body
    return list(reply.body["events"])


# -- the catch-all over plain HTTP ----------------------------------------------------------


async def test_an_unknown_host_gets_404_and_a_text_instead_of_an_empty_200(
    agent: Agent, sandbox: Sandbox
) -> None:
    async def caught() -> bool:
        answer = await http_get(f"{sandbox.caddy_url}/api/health", "nobody.localhost")
        return answer == (404, "No service has this domain.")

    assert await wait_until(caught, 15, 0.1)


# -- downgrades ----------------------------------------------------------------------------


async def test_a_downgrade_is_refused_unless_allowed_and_then_restores_the_older_data(
    api: Api, agent: Agent, sandbox: Sandbox, pocketbase_versions: tuple[str, str]
) -> None:
    older, newer = pocketbase_versions
    created = await create(api, older, "rewind")
    await wait_running(api, "rewind")
    reply = await api.call("PATCH", "/services/rewind", {"pocketbase_version": newer})
    assert reply.status == 200, reply.body
    await wait_deployed(api, "rewind", newer)
    # Written after the upgrade: it must not be in the data the older version gets back.
    data = agent.config.base_dir / "rewind" / "pb_data"
    marker = data / "written-by-the-newer-version"
    marker.write_text("newer\n")

    refused = await api.call("PATCH", "/services/rewind", {"pocketbase_version": older})
    assert refused.status == 400, refused.body
    assert refused.codes() == {"pocketbase_version": "VERSION_DOWNGRADE"}
    message = " ".join(item["message"] for item in refused.body["errors"])
    assert "allow_downgrade" in message and f"the upgrade from {older}" in message
    detail = (await api.call("GET", "/services/rewind")).body["service"]
    assert detail["pocketbase_version"] == newer and detail["deployed_version"] == newer

    allowed = await api.call(
        "PATCH", "/services/rewind", {"pocketbase_version": older, "allow_downgrade": True}
    )
    assert allowed.status == 200, allowed.body
    await wait_deployed(api, "rewind", older)

    assert await wait_for_pocketbase(f"http://127.0.0.1:{created['service']['port']}")
    assert not marker.exists()
    # The newer data was set aside as a backup of its own, not deleted.
    backups = agent.config.base_dir / ".backups" / "rewind"
    kept = list(backups.glob(f"pb_data-{newer}-*"))
    assert len(kept) == 1 and (kept[0] / marker.name).read_text() == "newer\n"
    messages = [event["message"] for event in await events_of(api, "rewind")]
    assert any("pb_data restored from" in message for message in messages), messages
    assert any(
        message.startswith(f"downgrading PocketBase {newer} -> {older}") for message in messages
    ), messages


async def test_a_downgrade_with_no_backup_of_that_version_is_refused_even_when_allowed(
    api: Api, pocketbase_versions: tuple[str, str]
) -> None:
    older, newer = pocketbase_versions
    await create(api, newer, "no-past")
    await wait_running(api, "no-past")

    reply = await api.call(
        "PATCH", "/services/no-past", {"pocketbase_version": older, "allow_downgrade": True}
    )

    assert reply.status == 400, reply.body
    assert reply.codes() == {"pocketbase_version": "VERSION_DOWNGRADE"}
    assert "no backup" in reply.body["errors"][0]["message"]


# -- crash loops ---------------------------------------------------------------------------


async def test_a_crash_loop_is_reported_as_such_and_an_operators_restart_ends_it(
    api: Api, pocketbase_versions: tuple[str, str]
) -> None:
    port = free_port()
    await create(api, pocketbase_versions[1], "looping", port=port, desired_state="stopped")
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", port))
    squatter.listen()
    try:
        # PocketBase cannot listen, exits, and systemd restarts it until its start limit.
        await api.call("POST", "/services/looping/control", {"action": "start"})
        latest: dict[str, Any] = {}

        async def looping() -> bool:
            latest.update(await status_of(api, "looping"))
            return str(latest["error_message"]).startswith("crash loop")

        assert await wait_until(looping, 60, 0.5), latest
        assert latest["state"] == "error" and not latest["is_running"]
        events = await events_of(api, "looping")
        assert [event["kind"] for event in events].count("crash_loop") == 1, events
    finally:
        squatter.close()

    restarted = await api.call("POST", "/services/looping/control", {"action": "restart"})
    assert restarted.status == 200, restarted.body
    await wait_running(api, "looping")
