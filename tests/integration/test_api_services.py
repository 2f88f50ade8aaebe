"""The services API on a real agent: real systemd, journald, Caddy and PocketBase.

Every call goes over HTTP to the agent's own API with a token the store created (as
`pockestrator up` does). Services are created through the API and checked on the host:
systemd's answer over D-Bus, the process in /proc, PocketBase through Caddy, the journal,
the unit file and the service directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from pockestrator.agent.daemon import Agent
from pockestrator.agent.sandbox import Sandbox, free_port
from pockestrator.api.log_routes import KEEPALIVE_SECONDS
from pockestrator.api.models.services import RuntimeStatus
from pockestrator.api.routing import STREAMS
from pockestrator.api.server import build_app
from tests.testbed.api_client import JSON_TYPE, Api, create, read_sse, wait_running
from tests.testbed.journal import journalctl_followers
from tests.testbed.waiting import wait_for_pocketbase, wait_until


@pytest.fixture(scope="module")
async def alpha(api: Api, newer: str, sandbox: Sandbox) -> dict[str, Any]:
    """One running service most tests read (they leave it running)."""
    created = await create(api, newer, "alpha", description="the first one")
    await wait_running(api, "alpha")
    return dict(created["service"])


def proc_environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


# -- create -----------------------------------------------------------------------------


async def test_a_created_service_answers_201_with_both_reference_shapes_and_becomes_active(
    api: Api, newer: str, sandbox: Sandbox
) -> None:
    port = free_port()
    body = {"project_name": "fresh", "port": port, "pocketbase_version": newer, "description": "x"}
    reply = await api.call("POST", "/services", body)
    assert reply.status == 201
    created = reply.body
    assert created["status"] == "success"
    assert created["message"] == "Service created successfully"
    assert created["id"] == created["data"]["id"] == created["service"]["id"]
    assert created["data"] == created["service"]
    service = created["service"]
    assert service["project_name"] == "fresh"
    assert service["port"] == port
    assert service["pocketbase_version"] == newer
    assert service["domain"] == "fresh.localhost"
    assert service["status"] == "deploying"
    assert service["created_by"] == "integration tests"
    assert service["source"] == "api" and service["source_file"] is None
    assert created["systemd"] == {"service_name": "fresh-pocketbase.service", "status": "pending"}
    assert created["caddy"] == {"domain": "fresh.localhost", "status": "pending"}
    assert "superuser_password" not in created

    status = await wait_running(api, "fresh")
    assert status["systemd_status"] == "active"
    assert await wait_for_pocketbase(sandbox.caddy_url, host="fresh.localhost")
    detail = await api.call("GET", "/services/fresh")
    assert detail.body["service"]["status"] == "active"
    assert re.fullmatch(r"[0-9a-f]{12}", detail.body["service"]["systemd_config_hash"])
    assert re.fullmatch(r"[0-9a-f]{12}", detail.body["service"]["caddy_config_hash"])


async def test_the_superuser_password_is_shown_once_never_logged_and_pocketbase_accepts_it(
    api: Api, newer: str, capfd: pytest.CaptureFixture[str]
) -> None:
    created = await create(api, newer, "beta", superuser_email="admin@beta.example")
    password = created["superuser_password"]
    assert isinstance(password, str) and len(password) >= 20
    port = created["service"]["port"]
    await wait_running(api, "beta")
    async with aiohttp.ClientSession() as session:
        login = f"http://127.0.0.1:{port}/api/collections/_superusers/auth-with-password"
        async with session.post(
            login, json={"identity": "admin@beta.example", "password": password}
        ) as response:
            assert response.status == 200, await response.text()
            assert (await response.json())["token"]
        async with session.post(
            login, json={"identity": "admin@beta.example", "password": password + "x"}
        ) as response:
            assert response.status == 400
    for path in ("/services/beta", "/services", "/services/beta/events?limit=100"):
        reply = await api.call("GET", path)
        assert password not in json.dumps(reply.body)
    captured = capfd.readouterr()
    assert password not in captured.out + captured.err


async def test_taken_names_and_ports_are_refused_with_every_problem_in_both_shapes(
    api: Api, newer: str, alpha: dict[str, Any], agent: Agent
) -> None:
    reply = await api.call(
        "POST",
        "/services",
        {"project_name": "alpha", "port": alpha["port"], "pocketbase_version": newer},
    )
    assert reply.status == 400
    assert reply.body["status"] == "error" and reply.body["id"] == ""
    assert reply.body["error"] == reply.body["message"] == "Validation failed"
    assert reply.codes() == {
        "project_name": "DUPLICATE_PROJECT_NAME",
        "port": "PORT_IN_USE",
        "domain": "DOMAIN_IN_USE",
    }
    assert set(reply.body["details"]) == {"project_name", "port", "domain"}
    assert all(isinstance(messages, list) for messages in reply.body["details"].values())

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        busy = listener.getsockname()[1]
        reply = await api.call(
            "POST",
            "/services",
            {"project_name": "squatter", "port": busy, "pocketbase_version": newer},
        )
    assert reply.status == 400
    assert reply.codes() == {"port": "PORT_IN_USE"}
    assert "another process" in reply.body["details"]["port"][0]

    own = agent.config.listen_port
    reply = await api.call(
        "POST", "/services", {"project_name": "selfish", "port": own, "pocketbase_version": newer}
    )
    assert reply.codes() == {"port": "PORT_RESERVED"}
    assert (
        agent.store.get_service("squatter") is None and agent.store.get_service("selfish") is None
    )


@pytest.mark.parametrize(
    ("payload", "content_type", "status", "field", "code"),
    [
        (b"not json", JSON_TYPE, 400, "body", "INVALID_JSON"),
        (b"[1, 2]", JSON_TYPE, 400, "body", "NOT_A_MAPPING"),
        (
            b'{"project_name": "a", "project_name": "b"}',
            JSON_TYPE,
            400,
            "project_name",
            "DUPLICATE_KEY",
        ),
        (b"{}", "text/plain", 415, "Content-Type", "UNSUPPORTED_MEDIA_TYPE"),
        (b"{" + b" " * (2 * 1024 * 1024) + b"}", JSON_TYPE, 413, "body", "PAYLOAD_TOO_LARGE"),
    ],
)
async def test_malformed_bodies_get_a_4xx_with_field_and_code(
    api: Api, payload: bytes, content_type: str, status: int, field: str, code: str
) -> None:
    reply = await api.call("POST", "/services", raw=payload, content_type=content_type)
    assert reply.status == status
    assert reply.codes() == {field: code}
    assert reply.body["details"][field]


@pytest.mark.parametrize(
    ("fields", "problems"),
    [
        ({"project_name": "Bad_Name"}, {"project_name": "INVALID_CHARACTERS"}),
        ({"project_name": "admin"}, {"project_name": "RESERVED_NAME"}),
        ({"port": "8080"}, {"port": "INVALID_TYPE"}),
        ({"port": 80}, {"port": "PORT_OUT_OF_RANGE"}),
        ({"pocketbase_version": "0.0.1"}, {"pocketbase_version": "VERSION_NOT_FOUND"}),
        ({"domain": "not a domain"}, {"domain": "INVALID_DOMAIN"}),
        ({"superuser_password_file": "/etc/shadow"}, {"superuser_password_file": "UNKNOWN_FIELD"}),
        ({"env": {"lower": "x"}}, {"env.lower": "INVALID_ENV_NAME"}),
        ({"resources": {"memory_max": "1M"}}, {"resources.memory_max": "INVALID_MEMORY_LIMIT"}),
        ({"flags": {"http": "0.0.0.0:80"}}, {"flags.http": "FLAG_NOT_ALLOWED"}),
    ],
)
async def test_invalid_specs_are_refused_with_the_stable_codes(
    api: Api, newer: str, fields: dict[str, Any], problems: dict[str, str], agent: Agent
) -> None:
    body = {"project_name": "invalid", "port": free_port(), "pocketbase_version": newer, **fields}
    reply = await api.call("POST", "/services", body)
    assert reply.status == 400
    assert reply.codes() == problems
    assert agent.store.get_service(str(body["project_name"])) is None


# -- read -------------------------------------------------------------------------------


async def test_services_are_listed_filtered_and_paged_with_a_total(
    api: Api, alpha: dict[str, Any], agent: Agent
) -> None:
    everything = await api.call("GET", "/services")
    assert everything.status == 200
    names = [service["project_name"] for service in everything.body["services"]]
    assert names == agent.store.service_names()  # every service, sorted by name
    assert "alpha" in names
    total = everything.body["total"]
    assert total == len(agent.store.service_names()) == len(names)
    assert (everything.body["limit"], everything.body["offset"]) == (50, 0)

    first = await api.call("GET", "/services", params={"limit": "1"})
    second = await api.call("GET", "/services", params={"limit": "1", "offset": "1"})
    assert [s["project_name"] for s in first.body["services"]] == names[:1]
    assert [s["project_name"] for s in second.body["services"]] == names[1:2]
    assert first.body["total"] == second.body["total"] == total

    by_domain = await api.call("GET", "/services", params={"domain": "ALPHA.localhost."})
    assert [s["project_name"] for s in by_domain.body["services"]] == ["alpha"]
    for nobodys in ("", "bad domain", "alpha", "\u0013x.localhost"):
        none = await api.call("GET", "/services", params={"domain": nobodys})
        assert none.status == 200, nobodys
        assert (none.body["services"], none.body["total"]) == ([], 0), nobodys
    active = await api.call("GET", "/services", params={"status": "active"})
    assert active.body["services"] and all(s["status"] == "active" for s in active.body["services"])
    largest = await api.call("GET", "/services", params={"limit": "500"})
    assert largest.status == 200 and largest.body["limit"] == 500

    for params, field, code in [
        ({"status": "running"}, "status", "INVALID_VALUE"),
        ({"limit": "0"}, "limit", "INVALID_VALUE"),
        ({"limit": "501"}, "limit", "INVALID_VALUE"),
        ({"limit": "ten"}, "limit", "INVALID_TYPE"),
        ({"offset": "-1"}, "offset", "INVALID_TYPE"),
        ({"offset": "12345678901"}, "offset", "INVALID_TYPE"),
    ]:
        reply = await api.call("GET", "/services", params=params)
        assert reply.status == 400, params
        assert reply.codes() == {field: code}, params
    twice = await api.call("GET", "/services?limit=1&limit=2")
    assert twice.status == 400 and twice.codes() == {"limit": "INVALID_VALUE"}


def without_probe_time(service: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in service.items() if key != "last_health_check"}


async def test_a_service_is_found_by_id_and_by_name_with_its_runtime_status(
    api: Api, alpha: dict[str, Any]
) -> None:
    by_name = await api.call("GET", "/services/alpha")
    by_id = await api.call("GET", f"/services/{alpha['id']}")
    assert by_name.status == by_id.status == 200
    assert by_name.body["service"] == by_name.body["data"]
    # A health probe may land between the two reads: the time of its check is all it moves.
    assert without_probe_time(by_name.body["service"]) == without_probe_time(by_id.body["service"])
    assert by_name.body["id"] == alpha["id"] and by_name.body["status"] == "success"
    runtime = by_name.body["runtime_status"]
    assert runtime["is_running"] is True
    assert runtime["systemd_status"] == "active"
    assert runtime["caddy_status"] == "configured"
    assert runtime["config_match"] is True
    assert runtime["error_message"] is None

    missing = await api.call("GET", "/services/no-such-service")
    assert missing.status == 404
    assert missing.body["code"] == "SERVICE_NOT_FOUND"


async def test_status_shows_the_real_pid_memory_cpu_and_configuration(
    api: Api, alpha: dict[str, Any], agent: Agent
) -> None:
    reply = await api.call("GET", "/services/alpha/status")
    assert reply.status == 200
    status = reply.body
    unit = await agent.bus.unit_status("alpha-pocketbase.service")
    assert status["pid"] == unit.main_pid
    assert Path(f"/proc/{status['pid']}/comm").read_text().strip() == "pocketbase"
    assert status["memory_bytes"] > 1024 * 1024
    assert re.fullmatch(r"\d+\.\d(KB|MB|GB)", status["memory_usage"])
    assert status["systemd_status"] == "active" and status["sub_state"] == "running"
    assert status["caddy_status"] == "configured" and status["config_match"] is True
    assert status["desired_state"] == "running" and status["deployed_version"]
    assert status["service_id"] == alpha["id"] and status["project_name"] == "alpha"
    # The runtime part comes right after the service's names, in the documented order.
    assert list(status)[:9] == [
        "service_id",
        "project_name",
        *RuntimeStatus.model_fields,
    ]

    async def cpu_known() -> bool:
        current = (await api.call("GET", "/services/alpha/status")).body
        status.update(current)
        return current["cpu_percent"] is not None

    assert await wait_until(cpu_known, 10, 0.2)
    assert re.fullmatch(r"\d+\.\d%", status["cpu_usage"])
    assert status["cpu_usage"] == f"{status['cpu_percent']:.1f}%"


# -- control ----------------------------------------------------------------------------


async def test_stop_and_start_are_intent_that_the_agent_keeps(
    api: Api, alpha: dict[str, Any], agent: Agent, sandbox: Sandbox
) -> None:
    stopped = await api.call("POST", "/services/alpha/control", {"action": "stop"})
    assert stopped.status == 200
    assert stopped.body["action"] == "stop" and stopped.body["desired_state"] == "stopped"
    assert stopped.body["systemd"]["status"] == "inactive"
    assert stopped.body["message"] == "Service stopped successfully"
    assert stopped.body["service"] == {
        "id": alpha["id"],
        "project_name": "alpha",
        "status": "inactive",
    }
    assert (await agent.bus.unit_status("alpha-pocketbase.service")).active_state == "inactive"
    record = agent.store.get_service("alpha")
    assert record is not None and record.desired_state == "stopped"

    # The reconciler keeps it stopped: its next pass does not start it again.
    assert await agent.wait_reconciled("alpha", 30)
    assert (await agent.bus.unit_status("alpha-pocketbase.service")).active_state == "inactive"

    started = await api.call("POST", "/services/alpha/control", {"action": "start"})
    assert started.status == 200
    assert started.body["systemd"]["status"] == "active"
    assert started.body["desired_state"] == "running"
    assert await wait_for_pocketbase(sandbox.caddy_url, host="alpha.localhost")


async def test_restart_gives_the_instance_a_new_process(api: Api, alpha: dict[str, Any]) -> None:
    before = (await wait_running(api, "alpha"))["pid"]

    async def restarted_events() -> int:
        events = await api.call("GET", "/services/alpha/events", params={"limit": "500"})
        return [event["kind"] for event in events.body["events"]].count("restarted")

    restarts = await restarted_events()
    reply = await api.call("POST", f"/services/{alpha['id']}/control", {"action": "restart"})
    assert reply.status == 200
    assert reply.body["message"] == "Service restarted successfully"
    after = (await wait_running(api, "alpha"))["pid"]
    assert after != before
    assert await restarted_events() == restarts + 1


async def test_quick_restarts_by_an_operator_never_meet_systemds_start_limit(
    api: Api, newer: str, agent: Agent
) -> None:
    # systemd refuses a sixth start within StartLimitIntervalSec (start-limit-hit): a brake
    # for crash loops, not for an operator who restarts a service a few times in a row.
    await create(api, newer, "restless")
    await wait_running(api, "restless")
    answers = []
    for _ in range(8):
        reply = await api.call("POST", "/services/restless/control", {"action": "restart"})
        answers.append(reply.status)
    assert answers == [200] * 8
    status = await wait_running(api, "restless")
    assert status["state"] == "active"
    kinds = [event.kind for event in agent.store.list_events("restless", limit=100)]
    assert "drift_repaired" not in kinds  # the agent never had to start it again itself
    await api.call("DELETE", "/services/restless", params={"purge": "true"})


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"action": "explode"}, "action", "INVALID_VALUE"),
        ({}, "action", "FIELD_REQUIRED"),
        ({"action": "stop", "now": True}, "now", "UNKNOWN_FIELD"),
        ({"action": 1}, "action", "INVALID_VALUE"),
    ],
)
async def test_an_unknown_control_action_is_a_400_and_changes_nothing(
    api: Api, alpha: dict[str, Any], body: dict[str, Any], field: str, code: str
) -> None:
    before = (await wait_running(api, "alpha"))["pid"]
    reply = await api.call("POST", "/services/alpha/control", body)
    assert reply.status == 400
    assert reply.codes() == {field: code}
    assert (await api.call("GET", "/services/alpha/status")).body["pid"] == before
    missing = await api.call("POST", "/services/nobody/control", {"action": "start"})
    assert missing.status == 404


# -- logs and events --------------------------------------------------------------------


async def test_logs_come_from_the_journal_with_lines_and_since(
    api: Api, alpha: dict[str, Any]
) -> None:
    reply = await api.call("GET", "/services/alpha/logs", params={"lines": "200"})
    assert reply.status == 200
    body = reply.body
    assert body["service_id"] == alpha["id"] and body["project_name"] == "alpha"
    assert body["lines"] == 200 and body["total_lines"] == len(body["logs"]) > 0
    started = f"Server started at http://127.0.0.1:{alpha['port']}"
    assert any(started in entry["message"] for entry in body["logs"])
    assert body["log_lines"] == [entry["line"] for entry in body["logs"]]
    for entry in body["logs"]:
        assert entry["source"] == "pocketbase" and entry["level"] == "INFO"
        assert entry["line"].endswith(entry["message"])
    stamps = [entry["timestamp"] for entry in body["logs"]]
    assert stamps == sorted(stamps)

    # lines=1 is the newest entry. The instance may still be logging (the tests before this
    # one restart it): compare with a read of 200 lines made before it and again after it
    # that found the same entries, so that nothing arrived in between.
    async def newest_between_two_equal_reads() -> bool:
        nonlocal newest, around
        before = await api.call("GET", "/services/alpha/logs", params={"lines": "200"})
        last = await api.call("GET", "/services/alpha/logs", params={"lines": "1"})
        after = await api.call("GET", "/services/alpha/logs", params={"lines": "200"})
        newest = [entry["cursor"] for entry in last.body["logs"]]
        around = [entry["cursor"] for entry in after.body["logs"]]
        return [entry["cursor"] for entry in before.body["logs"]] == around

    newest: list[str] = []
    around: list[str] = []
    assert await wait_until(newest_between_two_equal_reads, timeout=20, interval=0.2)
    assert newest == around[-1:]
    later = await api.call("GET", "/services/alpha/logs", params={"since": "2999-01-01T00:00:00Z"})
    assert later.status == 200 and later.body["logs"] == []
    since = body["logs"][-1]["timestamp"]
    recent = await api.call("GET", "/services/alpha/logs", params={"since": since})
    assert recent.body["logs"] and all(e["timestamp"] >= since for e in recent.body["logs"])
    offset = await api.call(
        "GET", "/services/alpha/logs", params={"since": "2000-01-01T02:00:00+02:00"}
    )
    assert offset.status == 200 and offset.body["logs"]
    capped = await api.call("GET", "/services/alpha/logs", params={"lines": "20000"})
    assert capped.body["lines"] == 10000

    for params, field in [
        ({"since": "yesterday"}, "since"),
        ({"since": "2025-02-29T00:00:00Z"}, "since"),
        ({"since": "1970-12-31"}, "since"),
        ({"lines": "0"}, "lines"),
        ({"lines": "-5"}, "lines"),
        ({"follow": "maybe"}, "follow"),
    ]:
        bad = await api.call("GET", "/services/alpha/logs", params=params)
        assert bad.status == 400 and field in bad.codes(), params


async def test_follow_streams_new_lines_as_server_sent_events_and_resumes_after_a_cursor(
    api: Api, alpha: dict[str, Any]
) -> None:
    url = api.root + "/services/alpha/logs"
    headers = {"Authorization": f"Bearer {api.token}"}
    timeout = aiohttp.ClientTimeout(total=60)
    async with api.session.get(
        url, params={"follow": "true", "lines": "1"}, headers=headers, timeout=timeout
    ) as stream:
        assert stream.status == 200
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        (backlog,) = await read_sse(stream, 1)
        assert backlog["event"] == "log" and backlog["id"] == backlog["data"]["cursor"]

        restart = asyncio.create_task(
            api.call("POST", "/services/alpha/control", {"action": "restart"})
        )
        seen: list[dict[str, Any]] = []
        started = f"Server started at http://127.0.0.1:{alpha['port']}"
        while not any(started in event["data"]["message"] for event in seen):
            seen += await read_sse(stream, 1)
        assert (await restart).status == 200
    new_pid = (await wait_running(api, "alpha"))["pid"]
    assert any(
        started in event["data"]["message"] and event["data"]["pid"] == new_pid for event in seen
    )

    # EventSource reconnects with Last-Event-ID: the stream goes on right after it.
    async with api.session.get(
        url,
        params={"follow": "true", "lines": "1"},
        headers={**headers, "Last-Event-ID": backlog["id"]},
        timeout=timeout,
    ) as resumed:
        following = await read_sse(resumed, len(seen))
    assert [event["id"] for event in following] == [event["id"] for event in seen]

    bad = await api.call(
        "GET", "/services/alpha/logs", params={"follow": "true"}, headers={"Last-Event-ID": "x y"}
    )
    assert bad.status == 400 and bad.codes() == {"Last-Event-ID": "INVALID_VALUE"}


async def test_shutting_the_api_down_ends_log_streams_and_their_journalctl(
    api: Api, alpha: dict[str, Any], agent: Agent
) -> None:
    app = build_app(agent)
    runner = web.AppRunner(app, shutdown_timeout=10)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}/api/pockestrator/services/alpha/logs"
    loop = asyncio.get_running_loop()
    try:
        async with api.session.get(
            url,
            params={"follow": "true", "lines": "2"},
            headers={"Authorization": f"Bearer {api.token}"},
        ) as stream:
            await read_sse(stream, 2)
            assert app[STREAMS].open == 1
            assert len(journalctl_followers(agent.config.journal_dir, "--lines=2")) == 1
            started = loop.time()
            await runner.cleanup()
            await asyncio.wait_for(stream.content.read(), 5)
            assert loop.time() - started < 3
    finally:
        await runner.cleanup()
    assert app[STREAMS].open == 0
    assert journalctl_followers(agent.config.journal_dir, "--lines=2") == []


def open_streams(agent: Agent) -> int:
    """Slots the agent's API has taken now (streams running or starting)."""
    runner = agent._api_runner
    assert runner is not None and runner.app is not None
    return runner.app[STREAMS].open


async def open_stream(api: Api, lines: int) -> tuple[int, dict[str, Any], aiohttp.ClientResponse]:
    """One follow request (left open when it streams): status, error body, response."""
    response = await api.session.get(
        api.root + "/services/alpha/logs",
        params={"follow": "true", "lines": str(lines)},
        headers={"Authorization": f"Bearer {api.token}"},
    )
    if response.status != 200:
        body = await response.json()
        response.release()
        return response.status, body, response
    return 200, {}, response


async def test_streams_arriving_together_never_pass_the_cap(
    api: Api, alpha: dict[str, Any], agent: Agent
) -> None:
    """Every slot is claimed before its journalctl starts: a burst of requests past the cap
    gets exactly the cap's streams, never more journalctl processes, and 503s for the rest.

    (Fewer journalctl may be left: one that finds no inotify instance free on the host,
    shared by every process of root, reverts to a plain read and ends its stream.)"""
    cap = agent.config.max_log_streams

    async def no_stream_left() -> bool:  # an earlier test's stream may still be ending
        return open_streams(agent) == 0

    assert await wait_until(no_stream_left, 10, interval=0.05)
    opened = await asyncio.gather(*(open_stream(api, 3) for _ in range(cap + 8)))
    try:
        streaming = [response for status, _body, response in opened if status == 200]
        refused = [(status, body, r) for status, body, r in opened if status != 200]
        assert len(streaming) == cap, [(s, b.get("code"), b.get("message")) for s, b, _r in refused]
        assert {status for status, _body, _r in refused} == {503}
        assert {body["code"] for _status, body, _r in refused} == {"TOO_MANY_STREAMS"}
        assert all(r.headers["Retry-After"] == "5" for _status, _body, r in refused)
        assert len(journalctl_followers(agent.config.journal_dir, "--lines=3")) <= cap
    finally:
        for _status, _body, response in opened:
            response.close()

    async def all_ended() -> bool:  # each slot is free once its journalctl has ended
        return (
            journalctl_followers(agent.config.journal_dir, "--lines=3") == []
            and open_streams(agent) == 0
        )

    assert await wait_until(all_ended, 10, interval=0.05)
    status, _body, again = await open_stream(api, 3)
    again.close()
    assert status == 200


async def test_a_stream_ends_with_its_client_not_at_its_next_keepalive(
    api: Api, alpha: dict[str, Any], agent: Agent
) -> None:
    """The handler is cancelled when the client goes, so its journalctl ends and its slot
    is free again long before a keepalive write would have found the client gone."""
    status, _body, stream = await open_stream(api, 4)
    assert status == 200
    await read_sse(stream, 1)
    assert len(journalctl_followers(agent.config.journal_dir, "--lines=4")) == 1
    stream.close()

    async def ended() -> bool:
        return journalctl_followers(agent.config.journal_dir, "--lines=4") == []

    assert await wait_until(ended, KEEPALIVE_SECONDS / 3, interval=0.05)


async def test_events_tell_what_happened_newest_first_with_paging(
    api: Api, alpha: dict[str, Any]
) -> None:
    everything = await api.call("GET", "/services/alpha/events", params={"limit": "500"})
    assert everything.status == 200
    events = everything.body["events"]
    assert everything.body["total"] == len(events) > 0
    ids = [event["id"] for event in events]
    assert ids == sorted(ids, reverse=True)
    assert "reconciled" in {event["kind"] for event in events}
    first = next(e for e in reversed(events) if e["kind"] == "reconciled")
    assert "started" in first["details"]["actions"]

    page = await api.call("GET", "/services/alpha/events", params={"limit": "1"})
    assert [e["id"] for e in page.body["events"]] == ids[:1]
    assert page.body["next_before"] == ids[0]
    older = await api.call(
        "GET", "/services/alpha/events", params={"limit": "2", "before": str(ids[0])}
    )
    assert [e["id"] for e in older.body["events"]] == ids[1:3]
    assert (await api.call("GET", "/services/nobody/events")).status == 404
    bad = await api.call("GET", "/services/alpha/events", params={"before": "0"})
    assert bad.status == 400


# -- change -----------------------------------------------------------------------------


async def test_a_patch_changes_the_spec_and_the_running_instance(
    api: Api, alpha: dict[str, Any], agent: Agent
) -> None:
    reply = await api.call(
        "PATCH",
        "/services/alpha",
        {"env": {"POCKESTRATOR_TEST": "patched"}, "description": "changed"},
        params={"wait": "true"},
        content_type="application/merge-patch+json",
    )
    assert reply.status == 200
    assert reply.body["message"] == "Service updated successfully"
    service = reply.body["service"]
    assert service["env"] == {"POCKESTRATOR_TEST": "patched"}
    assert service["description"] == "changed"
    assert service["port"] == alpha["port"] and service["generation"] > alpha["generation"]
    unit_text = (agent.config.systemd_dir / "alpha-pocketbase.service").read_text()
    assert "patched" not in unit_text  # the unit is world-readable: no value goes there
    environment = agent.config.environment_path / "alpha.env"
    assert 'POCKESTRATOR_TEST="patched"' in environment.read_text().splitlines()
    info = environment.stat()
    assert (info.st_uid, info.st_mode & 0o777, environment.parent.stat().st_mode & 0o777) == (
        0,
        0o600,
        0o700,
    )
    pid = (await wait_running(api, "alpha"))["pid"]
    assert proc_environ(pid)["POCKESTRATOR_TEST"] == "patched"

    removed = await api.call(
        "PATCH", "/services/alpha", {"env": {"POCKESTRATOR_TEST": None}}, params={"wait": "true"}
    )
    assert removed.status == 200 and removed.body["service"]["env"] == {}
    pid = (await wait_running(api, "alpha"))["pid"]
    assert "POCKESTRATOR_TEST" not in proc_environ(pid)
    assert not environment.exists()  # no variable left: no file either


async def test_a_version_upgrade_is_a_patch(
    api: Api, older: str, newer: str, sandbox: Sandbox
) -> None:
    created = await create(api, older, "gamma")
    assert (await wait_running(api, "gamma"))["deployed_version"] == older
    reply = await api.call(
        "PATCH", "/services/gamma", {"pocketbase_version": newer}, params={"wait": "true"}
    )
    assert reply.status == 200
    assert reply.body["service"]["pocketbase_version"] == newer

    async def upgraded() -> bool:
        status = (await api.call("GET", "/services/gamma/status")).body
        return bool(status["deployed_version"] == newer and status["state"] == "active")

    assert await wait_until(upgraded, 60, 0.2)
    assert await wait_for_pocketbase(sandbox.caddy_url, host="gamma.localhost")
    events = await api.call("GET", f"/services/{created['id']}/events", params={"limit": "50"})
    assert [event["kind"] for event in events.body["events"]].count("upgraded") == 1


async def test_a_patch_refuses_renames_bad_values_and_taken_ports(
    api: Api, alpha: dict[str, Any], newer: str
) -> None:
    other = await create(api, newer, "zeta", desired_state="stopped")
    for body, field, code in [
        ({"project_name": "renamed"}, "project_name", "INVALID_VALUE"),
        ({"port": alpha["port"]}, "port", "PORT_IN_USE"),
        ({"port": "9000"}, "port", "INVALID_TYPE"),
        ({"pocketbase_version": "9.9.9"}, "pocketbase_version", "VERSION_NOT_FOUND"),
        ({"pocketbase_version": None}, "pocketbase_version", "FIELD_REQUIRED"),
        ({"created_by": "me"}, "created_by", "UNKNOWN_FIELD"),
        ({"desired_state": "paused"}, "desired_state", "INVALID_VALUE"),
    ]:
        reply = await api.call("PATCH", "/services/zeta", body)
        assert reply.status == 400, body
        assert reply.codes() == {field: code}, body
    unchanged = (await api.call("GET", "/services/zeta")).body["service"]
    for key in ("port", "pocketbase_version", "description", "env", "desired_state", "generation"):
        assert unchanged[key] == other["service"][key], key
    assert (await api.call("PATCH", "/services/nobody", {"description": "x"})).status == 404
    assert (await api.call("PATCH", "/services/zeta", raw=b"[]")).status == 400


async def test_file_owned_services_refuse_spec_changes_and_deletion_but_obey_control(
    api: Api, agent: Agent, newer: str
) -> None:
    spec_file = agent.config.spec_dir / "filed.yaml"
    spec_file.parent.mkdir(parents=True, exist_ok=True)
    spec_file.write_text(f"project_name: filed\nport: {free_port()}\npocketbase_version: {newer}\n")

    async def appeared() -> bool:
        return (await api.call("GET", "/services/filed")).status == 200

    assert await wait_until(appeared, 20, 0.1)
    detail = (await api.call("GET", "/services/filed")).body["service"]
    assert detail["source"] == "file" and detail["source_file"] == str(spec_file)

    patch = await api.call("PATCH", "/services/filed", {"description": "from the API"})
    assert patch.status == 409
    assert patch.body["code"] == "OWNED_BY_FILE"
    assert str(spec_file) in patch.body["message"]
    delete = await api.call("DELETE", "/services/filed")
    assert delete.status == 409 and delete.body["code"] == "OWNED_BY_FILE"
    assert agent.store.get_service("filed") is not None

    stopped = await api.call("POST", "/services/filed/control", {"action": "stop"})
    assert stopped.status == 200 and stopped.body["systemd"]["status"] == "inactive"
    assert stopped.body["desired_state"] == "stopped"
    started = await api.call("POST", "/services/filed/control", {"action": "start"})
    assert started.status == 200 and started.body["systemd"]["status"] == "active"
    spec_file.unlink()


# -- delete -----------------------------------------------------------------------------


async def test_deleting_archives_the_data_by_default(
    api: Api, agent: Agent, newer: str, sandbox: Sandbox
) -> None:
    created = await create(api, newer, "delta")
    await wait_running(api, "delta")
    marker = agent.config.base_dir / "delta" / "pb_data" / "kept.txt"
    marker.write_text("keep me")
    reply = await api.call("DELETE", f"/services/{created['id']}")
    assert reply.status == 200
    body = reply.body
    assert body["status"] == "success" and body["message"] == "Service deleted successfully"
    assert body["service"] == {"id": created["id"], "project_name": "delta", "status": "deleted"}
    assert body["systemd"] == {"service_name": "delta-pocketbase.service", "status": "removed"}
    assert body["caddy"] == {"domain": "delta.localhost", "status": "removed"}
    assert body["removed"] is True and body["purge"] is False
    archive = Path(body["archived_to"])
    assert (archive / "pb_data" / "kept.txt").read_text() == "keep me"
    assert archive.parent == agent.config.archive_path
    assert not (agent.config.base_dir / "delta").exists()
    assert not (agent.config.systemd_dir / "delta-pocketbase.service").exists()
    assert agent.sites.snippet_hash("delta") is None
    unit = await agent.bus.unit_status("delta-pocketbase.service")
    assert not unit.is_running
    assert (await api.call("GET", "/services/delta")).status == 404
    assert (await api.call("DELETE", "/services/delta")).status == 404


async def test_deleting_with_purge_removes_the_data(api: Api, agent: Agent, newer: str) -> None:
    await create(api, newer, "epsilon")
    reply = await api.call("DELETE", "/services/epsilon", params={"purge": "true"})
    assert reply.status == 200
    assert reply.body["removed"] is True and reply.body["purge"] is True
    assert reply.body["archived_to"] is None
    assert not (agent.config.base_dir / "epsilon").exists()
    archive = agent.config.archive_path
    leftovers = list(archive.glob("epsilon*")) if archive.exists() else []
    assert leftovers == []


async def test_a_delete_with_a_bad_parameter_deletes_nothing(
    api: Api, alpha: dict[str, Any], agent: Agent
) -> None:
    reply = await api.call("DELETE", "/services/alpha", params={"purge": "maybe"})
    assert reply.status == 400 and reply.codes() == {"purge": "INVALID_TYPE"}
    assert agent.store.get_service("alpha") is not None


# -- validation -------------------------------------------------------------------------


async def test_validation_reports_the_reference_codes(
    api: Api, alpha: dict[str, Any], older: str, newer: str
) -> None:
    good = {"project_name": "omega", "port": free_port(), "pocketbase_version": newer}
    reply = await api.call("POST", "/validate/service", good)
    assert reply.status == 200
    assert reply.body["valid"] is True and reply.body["errors"] == []
    assert reply.body["status"] == "success"
    # omega.localhost resolves to nothing here: "may not be reachable" is a warning only.
    assert [w["code"] for w in reply.body["warnings"]] == ["DOMAIN_UNREACHABLE"]
    assert reply.body["checks"] == {
        "project_name_available": True,
        "port_available": True,
        "domain_valid": True,
        "version_exists": True,
        "domain_reachable": False,
    }

    warned = await api.call(
        "POST",
        "/validate/service",
        {**good, "pocketbase_version": older, "domain": "omega.invalid"},
    )
    assert warned.status == 200 and warned.body["valid"] is True
    assert {w["code"] for w in warned.body["warnings"]} == {
        "VERSION_NOT_LATEST",
        "DOMAIN_UNREACHABLE",
    }
    assert warned.body["checks"]["domain_reachable"] is False

    taken = await api.call(
        "POST",
        "/validate/service",
        {
            "project_name": "alpha",
            "port": alpha["port"],
            "pocketbase_version": newer,
            "domain": "elsewhere.localhost",
        },
    )
    assert taken.status == 400 and taken.body["valid"] is False
    assert {(e["field"], e["code"]) for e in taken.body["errors"]} == {
        ("project_name", "PROJECT_NAME_EXISTS"),
        ("port", "PORT_IN_USE"),
    }
    assert taken.body["checks"]["project_name_available"] is False
    assert taken.body["checks"]["port_available"] is False
    assert taken.body["error"] == "Validation failed"
    assert set(taken.body["details"]) == {"project_name", "port"}

    malformed = await api.call("POST", "/validate/service", {"project_name": 5})
    assert malformed.status == 400 and malformed.body["valid"] is False
    assert {e["field"] for e in malformed.body["errors"]} == {
        "project_name",
        "port",
        "pocketbase_version",
    }
    assert malformed.body["checks"]["project_name_available"] is False
    broken = await api.call("POST", "/validate/service", raw=b"{")
    assert broken.status == 400 and broken.body["errors"][0]["code"] == "INVALID_JSON"


@pytest.fixture(autouse=True, scope="module")
async def _no_spec_file_left(agent: Agent) -> AsyncIterator[None]:
    yield
    with contextlib.suppress(FileNotFoundError):
        (agent.config.spec_dir / "filed.yaml").unlink()
