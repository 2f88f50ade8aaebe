"""Moves between the nodes of a fleet, a node lost and a service brought up elsewhere from
its backup: two sandboxes (each its own systemd manager, journald and Caddy), one real
PostgreSQL server they share, one real S3 server (``rclone serve s3``) as their off-site
target.

Node alpha's agent runs in this process; node beta's runs as systemd runs it (a unit of
beta's manager), so that it can be killed with SIGKILL. Both nodes' instances listen on
this machine's loopback, so a node's Caddy that still proxied to a service's port after it
left would reach the other node's instance on the same port and answer: the checks that a
source forwards a moved service look at its site files (its own gone, the forward to the
target's Caddy there) as well as at the answers.
"""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pockestrator.agent.daemon import Agent, api_factory
from pockestrator.agent.sandbox import Sandbox, free_port
from pockestrator.config import AgentConfig, StoreConfig
from pockestrator.controllers.caddy.upstreams import (
    UPSTREAMS_FOLDER,
    read_upstream,
    write_upstream,
)
from pockestrator.specs.model import unit_name
from tests.testbed.agent_unit import AGENT_UNIT, AgentUnit, agent_unit
from tests.testbed.api_client import Api, create, wait_running
from tests.testbed.cli_env import run_cli
from tests.testbed.mirror import ReleaseMirror
from tests.testbed.pocketbase_client import PocketBaseClient
from tests.testbed.postgres import PostgresServer
from tests.testbed.s3 import S3Server
from tests.testbed.waiting import wait_until

POLICY = {"schedule": None, "verify": None, "targets": ["offsite"]}
LEASE = 6.0


@dataclass
class Fleet:
    alpha: Agent
    alpha_box: Sandbox
    alpha_api: Api
    beta: AgentUnit
    beta_box: Sandbox
    beta_api: Api
    token: str


def node_config(
    box: Sandbox, name: str, mirror: ReleaseMirror, store: StoreConfig, s3: S3Server, key: Path
) -> AgentConfig:
    return box.agent_config(
        release_source="mirror",
        release_base_url=mirror.base_url,
        release_index_url=mirror.index_url,
        listen_port=free_port(),
        store=store,
        node_name=name,
        node_public_address=f"127.0.0.1:{box.caddy_http_port}",
        node_lease_seconds=LEASE,
        resync_interval=3600.0,  # only NOTIFY wakes an agent in time for these tests
        health_interval=1.0,
        upgrade_health_deadline=20.0,
        failover_grace_seconds=2.0,
        backup_targets={"offsite": s3.target(encryption_key_file=key)},
    )


async def start_killable(handle: AgentUnit) -> None:
    """``AgentUnit.start`` without systemd's restart: a SIGKILL leaves the agent dead."""
    handle.write_config()
    unit_file = handle.sandbox.systemd.paths.unit_dir / AGENT_UNIT
    text = agent_unit(handle.config_file, 30).replace("Restart=on-failure", "Restart=no")
    unit_file.write_text(text)
    await handle.bus.daemon_reload()
    await handle.bus.reset_failed_unit(AGENT_UNIT)
    await handle.bus.start_unit(AGENT_UNIT)


@pytest.fixture(scope="module")
async def fleet(
    testbed_base: Path,
    release_mirror: ReleaseMirror,
    postgres_server: PostgresServer,
    s3_server: S3Server,
) -> AsyncIterator[Fleet]:
    database = postgres_server.new_database()
    store = StoreConfig(
        backend="postgresql",
        dsn=postgres_server.dsn(database),
        password_file=postgres_server.password_file,
        sslmode="disable",  # loopback; a fleet's default is verify-full
    )
    key = s3_server.root / "encryption.key"
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as writer:
        writer.write(os.urandom(32))
    boxes: list[Sandbox] = []
    alpha: Agent | None = None
    beta: AgentUnit | None = None
    try:
        for name in ("alpha", "beta"):
            box = Sandbox(Path(tempfile.mkdtemp(prefix=f"tb-{name}-", dir=testbed_base)))
            boxes.append(box)
            await box.start()
        alpha_config = node_config(boxes[0], "alpha", release_mirror, store, s3_server, key)
        alpha = Agent(alpha_config, api_factory=api_factory())
        await alpha.start()
        beta_config = node_config(boxes[1], "beta", release_mirror, store, s3_server, key)
        beta = AgentUnit(boxes[1], beta_config, watchdog_seconds=30)
        await start_killable(beta)
        token, _record = alpha.accounts.create_token("fleet moves")  # the fleet's accounts
        async with aiohttp.ClientSession() as session:
            alpha_api = Api(
                session, f"http://127.0.0.1:{alpha_config.listen_port}/api/pockestrator", token
            )
            beta_api = Api(
                session, f"http://127.0.0.1:{beta_config.listen_port}/api/pockestrator", token
            )

            async def both_ready() -> bool:
                reply = await alpha_api.call("GET", "/nodes")
                return {n["name"]: n["state"] for n in reply.body.get("nodes", [])} == {
                    "alpha": "ready",
                    "beta": "ready",
                }

            assert await wait_until(both_ready, 60, 0.2), beta.journal()[-3000:]
            yield Fleet(alpha, boxes[0], alpha_api, beta, boxes[1], beta_api, token)
    finally:
        if beta is not None:
            await beta.bus.stop_unit(AGENT_UNIT)
        if alpha is not None:
            await alpha.stop()
        for box in boxes:
            await box.stop()
            assert box.leftover_pids() == [], "a sandbox left processes behind"


async def records(client: PocketBaseClient) -> list[dict[str, Any]]:
    """Every record of ``notes`` exactly as PocketBase's API answers it, page by page."""
    found: list[dict[str, Any]] = []
    page = 1
    while True:
        answer = await client.call(
            "GET", f"/api/collections/notes/records?page={page}&perPage=500&sort=id"
        )
        found += answer["items"]
        if page >= answer["totalPages"]:
            return found
        page += 1


async def finished_move(api: Api, name: str, move_id: int, timeout: float) -> dict[str, Any]:
    latest: dict[str, Any] = {}

    async def finished() -> bool:
        reply = await api.call("GET", f"/services/{name}/moves/{move_id}")
        latest.clear()
        latest.update(reply.body)
        return bool(reply.body.get("finished"))

    assert await wait_until(finished, timeout, 0.2), latest
    return latest


async def event_kinds(api: Api, name: str) -> list[str]:
    reply = await api.call("GET", f"/services/{name}/events", params={"limit": "100"})
    return [e["kind"] for e in reversed(reply.body["events"])]


async def backed_up_offsite(api: Api, name: str) -> None:
    """A backup of ``name`` taken now, once it is on the off-site target."""
    taken = await api.call("POST", f"/services/{name}/backups")
    assert taken.status == 201, taken.body

    async def uploaded() -> bool:
        listed = await api.call("GET", f"/services/{name}/backups")
        return any("offsite" in b["locations"] for b in listed.body["backups"])

    assert await wait_until(uploaded, 60, 0.2), f"no backup of {name} reached offsite"


async def caddy_answers(box: Sandbox, host: str) -> bool:
    async with (
        aiohttp.ClientSession(headers={"Host": host}) as session,
        session.get(f"{box.caddy_url}/api/health") as response,
    ):
        return response.status == 200


async def test_a_move_keeps_every_record_written_before_and_during_it(
    fleet: Fleet,
    pocketbase_versions: tuple[str, str],
    record_property: Callable[[str, object], None],
) -> None:
    version = pocketbase_versions[1]
    created = await create(
        fleet.alpha_api,
        version,
        "ledger",
        node="alpha",
        superuser_email="admin@ledger.example",
        backups=POLICY,
    )
    port = created["service"]["port"]
    await wait_running(fleet.alpha_api, "ledger", timeout=60)
    written: list[str] = []
    async with PocketBaseClient(f"http://127.0.0.1:{port}") as client:
        await client.sign_in("admin@ledger.example", created["superuser_password"])
        await client.notes()
        for number in range(20):
            written.append(await client.add(f"before {number}"))

        # Through beta's API: any node's API takes a move.
        asked = await fleet.beta_api.call("POST", "/services/ledger/moves", {"to": "beta"})
        assert asked.status == 202, asked.body
        assert (asked.body["source"], asked.body["state"]) == ("alpha", "requested")
        done = asyncio.Event()

        loop = asyncio.get_running_loop()
        began, refused = loop.time(), []

        async def keep_writing() -> None:
            number = 0
            while not done.is_set():
                # While the source is stopped a write fails: not acknowledged, not counted.
                try:
                    written.append(await client.add(f"during {number}"))
                except Exception:  # any refusal: not acknowledged, not counted
                    refused.append(loop.time())
                number += 1
                await asyncio.sleep(0.1)

        writer = asyncio.create_task(keep_writing())
        try:
            move = await finished_move(fleet.alpha_api, "ledger", asked.body["id"], 300)
        finally:
            done.set()
            await writer
    assert move["state"] == "done", f"{move['error']}\n{fleet.beta.journal()[-8000:]}"
    # Not asserted (a timing): how long the move took, and the writes refused while the
    # instance was stopped (one write every 0.1 s), for the report (--junitxml).
    record_property("move_seconds", round(loop.time() - began, 2))
    record_property("refused_writes", len(refused))
    if refused:
        record_property("refused_window_seconds", round(refused[-1] - refused[0], 2))
    assert move["final_snapshot"] and move["final_snapshot"] != move["snapshot"]
    assert len(written) > 20, "no write landed during the move"
    await wait_running(fleet.beta_api, "ledger", timeout=60)
    assert fleet.alpha.store.node_of("ledger") == "beta"
    async with PocketBaseClient(f"http://127.0.0.1:{port}") as client:
        kept = await records(client)
        await client.sign_in("admin@ledger.example", created["superuser_password"])
    assert {r["id"] for r in kept} >= set(written), "an acknowledged write was lost"

    # alpha's copy is gone (stopped, unit and site removed, data archived); beta serves it.
    async def alpha_let_go() -> bool:
        return "stale_copy_removed" in await event_kinds(fleet.alpha_api, "ledger")

    assert await wait_until(alpha_let_go, 60, 0.2), await event_kinds(fleet.alpha_api, "ledger")
    assert "ledger" not in fleet.alpha.units.managed_names()
    assert_forwards(fleet.alpha_box, "ledger", f"127.0.0.1:{fleet.beta_box.caddy_http_port}")
    assert await caddy_answers(fleet.beta_box, "ledger.localhost")
    # alpha's Caddy forwards to beta's (until DNS has moved): its answer is beta's.
    assert await caddy_answers(fleet.alpha_box, "ledger.localhost")
    kinds = await event_kinds(fleet.alpha_api, "ledger")
    steps = ["move_requested", "move_staged", "move_verified", "move_switched", "seeded"]
    assert [k for k in kinds if k in {*steps, "move_done"}][:6] == [*steps, "move_done"], kinds


async def test_requests_through_the_sources_caddy_during_a_move_are_all_answered_by_the_target(
    fleet: Fleet,
    pocketbase_versions: tuple[str, str],
    record_property: Callable[[str, object], None],
) -> None:
    # Fleet routing is off on both nodes: what carries the requests is the move's own
    # forward on alpha and the site beta holds them in while its instance starts.
    assert not fleet.alpha.config.fleet_routing
    created = await create(
        fleet.alpha_api,
        pocketbase_versions[1],
        "relay",
        node="alpha",
        superuser_email="admin@relay.example",
        backups=POLICY,
        proxy={"hold_requests": 90},
    )
    domain, port = created["service"]["domain"], created["service"]["port"]
    await wait_running(fleet.alpha_api, "relay", timeout=60)
    async with PocketBaseClient(fleet.alpha_box.caddy_url, host=domain) as client:
        await client.sign_in("admin@relay.example", created["superuser_password"])
        await client.notes()
        headers = dict(client.headers)
    acknowledged: list[str] = []
    answers: list[tuple[int, str]] = []  # every answer that was not a 2xx, and why
    moved = asyncio.Event()
    after_done = 0

    async def steady_client(session: aiohttp.ClientSession, which: int) -> None:
        # One write at a time through alpha's Caddy, as a client whose DNS still says
        # alpha; no error is forgiven: a held request must come back answered, and a
        # connection closed with no answer (a Caddy config load's) fails the test.
        nonlocal after_done
        number, mine_after = 0, 0
        while mine_after < 3:
            url = f"{fleet.alpha_box.caddy_url}/api/collections/notes/records"
            title = f"client {which} write {number}"
            try:
                async with session.post(url, json={"title": title}, headers=headers) as reply:
                    body = await reply.text()
                    if reply.status >= 300:
                        answers.append((reply.status, body[:200]))
                    else:
                        acknowledged.append((await reply.json())["id"])
            except (aiohttp.ClientError, TimeoutError) as exc:
                answers.append((0, f"{title}: {exc!r}"))
            if moved.is_set():
                after_done, mine_after = after_done + 1, mine_after + 1
            number += 1
            await asyncio.sleep(0.05)

    timeout = aiohttp.ClientTimeout(total=150)
    # A connection per request, so that each write is a new connection accepted by alpha's
    # Caddy: the ones a config load there would close unanswered.
    connector = aiohttp.TCPConnector(force_close=True)
    loads_before = fleet.alpha.reconciler.controllers.sites.reload_count
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        clients = [asyncio.create_task(steady_client(session, n)) for n in range(3)]
        asked = await fleet.alpha_api.call("POST", "/services/relay/moves", {"to": "beta"})
        assert asked.status == 202, asked.body
        try:
            move = await finished_move(fleet.alpha_api, "relay", asked.body["id"], 300)
        finally:
            moved.set()
            await asyncio.gather(*clients)
    assert move["state"] == "done", f"{move['error']}\n{fleet.beta.journal()[-8000:]}"
    record_property("relay_acknowledged_writes", len(acknowledged))
    assert answers == [], f"{len(answers)} requests through alpha not answered 2xx: {answers[:5]}"
    assert after_done >= 9, "the clients did not write through alpha after the move"
    # The switch made no config load on alpha: its site stayed, and its upstream file
    # names beta's Caddy now (Caddy reads it at each dial).
    loads = fleet.alpha.reconciler.controllers.sites.reload_count - loads_before
    assert loads == 0, f"alpha's Caddy loaded {loads} configs during the move"
    assert_forwards(fleet.alpha_box, "relay", f"127.0.0.1:{fleet.beta_box.caddy_http_port}")
    assert fleet.alpha.store.node_of("relay") == "beta"

    async def alpha_let_go() -> bool:
        return "stale_copy_removed" in await event_kinds(fleet.alpha_api, "relay")

    assert await wait_until(alpha_let_go, 60, 0.2), await event_kinds(fleet.alpha_api, "relay")
    # Only beta's instance listens on the port now: what it holds is the target's.
    async with PocketBaseClient(f"http://127.0.0.1:{port}") as direct:
        kept = {r["id"] for r in await records(direct)}
    assert kept >= set(acknowledged), "an acknowledged write is not on the target"


async def test_a_services_upstream_file_names_its_own_port_again_and_goes_with_the_service(
    fleet: Fleet, pocketbase_versions: tuple[str, str]
) -> None:
    """A fleet node's site reads its upstream from a file; one left naming another node's
    Caddy (a move rolled back after its forward) is pointed back at the instance here by
    the next reconcile, and alpha's Caddy answers from alpha's instance again. Deleting
    the service removes its file with its site."""
    created = await create(fleet.alpha_api, pocketbase_versions[1], "homing", node="alpha")
    await wait_running(fleet.alpha_api, "homing", timeout=60)
    folder = fleet.alpha_box.layout.caddy_sites_dir / UPSTREAMS_FOLDER
    here = f"127.0.0.1:{created['service']['port']}"
    assert read_upstream(folder, "homing") == here
    assert await caddy_answers(fleet.alpha_box, "homing.localhost")
    write_upstream(folder, "homing", "127.0.0.1:9")  # the discard port: nothing answers
    fleet.alpha.enqueue("homing")

    async def pointed_back() -> bool:
        return read_upstream(folder, "homing") == here

    assert await wait_until(pointed_back, 60, 0.1), read_upstream(folder, "homing")
    assert await caddy_answers(fleet.alpha_box, "homing.localhost")

    deleted = await fleet.alpha_api.call("DELETE", "/services/homing", params={"purge": "true"})
    assert deleted.status in (200, 202), deleted.body

    async def file_gone() -> bool:
        return read_upstream(folder, "homing") is None

    assert await wait_until(file_gone, 60, 0.1), "a deleted service's upstream file stayed"


async def test_a_move_is_refused_without_an_offsite_target_or_to_an_unknown_node(
    fleet: Fleet, pocketbase_versions: tuple[str, str]
) -> None:
    await create(fleet.alpha_api, pocketbase_versions[1], "local-only", node="alpha")
    refused = await fleet.alpha_api.call("POST", "/services/local-only/moves", {"to": "beta"})
    assert refused.status == 409, refused.body
    assert refused.codes() == {"backups.targets": "NO_OFFSITE_TARGET"}
    unknown = await fleet.alpha_api.call("POST", "/services/local-only/moves", {"to": "zeta"})
    assert unknown.status == 404 and unknown.codes() == {"to": "NODE_NOT_FOUND"}, unknown.body
    there = await fleet.alpha_api.call(
        "POST", "/services/ledger/moves", {"to": "beta", "from_backup": False}
    )
    assert there.status == 409 and there.codes() == {"node": "ALREADY_ON_NODE"}, there.body
    for number in ("999", "%C2%B2", "x"):  # "²" is a digit to str.isdigit, not to int
        none = await fleet.alpha_api.call("GET", f"/services/ledger/moves/{number}")
        assert none.status == 404 and none.body["code"] == "MOVE_NOT_FOUND", none.body


async def cli(fleet: Fleet, *argv: str) -> tuple[int, str]:
    """``pockestrator ARGV`` against alpha's API, as an operator runs it: the exit code and
    everything it printed."""
    url = f"http://127.0.0.1:{fleet.alpha.config.listen_port}"
    code, out, err = await run_cli(url, fleet.token, *argv, timeout=300)
    return code, out + err


async def test_a_killed_nodes_services_are_node_lost_come_up_elsewhere_from_backup_and_stay_gone(
    fleet: Fleet, pocketbase_versions: tuple[str, str]
) -> None:
    version = pocketbase_versions[1]
    created = await create(
        fleet.beta_api,
        version,
        "spare",
        node="beta",
        superuser_email="admin@spare.example",
        backups=POLICY,
    )
    port = created["service"]["port"]
    await wait_running(fleet.beta_api, "spare", timeout=60)
    async with PocketBaseClient(f"http://127.0.0.1:{port}") as client:
        await client.sign_in("admin@spare.example", created["superuser_password"])
        await client.notes()
        for number in range(10):
            await client.add(f"backed up {number}")
        backed_up = await records(client)
        await backed_up_offsite(fleet.beta_api, "spare")
        for number in range(3):  # after the last backup: what a failover loses (the RPO)
            await client.add(f"not backed up {number}")

    # The host is lost: its agent killed with SIGKILL, then its instance (one machine's
    # loopback is both hosts': the instance on beta would hold the port alpha needs).
    os.kill(await fleet.beta.main_pid(), signal.SIGKILL)
    await fleet.beta.bus.stop_unit(unit_name("spare"))

    async def lost() -> bool:
        reply = await fleet.alpha_api.call("GET", "/services/spare")
        return reply.body["service"]["status"] == "node_lost"

    assert await wait_until(lost, 3 * LEASE, 0.2)
    status = await fleet.alpha_api.call("GET", "/services/spare/status")
    assert status.body["state"] == "node_lost", status.body
    listed = await fleet.alpha_api.call("GET", "/services", params={"status": "node_lost"})
    # ledger and relay too: the first two tests moved them to beta.
    assert [s["project_name"] for s in listed.body["services"]] == ["ledger", "relay", "spare"]

    async def told() -> bool:
        kinds = await event_kinds(fleet.alpha_api, "spare")
        return "node_lost" in kinds and "alert_firing" in kinds

    assert await wait_until(told, 3 * LEASE, 0.2), await event_kinds(fleet.alpha_api, "spare")
    code, out = await cli(fleet, "get", "spare")
    assert code == 0 and "node_lost" in out, out

    # A plain move needs its source: it fails, saying so, and nothing changes.
    plain = await fleet.alpha_api.call("POST", "/services/spare/moves", {"to": "alpha"})
    assert plain.status == 202, plain.body
    failed = await finished_move(fleet.alpha_api, "spare", plain.body["id"], 60)
    assert failed["state"] == "failed" and "beta was lost" in failed["error"], failed
    assert fleet.alpha.store.node_of("spare") == "beta"

    code, out = await cli(fleet, "move", "spare", "--to", "alpha", "--from-backup")
    assert code == 0, out
    assert "moved beta -> alpha" in out, out
    await wait_running(fleet.alpha_api, "spare", timeout=60)
    async with PocketBaseClient(f"http://127.0.0.1:{port}") as client:
        assert await records(client) == backed_up, "the newest backup, exactly"
        await client.sign_in("admin@spare.example", created["superuser_password"])
    assert await caddy_answers(fleet.alpha_box, "spare.localhost")

    # beta comes back: its stale copy goes (unit, site, data archived); it never serves it.
    await start_killable(fleet.beta)

    async def beta_let_go() -> bool:
        return "stale_copy_removed" in await event_kinds(fleet.alpha_api, "spare")

    assert await wait_until(beta_let_go, 60, 0.2), fleet.beta.journal()[-3000:]
    assert not (fleet.beta_box.systemd.paths.unit_dir / f"{unit_name('spare')}").exists()
    assert not await caddy_answers(fleet.beta_box, "spare.localhost")
    assert fleet.alpha.store.node_of("spare") == "alpha"
    status = await fleet.alpha_api.call("GET", "/services/spare/status")
    assert status.body["state"] == "active", status.body


async def backed_up_on_beta(fleet: Fleet, name: str, version: str) -> tuple[int, list[Any]]:
    """``name`` on beta with ``failover: auto``, five records, backed up off-site."""
    created = await create(
        fleet.beta_api,
        version,
        name,
        node="beta",
        superuser_email=f"admin@{name}.example",
        backups=POLICY,
        failover="auto",
    )
    port = created["service"]["port"]
    await wait_running(fleet.beta_api, name, timeout=60)
    async with PocketBaseClient(f"http://127.0.0.1:{port}") as client:
        await client.sign_in(f"admin@{name}.example", created["superuser_password"])
        await client.notes()
        for number in range(5):
            await client.add(f"{name} {number}")
        kept = await records(client)
    await backed_up_offsite(fleet.beta_api, name)
    return port, kept


async def test_failover_auto_brings_a_lost_nodes_service_up_on_a_live_node_after_the_grace(
    fleet: Fleet, pocketbase_versions: tuple[str, str]
) -> None:
    port, kept = await backed_up_on_beta(fleet, "standby", pocketbase_versions[1])
    os.kill(await fleet.beta.main_pid(), signal.SIGKILL)
    await fleet.beta.bus.stop_unit(unit_name("standby"))

    async def on_alpha() -> bool:
        return fleet.alpha.store.node_of("standby") == "alpha"

    # The lease ends (6 s), the grace (2 s), a look (every 2 s), then the move.
    assert await wait_until(on_alpha, 60, 0.2), await event_kinds(fleet.alpha_api, "standby")
    await wait_running(fleet.alpha_api, "standby", timeout=90)
    async with PocketBaseClient(f"http://127.0.0.1:{port}") as client:
        assert await records(client) == kept
    kinds = await event_kinds(fleet.alpha_api, "standby")
    assert kinds.count("failover_started") == 1, kinds
    failover = next(
        e
        for e in (await fleet.alpha_api.call("GET", "/services/standby/events")).body["events"]
        if e["kind"] == "failover_started"
    )
    assert failover["details"]["from_backup"] is True
    assert failover["details"]["source"] == "beta"
    await start_killable(fleet.beta)  # back for the fixture's teardown, without the copy

    async def beta_let_go() -> bool:
        return "stale_copy_removed" in await event_kinds(fleet.alpha_api, "standby")

    assert await wait_until(beta_let_go, 60, 0.2), fleet.beta.journal()[-3000:]


async def test_a_move_whose_source_agent_is_killed_mid_way_resumes_and_keeps_its_data(
    fleet: Fleet,
) -> None:
    # ledger runs on beta since the first test; beta is back since the failover test.
    port = (await fleet.beta_api.call("GET", "/services/ledger")).body["service"]["port"]
    async with PocketBaseClient(f"http://127.0.0.1:{port}") as client:
        before = await records(client)
    asked = await fleet.alpha_api.call("POST", "/services/ledger/moves", {"to": "alpha"})
    assert asked.status == 202, asked.body

    async def past_requested() -> bool:
        reply = await fleet.alpha_api.call("GET", f"/services/ledger/moves/{asked.body['id']}")
        return reply.body["state"] != "requested"

    assert await wait_until(past_requested, 120, 0.05)
    os.kill(await fleet.beta.main_pid(), signal.SIGKILL)  # the source, in the middle
    await start_killable(fleet.beta)  # back within its lease: the move is not failed
    move = await finished_move(fleet.alpha_api, "ledger", asked.body["id"], 300)
    assert move["state"] == "done", move
    await wait_running(fleet.alpha_api, "ledger", timeout=60)
    async with PocketBaseClient(f"http://127.0.0.1:{port}") as client:
        assert await records(client) == before
    kinds = await event_kinds(fleet.alpha_api, "ledger")
    assert kinds.count("move_switched") == 2, "one switch for each of the two moves"


async def test_a_stopped_service_moves_and_stays_stopped_on_its_new_node(
    fleet: Fleet, pocketbase_versions: tuple[str, str]
) -> None:
    await create(fleet.alpha_api, pocketbase_versions[1], "parked", node="alpha", backups=POLICY)
    await wait_running(fleet.alpha_api, "parked", timeout=60)  # it has data once it ran
    stopped = await fleet.alpha_api.call("POST", "/services/parked/control", {"action": "stop"})
    assert stopped.status == 200, stopped.body
    asked = await fleet.alpha_api.call("POST", "/services/parked/moves", {"to": "beta"})
    assert asked.status == 202, asked.body
    move = await finished_move(fleet.alpha_api, "parked", asked.body["id"], 300)
    assert move["state"] == "done", move
    status = await fleet.beta_api.call("GET", "/services/parked/status")
    assert (status.body["state"], status.body["is_running"]) == ("inactive", False), status.body
    assert fleet.alpha.store.node_of("parked") == "beta"


def assert_forwards(box: Sandbox, name: str, target: str) -> None:
    """``box``'s Caddy forwards ``name`` in place: its own site names the upstream file,
    which names ``target`` (no route site: the forward needed no config load)."""
    sites = box.layout.caddy_sites_dir
    site = (sites / f"{name}.caddy").read_text()
    assert f"reverse_proxy tcp/{{file.{sites}/upstreams/{name}.upstream}}" in site, site
    assert not (sites / f"_route-{name}.caddy").exists()
    assert read_upstream(sites / UPSTREAMS_FOLDER, name) == target


async def moving_from_alpha(fleet: Fleet, name: str, version: str) -> None:
    """``name`` running on alpha with a few records, ready to be moved."""
    created = await create(
        fleet.alpha_api,
        version,
        name,
        node="alpha",
        superuser_email=f"admin@{name}.example",
        backups=POLICY,
    )
    await wait_running(fleet.alpha_api, name, timeout=60)
    async with PocketBaseClient(f"http://127.0.0.1:{created['service']['port']}") as client:
        await client.sign_in(f"admin@{name}.example", created["superuser_password"])
        await client.notes()
        await client.add("kept where it is")


async def serves_on_alpha_again(fleet: Fleet, name: str) -> None:
    """The failed cutover undone: alpha's unit runs, its own site is back (no forward),
    and alpha's Caddy answers for the service."""
    status = await fleet.alpha.bus.unit_status(unit_name(name))
    assert status.is_running, f"{name} is not running on alpha right after the move failed"
    sites = fleet.alpha_box.layout.caddy_sites_dir
    assert (sites / f"{name}.caddy").exists() and not (sites / f"_route-{name}.caddy").exists()
    port = fleet.alpha.store.get_service(name).spec.port  # type: ignore[union-attr]
    assert read_upstream(sites / UPSTREAMS_FOLDER, name) == f"127.0.0.1:{port}"
    assert fleet.alpha.store.node_of(name) == "alpha"
    assert await caddy_answers(fleet.alpha_box, f"{name}.localhost")


async def test_a_start_of_the_source_during_the_cutover_fails_the_move_before_the_switch(
    fleet: Fleet, pocketbase_versions: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    await moving_from_alpha(fleet, "restarted", pocketbase_versions[1])
    snapshots = fleet.alpha.reconciler.controllers.snapshots
    upload = snapshots.upload
    uploads = 0

    async def start_during_the_final_upload(name: str, snapshot_id: str, target: str) -> Any:
        # The seam: the cutover's upload of its final snapshot (the second upload) is
        # when a control start, a restart or a wake could start the source again.
        nonlocal uploads
        uploads += 1
        if name == "restarted" and uploads == 2:
            await fleet.alpha.bus.start_unit(unit_name(name))
        return await upload(name, snapshot_id, target)

    monkeypatch.setattr(snapshots, "upload", start_during_the_final_upload)
    asked = await fleet.alpha_api.call("POST", "/services/restarted/moves", {"to": "beta"})
    assert asked.status == 202, asked.body
    move = await finished_move(fleet.alpha_api, "restarted", asked.body["id"], 300)
    assert uploads == 2, "the seam was not reached"
    assert move["state"] == "failed", move
    assert "was started on alpha during the cutover" in move["error"], move
    await serves_on_alpha_again(fleet, "restarted")


async def test_a_switch_that_raises_starts_the_source_at_once_and_says_so(
    fleet: Fleet, pocketbase_versions: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    await moving_from_alpha(fleet, "unswitched", pocketbase_versions[1])

    def store_away(*_args: object) -> None:
        # The switch's transaction fails (the store away at that moment) and commits nothing.
        raise ConnectionError("the store went away during the switch")

    monkeypatch.setattr(fleet.alpha.store, "switch_move", store_away)
    asked = await fleet.alpha_api.call("POST", "/services/unswitched/moves", {"to": "beta"})
    assert asked.status == 202, asked.body
    move = await finished_move(fleet.alpha_api, "unswitched", asked.body["id"], 300)
    assert move["state"] == "failed", move
    assert "serves on alpha again" in move["error"] and "store went away" in move["error"]
    await serves_on_alpha_again(fleet, "unswitched")
    failed = next(
        e
        for e in (await fleet.alpha_api.call("GET", "/services/unswitched/events")).body["events"]
        if e["kind"] == "move_failed"
    )
    assert "serves on alpha again" in failed["message"], failed


async def test_a_step_that_raises_after_the_switch_keeps_the_move_switched_until_it_is_done(
    fleet: Fleet, pocketbase_versions: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # beta -> alpha, so that the target's steps run in this process.
    created = await create(
        fleet.beta_api, pocketbase_versions[1], "homebound", node="beta", backups=POLICY
    )
    await wait_running(fleet.beta_api, "homebound", timeout=60)
    mover = fleet.alpha.reconciler.mover
    finish = mover._finish
    raised: list[str] = []

    def store_away_once(move: Any, was: str, state: str, error: str | None) -> None:
        if state == "done" and not raised:
            raised.append(state)
            raise ConnectionError("the store went away as the move was confirmed")
        finish(move, was, state, error)  # type: ignore[arg-type]

    monkeypatch.setattr(mover, "_finish", store_away_once)
    asked = await fleet.alpha_api.call("POST", "/services/homebound/moves", {"to": "alpha"})
    assert asked.status == 202, asked.body
    move = await finished_move(fleet.alpha_api, "homebound", asked.body["id"], 300)
    assert raised == ["done"], "the seam was not reached"
    assert move["state"] == "done", move
    kinds = await event_kinds(fleet.alpha_api, "homebound")
    assert "move_step_failed" in kinds and "move_failed" not in kinds, kinds
    assert kinds.index("move_step_failed") > kinds.index("move_switched"), kinds
    await wait_running(fleet.alpha_api, "homebound", timeout=60)
    assert created["service"]["port"] and fleet.alpha.store.node_of("homebound") == "alpha"


async def test_a_move_from_backup_of_a_replicating_service_keeps_what_only_its_replica_had(
    fleet: Fleet, pocketbase_versions: tuple[str, str], s3_server: S3Server
) -> None:
    created = await create(
        fleet.beta_api,
        pocketbase_versions[1],
        "journal",
        node="beta",
        superuser_email="admin@journal.example",
        backups={**POLICY, "replication": {"target": "offsite", "sync_seconds": 1}},
    )
    port = created["service"]["port"]
    await wait_running(fleet.beta_api, "journal", timeout=60)

    async def replicating() -> bool:
        return "replication_started" in await event_kinds(fleet.beta_api, "journal")

    assert await wait_until(replicating, 60, 0.2), await event_kinds(fleet.beta_api, "journal")
    async with PocketBaseClient(f"http://127.0.0.1:{port}") as client:
        await client.sign_in("admin@journal.example", created["superuser_password"])
        await client.notes()
        for number in range(5):
            await client.add(f"backed up {number}")
        await backed_up_offsite(fleet.beta_api, "journal")
        for number in range(3):  # in no snapshot: only the replica has them
            await client.add(f"replicated only {number}")
        everything = await records(client)
    written = time.time()
    level0 = s3_server.data / s3_server.bucket / "pockestrator/journal/replica/data.db"

    def shipped() -> bool:  # an LTX file uploaded after the last write
        return any(path.stat().st_mtime > written for path in level0.rglob("*.ltx"))

    async def shipped_yet() -> bool:
        return await asyncio.to_thread(shipped)

    assert await wait_until(shipped_yet, 60, 0.1), "litestream shipped nothing after the writes"
    os.kill(await fleet.beta.main_pid(), signal.SIGKILL)  # the host is lost, as above
    await fleet.beta.bus.stop_unit(unit_name("journal"))

    async def lost() -> bool:
        reply = await fleet.alpha_api.call("GET", "/services/journal")
        return reply.body["service"]["status"] == "node_lost"

    assert await wait_until(lost, 3 * LEASE, 0.2)
    asked = await fleet.alpha_api.call(
        "POST", "/services/journal/moves", {"to": "alpha", "from_backup": True}
    )
    assert asked.status == 202, asked.body
    move = await finished_move(fleet.alpha_api, "journal", asked.body["id"], 300)
    assert move["state"] == "done", move
    await wait_running(fleet.alpha_api, "journal", timeout=60)
    async with PocketBaseClient(f"http://127.0.0.1:{port}") as client:
        assert await records(client) == everything, "the replica's newest point, exactly"
    seeded = next(
        e
        for e in (await fleet.alpha_api.call("GET", "/services/journal/events")).body["events"]
        if e["kind"] == "seeded"
    )
    assert seeded["details"]["replica"] == "offsite", seeded
    await start_killable(fleet.beta)  # back for the fixture's teardown, without the copy

    async def beta_let_go() -> bool:
        return "stale_copy_removed" in await event_kinds(fleet.alpha_api, "journal")

    assert await wait_until(beta_let_go, 60, 0.2), fleet.beta.journal()[-3000:]
