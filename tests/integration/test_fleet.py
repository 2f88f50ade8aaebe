"""A fleet of two nodes on one machine: two sandboxes (each its own systemd manager,
journald and Caddy), two agents, one real PostgreSQL server they share as their store.

A service created through node alpha's API is placed by the scheduler on node beta (the
most memory left), is run by beta's agent (woken by NOTIFY: the resync is an hour away),
answers through beta's Caddy, and is stopped through alpha's API; alpha's host never runs
it, and alpha's API reads the state beta wrote. Both nodes hold their leases; the fleet
view of either shows both.

The nodes share a fleet secret: alpha's API answers a beta service's live status, logs
(followed too) and controls by signed calls to beta's agent, and waits for beta's
reconcile; a node that does not answer is NODE_UNREACHABLE. beta routes the fleet's
domains (fleet_routing), alpha does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from pockestrator.agent.daemon import Agent, api_factory
from pockestrator.agent.sandbox import Sandbox, free_port
from pockestrator.api import sse
from pockestrator.api.node_signing import (
    ANSWER_SIGNATURE_HEADER,
    ANSWER_TIME_HEADER,
    NODE_HEADER,
    NONCE_HEADER,
    STREAM,
    FrameChain,
    answer_headers,
    body_digest,
    signed_headers,
)
from pockestrator.api.owner_calls import internal_path
from pockestrator.config import StoreConfig
from pockestrator.specs.store import NodeInfo
from tests.testbed.api_client import Api, api_for, wait_running
from tests.testbed.cli_env import run_cli
from tests.testbed.impostor import Answering, Impostor
from tests.testbed.mirror import ReleaseMirror
from tests.testbed.postgres import PostgresServer
from tests.testbed.tls_front import make_certificates, tls_front
from tests.testbed.waiting import wait_for_pocketbase, wait_until

FLEET_SECRET = b"a-test-fleet-secret-of-more-than-32-bytes-0123456789"


@dataclass
class Node:
    name: str
    sandbox: Sandbox
    agent: Agent
    api: Api


@pytest.fixture(scope="module")
async def fleet(
    testbed_base: Path,
    release_mirror: ReleaseMirror,
    postgres_server: PostgresServer,
    pocketbase_versions: tuple[str, str],
) -> AsyncIterator[dict[str, Node]]:
    database = postgres_server.new_database()
    store = StoreConfig(
        backend="postgresql",
        dsn=postgres_server.dsn(database),
        password_file=postgres_server.password_file,
        sslmode="disable",  # loopback; a fleet's default is verify-full
    )
    boxes: list[Sandbox] = []
    agents: list[Agent] = []
    nodes: dict[str, Node] = {}
    shared = Path(tempfile.mkdtemp(prefix="tb-fleet-", dir=testbed_base))
    secret = shared / "fleet-secret"
    secret.write_bytes(FLEET_SECRET + b"\n")
    secret.chmod(0o600)
    # beta's API is published over TLS (a Caddy in front, docs/fleet.md): alpha calls it
    # at https:// and trusts the fleet's CA; alpha's own stays on plain loopback.
    certificates = make_certificates(shared / "ca")
    beta_api_port, beta_front_port = free_port(), free_port()
    fronts = contextlib.AsyncExitStack()
    try:
        await fronts.enter_async_context(
            tls_front(shared / "front", certificates, beta_front_port, beta_api_port)
        )
        for name in ("alpha", "beta"):
            box = Sandbox(Path(tempfile.mkdtemp(prefix=f"tb-{name}-", dir=testbed_base)))
            boxes.append(box)
            await box.start()
            tls: dict[str, object] = (
                {
                    "listen_port": beta_api_port,
                    "node_api_address": f"https://127.0.0.1:{beta_front_port}",
                }
                if name == "beta"
                else {"fleet_ca_file": certificates.ca}
            )
            config = release_mirror.agent_config(
                box,
                store=store,
                node_name=name,
                node_public_address=f"127.0.0.1:{box.caddy_http_port}",
                # The default lease (30 s, renewed every 10 s). A 6 s one lapsed for both
                # nodes while the first test read /nodes, with the machine loaded.
                fleet_secret_file=secret,
                # beta's Caddy serves the whole fleet's domains; alpha's only its own.
                fleet_routing=name == "beta",
                # Far away: only NOTIFY can wake an agent in time for these tests.
                resync_interval=3600.0,
                health_interval=1.0,
                **tls,
            )
            agent = Agent(config, api_factory=api_factory())
            await agent.start()
            agents.append(agent)
        async with api_for(agents[0]) as alpha_api, api_for(agents[1]) as beta_api:
            for agent, api, box in zip(agents, (alpha_api, beta_api), boxes, strict=True):
                name = agent.config.node
                nodes[name] = Node(name, box, agent, api)
            yield nodes
    finally:
        for agent in agents:
            await agent.stop()
        await fronts.aclose()
        for box in boxes:
            await box.stop()
            assert box.leftover_pids() == [], "a sandbox left processes behind"


async def test_both_nodes_hold_their_lease_and_either_shows_the_fleet(
    fleet: dict[str, Node],
) -> None:
    for node in fleet.values():
        reply = await node.api.call("GET", "/nodes")
        assert reply.status == 200, reply.body
        listed = {n["name"]: n for n in reply.body["nodes"]}
        assert set(listed) == {"alpha", "beta"}
        assert {n["state"] for n in listed.values()} == {"ready"}
        assert [n["name"] for n in listed.values() if n["this_node"]] == [node.name]
        assert listed["beta"]["api_address"] == fleet["beta"].agent.config.node_api_url


async def test_a_service_created_through_alpha_runs_on_beta_and_stops_through_alpha(
    fleet: dict[str, Node], pocketbase_versions: tuple[str, str]
) -> None:
    alpha, beta = fleet["alpha"], fleet["beta"]
    version = pocketbase_versions[1]
    # alpha's first service takes memory there; the next one is placed where more is left.
    first = {"project_name": "anchor", "port": free_port(), "pocketbase_version": version}
    first["resources"] = {"memory_max": "256M"}
    reply = await alpha.api.call("POST", "/services", first)
    assert reply.status == 201, reply.body
    await wait_running(alpha.api, "anchor", timeout=60)
    assert alpha.agent.store.node_of("anchor") == "alpha"

    body = {"project_name": "remote", "port": free_port(), "pocketbase_version": version}
    reply = await alpha.api.call("POST", "/services", body)
    assert reply.status == 201, reply.body
    assert alpha.agent.store.node_of("remote") == "beta"
    # beta runs it and writes its status to the store; alpha's API asks beta for the live
    # fields (a signed node-to-node call), so both answer the same running unit.
    status = await wait_running(beta.api, "remote", timeout=60)
    assert status["is_running"] is True
    through_alpha = await wait_running(alpha.api, "remote", timeout=10)
    assert through_alpha["pid"] == status["pid"] is not None, through_alpha
    assert "remote" in beta.agent.units.managed_names()
    assert "remote" not in alpha.agent.units.managed_names()
    assert "anchor" not in beta.agent.units.managed_names()

    events = await alpha.api.call("GET", "/services/remote/events")
    placed = [e for e in events.body["events"] if e["kind"] == "placed"]
    assert len(placed) == 1 and placed[0]["details"]["node"] == "beta"
    assert placed[0]["details"]["received_by"] == "alpha"

    # It answers through beta's Caddy, and alpha's Caddy does not serve it.
    assert await wait_for_pocketbase(beta.sandbox.caddy_url, "remote.localhost", timeout=30)
    async with (
        aiohttp.ClientSession(headers={"Host": "remote.localhost"}) as session,
        session.get(f"{alpha.sandbox.caddy_url}/api/health") as response,
    ):
        assert response.status != 200

    stopped = await alpha.api.call("POST", "/services/remote/control", {"action": "stop"})
    assert stopped.status in (200, 202), stopped.body

    async def stopped_on_beta() -> bool:
        reply = await beta.api.call("GET", "/services/remote/status")
        return reply.body.get("is_running") is False and reply.body.get("state") == "inactive"

    assert await wait_until(stopped_on_beta, 60, 0.2)
    through_alpha = await alpha.api.call("GET", "/services/remote/status")
    assert through_alpha.body["state"] == "inactive", through_alpha.body
    unit = await beta.agent.units.observe("remote")
    assert unit.status is None or not unit.status.is_running


async def test_a_spec_naming_its_node_runs_there_whichever_api_received_it(
    fleet: dict[str, Node], pocketbase_versions: tuple[str, str]
) -> None:
    alpha, beta = fleet["alpha"], fleet["beta"]
    body = placed("pinned", "alpha", pocketbase_versions[1])
    reply = await beta.api.call("POST", "/services", body)
    assert reply.status == 201, reply.body
    assert beta.agent.store.node_of("pinned") == "alpha"
    await wait_running(alpha.api, "pinned", timeout=60)
    assert "pinned" not in beta.agent.units.managed_names()
    unknown = {**body, "project_name": "nowhere", "port": free_port(), "node": "zeta"}
    refused = await beta.api.call("POST", "/services", unknown)
    assert refused.status in (400, 409), refused.body
    assert refused.codes() == {"node": "INVALID_VALUE"}


async def test_after_postgresql_restarts_under_the_agents_a_change_still_reaches_its_node(
    fleet: dict[str, Node], postgres_server: PostgresServer, pocketbase_versions: tuple[str, str]
) -> None:
    alpha, beta = fleet["alpha"], fleet["beta"]
    postgres_server.restart()
    # Through beta's API, on the port beta's "remote" holds: only alpha has it free, so
    # only alpha's agent, listening again after the restart, can run it (no resync soon).
    taken_on_beta = beta.agent.store.get_service("remote")
    assert taken_on_beta is not None

    async def created() -> bool:
        body = {
            "project_name": "after-restart",
            "port": taken_on_beta.spec.port,
            "pocketbase_version": pocketbase_versions[1],
        }
        reply = await beta.api.call("POST", "/services", body)
        assert reply.status in (201, 500, 503), reply.body  # 5xx: the pool's first try
        return reply.status == 201

    assert await wait_until(created, 30, 0.5)
    assert beta.agent.store.node_of("after-restart") == "alpha"
    await wait_running(alpha.api, "after-restart", timeout=60)
    assert "after-restart" in alpha.agent.units.managed_names()
    names = {s.name for s in alpha.agent.store.list_services()[0]}
    assert {"anchor", "remote", "after-restart"} <= names, "nothing written before was lost"
    # Both nodes share this machine's ports: "remote" (started again by the tests below)
    # would find its port held by alpha's PocketBase and crash-loop, so it is given back.
    deleted = await alpha.api.call("DELETE", "/services/after-restart", params={"purge": "true"})
    assert deleted.status in (200, 202), deleted.body

    async def port_free() -> bool:
        return "after-restart" not in alpha.agent.units.managed_names() and not port_taken(
            taken_on_beta.spec.port
        )

    assert await wait_until(port_free, 60, 0.2), "alpha's after-restart still holds the port"


def port_taken(port: int) -> bool:
    """Whether something listens on ``127.0.0.1:port`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def placed(name: str, node: str, version: str) -> dict[str, Any]:
    """A create body for ``name`` on ``node``, on a free port."""
    return {"project_name": name, "port": free_port(), "pocketbase_version": version, "node": node}


@contextlib.contextmanager
def node_for_the_test(alpha: Node, name: str, address: str) -> Iterator[None]:
    """``name`` registered at ``address`` in the fleet's store (1 byte of memory: the
    scheduler places nothing else there) for the block, its lease ended after it, so that
    no later test's service is placed on it."""
    store = alpha.agent.store
    store.register_node(NodeInfo(name, address, "", 1, 1), timedelta(minutes=10))
    try:
        yield
    finally:
        store.register_node(NodeInfo(name, address, "", 1, 1), timedelta(0))


@contextlib.asynccontextmanager
async def service_on_an_impostor(
    alpha: Node, node: str, name: str, version: str
) -> AsyncIterator[Impostor]:
    """``name`` created through alpha on ``node``, a registered node whose API is an
    impostor the test tells how to answer."""
    impostor = Impostor()
    async with impostor.serving() as address:
        with node_for_the_test(alpha, node, address):
            created = await alpha.api.call("POST", "/services", placed(name, node, version))
            assert created.status == 201, created.body
            yield impostor


async def cli_nodes(node: Node) -> tuple[int, str]:
    """``pockestrator nodes`` against ``node``'s API, as an operator runs it."""
    token, _record = node.agent.accounts.create_token("fleet cli")
    config = node.agent.config
    url = f"http://{config.listen_host}:{config.listen_port}"
    code, out, _err = await run_cli(url, token, "nodes", timeout=60)
    return code, out


async def test_the_cli_shows_the_fleet_and_fails_while_a_node_is_lost(
    fleet: dict[str, Node],
) -> None:
    alpha = fleet["alpha"]
    code, out = await cli_nodes(alpha)
    assert code == 0, out
    lines = {
        line.split()[1] if line.startswith("*") else line.split()[0]: line
        for line in out.splitlines()[1:]
    }
    assert lines["alpha"].startswith("* alpha") and " ready " in lines["alpha"]
    assert " ready " in lines["beta"]
    # A third host that registered once and went away: its lease has ended.
    alpha.agent.store.register_node(
        NodeInfo("gamma", "http://10.9.9.9:8091", "", 1024**3, 1), timedelta(0)
    )
    code, out = await cli_nodes(alpha)
    assert code == 1
    assert any(line.split()[:2] == ["gamma", "lost"] for line in out.splitlines())


async def test_wait_through_alpha_waits_for_betas_reconcile_and_every_view_names_the_node(
    fleet: dict[str, Node], pocketbase_versions: tuple[str, str]
) -> None:
    alpha, beta = fleet["alpha"], fleet["beta"]
    body = placed("waited", "beta", pocketbase_versions[1])
    reply = await alpha.api.call("POST", "/services", body, params={"wait": "true"})
    assert reply.status == 201, reply.body
    assert reply.body["reconciled"] is True
    # The answer came after beta's reconcile: the status beta wrote says so, and the unit
    # state is beta's (alpha's host has no such unit).
    stored = alpha.agent.store.get_status("waited")
    assert stored is not None and stored.observed_generation == reply.body["service"]["generation"]
    assert reply.body["systemd"]["status"] in ("active", "activating"), reply.body
    assert "waited" not in alpha.agent.units.managed_names()
    assert reply.body["service"]["node"] == "beta"
    listed = await alpha.api.call("GET", "/services")
    where = {s["project_name"]: s["node"] for s in listed.body["services"]}
    assert where["waited"] == "beta" and where["anchor"] == "alpha", where
    one = await beta.api.call("GET", "/services/anchor")
    assert one.body["service"]["node"] == "alpha"


async def test_logs_of_a_beta_service_are_read_and_followed_through_alpha(
    fleet: dict[str, Node],
) -> None:
    alpha, beta = fleet["alpha"], fleet["beta"]
    await wait_running(beta.api, "waited", timeout=60)
    through_alpha = await alpha.api.call("GET", "/services/waited/logs", params={"lines": "20"})
    assert through_alpha.status == 200, through_alpha.body
    cursors = [entry["cursor"] for entry in through_alpha.body["logs"]]
    assert cursors, "beta's journal has lines of the service"
    on_beta = await beta.api.call("GET", "/services/waited/logs", params={"lines": "500"})
    assert set(cursors) <= {entry["cursor"] for entry in on_beta.body["logs"]}
    # The host that answered has no such lines: they are beta's.
    assert "waited" not in alpha.agent.units.managed_names()

    headers = {"Authorization": f"Bearer {alpha.api.token}"}
    url = f"{alpha.api.root}/services/waited/logs"
    seen: list[str] = []
    async with alpha.api.session.get(
        url, params={"follow": "true", "lines": "3"}, headers=headers
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")

        async def first_event() -> None:
            async for line in response.content:
                if line.startswith(b"id: "):
                    seen.append(line[4:].decode().strip())
                    return

        await asyncio.wait_for(first_event(), 30)
    assert seen and seen[0] in {entry["cursor"] for entry in on_beta.body["logs"]}


def signed_call(
    target: str, caller: str, callee: str, secret: bytes = FLEET_SECRET
) -> dict[str, str]:
    return signed_headers(secret, "GET", target, caller, callee, time.time())


async def test_a_node_call_needs_a_fresh_signature_for_its_node_and_a_token_opens_none(
    fleet: dict[str, Node],
) -> None:
    alpha, beta = fleet["alpha"], fleet["beta"]
    target = internal_path("waited", "status")
    config = beta.agent.config
    url = f"http://{config.listen_host}:{config.listen_port}{target}"
    session = beta.api.session

    async def get(headers: dict[str, str]) -> tuple[int, dict[str, object]]:
        async with session.get(url, headers=headers) as response:
            return response.status, await response.json()

    good = signed_call(target, "alpha", "beta")
    code, body = await get(good)
    assert code == 200 and body["project_name"] == "waited", body
    refused = [
        {},  # nothing
        {"Authorization": f"Bearer {beta.api.token}"},  # an API token
        good,  # the same call again: a replay
        signed_call(target, "alpha", "gamma"),  # signed for another node
        signed_call(target, "alpha", "beta", b"x" * 40),  # another secret
        signed_call(internal_path("anchor", "status"), "alpha", "beta"),  # another path
    ]
    for headers in refused:
        code, body = await get(headers)
        assert code == 403 and body["code"] == "NODE_CALL_REFUSED", (headers, body)
    # And a node's signature opens no route of the public API.
    public = f"http://{config.listen_host}:{config.listen_port}/api/pockestrator/services"
    async with session.get(
        public, headers=signed_call("/api/pockestrator/services", "alpha", "beta")
    ) as response:
        assert response.status == 401
    # The secret is in no answer, and in no file of either sandbox (journal, store, units).
    read = 0
    for node in (alpha, beta):
        for path in node.sandbox.layout.root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                with contextlib.suppress(OSError):
                    assert FLEET_SECRET not in path.read_bytes(), path
                    read += 1
    assert read > 20, "the search read the sandboxes' files"


async def test_a_control_call_is_refused_on_its_headers_before_its_body_is_read(
    fleet: dict[str, Node],
) -> None:
    """beta answers a control call whose body never comes: a refusal is made on the
    headers (missing, stale), and a credential that holds so far, whichever node it
    names, still does not make it wait for more than its bound."""
    beta = fleet["beta"]
    config = beta.agent.config
    target = internal_path("waited", "control")

    async def answer_before_the_body(headers: dict[str, str]) -> str:
        reader, writer = await asyncio.open_connection(config.listen_host, config.listen_port)
        head = [
            f"POST {target} HTTP/1.1",
            f"Host: {config.listen_host}:{config.listen_port}",
            "Content-Type: application/json",
            "Content-Length: 100000",  # and not a byte of it is sent
            *(f"{key}: {value}" for key, value in headers.items()),
        ]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        await writer.drain()
        try:
            line = await asyncio.wait_for(reader.readline(), 30)
        except TimeoutError:
            raise AssertionError(f"beta waited for the body of a call with {headers}") from None
        finally:
            writer.close()
        return line.decode()

    def signed(caller: str, at: float) -> dict[str, str]:
        return signed_headers(FLEET_SECRET, "POST", target, caller, "beta", at, b"{}")

    refused = {
        "no credential": {},
        "a stale one": signed("alpha", time.time() - 600),
    }
    for why, headers in refused.items():
        assert " 403 " in await answer_before_the_body(headers), why
    # A fresh credential: judged on a body of at most BODY_LIMIT bytes, whether the node it
    # names is the fleet's or not (the answer must not say which names are).
    for caller in ("alpha", "omega"):
        assert " 413 " in await answer_before_the_body(signed(caller, time.time())), caller


async def test_an_unknown_node_and_a_forged_signature_are_refused_alike_before_any_lookup(
    fleet: dict[str, Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the secret nobody learns which node names the fleet has: a call naming a
    registered node with a forged signature, one naming an unknown node, and one signed
    with the secret by a name the fleet has not are answered the same (status, code,
    text), and none of the forged ones costs a store query (the same work for any name)."""
    beta = fleet["beta"]
    config = beta.agent.config
    target = internal_path("waited", "status")
    url = f"http://{config.listen_host}:{config.listen_port}{target}"
    looked_up: list[str] = []
    real_get_node = beta.agent.store.get_node

    def counting(name: str) -> Any:
        looked_up.append(name)
        return real_get_node(name)

    monkeypatch.setattr(beta.agent.store, "get_node", counting)

    async def get(headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        async with beta.api.session.get(url, headers=headers) as response:
            return response.status, await response.json()

    forged = {
        "a registered node, forged": signed_call(target, "alpha", "beta", b"y" * 40),
        "an unknown node, forged": signed_call(target, "omega", "beta", b"y" * 40),
    }
    answers = {why: await get(headers) for why, headers in forged.items()}
    assert looked_up == [], f"a forged call made beta look a node up: {looked_up}"
    answers["an unknown node, signed"] = await get(signed_call(target, "omega", "beta"))
    assert looked_up == ["omega"], looked_up  # looked up once its signature held
    first = answers["a registered node, forged"]
    assert first[0] == 403 and first[1]["code"] == "NODE_CALL_REFUSED", first
    for why, answer in answers.items():
        assert answer == first, f"{why} is told apart: {answer} != {first}"
    told = json.dumps(list(answers.values()))
    assert "omega" not in told and "registered" not in told, told
    # The fleet's own node still gets its answer.
    assert (await get(signed_call(target, "alpha", "beta")))[0] == 200


async def test_an_answer_not_signed_by_the_owner_for_this_call_is_node_unreachable(
    fleet: dict[str, Node], pocketbase_versions: tuple[str, str]
) -> None:
    """An impostor holds the address of node epsilon (a tenant on its port, a host on the
    path): alpha relays none of its answers unless signed for the call that asked."""
    alpha, beta = fleet["alpha"], fleet["beta"]
    # One of beta's real answers, signed, to a call the test made as alpha.
    target = internal_path("waited", "status")
    config = beta.agent.config
    url = f"http://{config.listen_host}:{config.listen_port}{target}"
    async with beta.api.session.get(url, headers=signed_call(target, "alpha", "beta")) as real:
        assert real.status == 200, await real.text()
        real_body = await real.read()
        real_signature = {k: real.headers[k] for k in (ANSWER_TIME_HEADER, ANSWER_SIGNATURE_HEADER)}

    def signed_by(secret: bytes, digest: str | None = None) -> Answering:
        def answering(request: web.Request) -> web.StreamResponse:
            headers = answer_headers(
                secret,
                200,
                request.headers[NONCE_HEADER],
                "epsilon",
                request.headers[NODE_HEADER],
                time.time(),
                digest or body_digest(real_body),
            )
            return web.Response(body=real_body, headers=headers, content_type="application/json")

        return answering

    def as_is(headers: dict[str, str]) -> Answering:
        return lambda _request: web.Response(
            body=real_body, headers=headers, content_type="application/json"
        )

    version = pocketbase_versions[1]
    async with service_on_an_impostor(alpha, "epsilon", "impersonated", version) as impostor:
        forged = {
            "unsigned": (as_is({}), "is not signed"),
            "beta's answer to another call": (as_is(real_signature), "does not hold"),
            "signed without the fleet's secret": (signed_by(b"x" * 40), "does not hold"),
        }
        calls = [
            ("GET", "/services/impersonated/status", None, None),
            ("GET", "/services/impersonated/logs", None, None),
            ("GET", "/services/impersonated/logs", None, {"follow": "true"}),
            ("POST", "/services/impersonated/control", {"action": "stop"}, None),
        ]
        for case, (answering, why) in forged.items():
            impostor.answering = answering
            for method, path, body, params in calls:
                taken = impostor.calls
                reply = await alpha.api.call(method, path, body, params=params)
                assert impostor.calls == taken + 1, (case, path, "the impostor was asked")
                assert reply.status == 502, (case, path, params, reply.body)
                assert reply.body["code"] == "NODE_UNREACHABLE", (case, path, reply.body)
                message = reply.body["message"]
                assert "epsilon" in message and why in message, (case, path, message)
        # What only a holder of the fleet's secret can make, alpha takes: the check
        # above refused the forgeries, not the way to them.
        impostor.answering = signed_by(FLEET_SECRET)
        taken = await alpha.api.call("GET", "/services/impersonated/status")
        assert taken.status == 200, taken.body


async def test_a_followed_log_is_relayed_only_up_to_a_frame_changed_on_the_way(
    fleet: dict[str, Node], pocketbase_versions: tuple[str, str]
) -> None:
    """Node theta's log stream comes through a host on the path that holds no secret: it
    keeps theta's signed head and signatures but changes a line, drops one or adds one.
    alpha passes on the lines before the change, without their signatures, and ends the
    stream there; an unchanged stream comes through whole."""
    alpha = fleet["alpha"]
    lines = [sse.frame(f"line {n}", event="log", event_id=f"c{n}") for n in range(4)]

    def stream_of(change: Callable[[list[bytes]], list[bytes]]) -> Answering:
        def answering(request: web.Request) -> web.StreamResponse:
            # theta's own answer to this call, signed with the secret theta holds...
            nonce, caller = request.headers[NONCE_HEADER], request.headers[NODE_HEADER]
            head = answer_headers(FLEET_SECRET, 200, nonce, "theta", caller, time.time(), STREAM)
            chain = FrameChain(FLEET_SECRET, nonce, "theta", caller, head[ANSWER_SIGNATURE_HEADER])
            signed = [chain.sign(frame) for frame in [sse.retry(3000), *lines]]
            # ...and what the host on the path made of its frames.
            return web.Response(body=b"".join(change(signed)), headers={**head, **sse.HEADERS})

        return answering

    def tampered(signed: list[bytes]) -> list[bytes]:
        return [*signed[:3], signed[3].replace(b"line 2", b"line 9"), *signed[4:]]

    def dropped(signed: list[bytes]) -> list[bytes]:
        return [*signed[:3], *signed[4:]]

    def added(signed: list[bytes]) -> list[bytes]:
        return [*signed[:3], sse.frame("line 9", event="log", event_id="c9"), *signed[3:]]

    version = pocketbase_versions[1]
    async with service_on_an_impostor(alpha, "theta", "relayed", version) as impostor:
        url = f"{alpha.api.root}/services/relayed/logs"
        auth = {"Authorization": f"Bearer {alpha.api.token}"}

        async def followed() -> bytes:
            async with alpha.api.session.get(
                url, params={"follow": "true"}, headers=auth
            ) as response:
                assert response.status == 200, await response.text()
                return await asyncio.wait_for(response.read(), 30)

        impostor.answering = stream_of(lambda signed: signed)
        whole = await followed()
        assert whole == sse.retry(3000) + b"".join(lines), whole
        for change in (tampered, dropped, added):
            impostor.answering = stream_of(change)
            relayed = await followed()
            assert relayed == sse.retry(3000) + b"".join(lines[:2]), (change, relayed)


async def test_alpha_calls_beta_over_tls_it_verifies_and_refuses_a_certificate_of_another_ca(
    fleet: dict[str, Node], testbed_base: Path, pocketbase_versions: tuple[str, str]
) -> None:
    """beta registered only its https:// front (the fixture's Caddy, with a certificate of
    the fleet's CA, which alpha trusts by ``fleet_ca_file``): each answer alpha relays from
    beta came through it. A front whose certificate another CA signed is not taken."""
    alpha, beta = fleet["alpha"], fleet["beta"]
    registered = alpha.agent.store.get_node("beta")
    assert registered is not None and registered.api_address.startswith("https://127.0.0.1:")
    status = await alpha.api.call("GET", "/services/waited/status")
    assert status.status == 200 and status.body["systemd_status"] == "active", status.body

    folder = Path(tempfile.mkdtemp(prefix="tb-other-ca-", dir=testbed_base))
    port = free_port()
    front = tls_front(folder, make_certificates(folder / "ca"), port, beta.agent.config.listen_port)
    async with front as address:
        with node_for_the_test(alpha, "kappa", address):
            body = placed("untrusted", "kappa", pocketbase_versions[1])
            assert (await alpha.api.call("POST", "/services", body)).status == 201
            reply = await alpha.api.call("GET", "/services/untrusted/status")
            assert reply.status == 502 and reply.body["code"] == "NODE_UNREACHABLE", reply.body
            assert "Certificate" in reply.body["message"], reply.body


async def test_a_node_at_a_plain_http_address_on_the_network_is_not_called(
    fleet: dict[str, Node], pocketbase_versions: tuple[str, str]
) -> None:
    """A registered http:// address of another host (here TEST-NET-1, which nobody
    answers) is refused before any call is made: its answers would cross in the clear."""
    alpha = fleet["alpha"]
    with node_for_the_test(alpha, "zeta", "http://192.0.2.10:8091"):
        body = placed("in-the-clear", "zeta", pocketbase_versions[1])
        assert (await alpha.api.call("POST", "/services", body)).status == 201
        reply = await alpha.api.call("GET", "/services/in-the-clear/status")
        assert reply.status == 502 and reply.body["code"] == "NODE_UNREACHABLE", reply.body
        assert "plain http://" in reply.body["message"], reply.body
        assert "fleet_plain_http" in reply.body["message"], reply.body


async def test_a_lost_nodes_status_reads_node_lost_and_its_logs_are_node_unreachable(
    fleet: dict[str, Node], pocketbase_versions: tuple[str, str]
) -> None:
    alpha = fleet["alpha"]
    # A node that registered and went away: its API's port is closed, its lease over (so
    # that no other test's service is placed there).
    alpha.agent.store.register_node(
        NodeInfo("delta", f"http://127.0.0.1:{free_port()}", "", 1024**3, 1), timedelta(0)
    )
    body = placed("stranded", "delta", pocketbase_versions[1])
    reply = await alpha.api.call("POST", "/services", body)
    assert reply.status == 201, reply.body
    for params in (None, {"follow": "true"}):
        answer = await alpha.api.call("GET", "/services/stranded/logs", params=params)
        assert answer.status == 502, (params, answer.body)
        assert answer.body["code"] == "NODE_UNREACHABLE" and "delta" in answer.body["message"]
    # Nobody to ask for the live fields: the stored status, node_lost, unknown and why.
    status = await alpha.api.call("GET", "/services/stranded/status")
    assert status.status == 200, status.body
    assert status.body["state"] == "node_lost"
    assert (status.body["systemd_status"], status.body["pid"]) == ("unknown", None)
    assert "delta" in status.body["error_message"]
    assert "stranded" not in alpha.agent.units.managed_names()
    # The service itself still reads (from the store); its runtime is unknown, and why.
    one = await alpha.api.call("GET", "/services/stranded")
    assert one.status == 200 and one.body["service"]["node"] == "delta"
    runtime = one.body["runtime_status"]
    assert (runtime["systemd_status"], runtime["caddy_status"]) == ("unknown", "unknown")
    assert (
        "NODE_UNREACHABLE" not in runtime["error_message"] and "delta" in runtime["error_message"]
    )


async def test_with_routing_on_betas_caddy_serves_alphas_service_and_alphas_with_it_off_does_not(
    fleet: dict[str, Node], pocketbase_versions: tuple[str, str]
) -> None:
    alpha, beta = fleet["alpha"], fleet["beta"]
    body = placed("routed", "alpha", pocketbase_versions[1])
    reply = await beta.api.call("POST", "/services", body, params={"wait": "true"})
    assert reply.status == 201 and reply.body["reconciled"] is True, reply.body
    # beta (routing on) passes routed.localhost on to alpha's Caddy, woken by the notice of
    # the new service (the resync is an hour away); alpha's PocketBase answers.
    assert await wait_for_pocketbase(beta.sandbox.caddy_url, "routed.localhost", timeout=30)
    route = beta.agent.config.caddy_sites_dir / "_route-routed.caddy"
    assert f"reverse_proxy http://{alpha.agent.config.node_public_address}" in route.read_text()
    assert "routed" not in beta.agent.units.managed_names()
    # alpha (routing off) keeps no route: a beta service does not answer through it.
    assert not list(alpha.agent.config.caddy_sites_dir.glob("_route-*"))
    async with (
        aiohttp.ClientSession(headers={"Host": "waited.localhost"}) as session,
        session.get(f"{alpha.sandbox.caddy_url}/api/health") as response,
    ):
        assert response.status == 404

    # Deleted through alpha's API: beta's route goes with it.
    deleted = await alpha.api.call("DELETE", "/services/routed", params={"purge": "true"})
    assert deleted.status in (200, 202), deleted.body

    async def route_gone() -> bool:
        return not route.exists()

    assert await wait_until(route_gone, 30, 0.1)

    async def not_served() -> bool:
        async with (
            aiohttp.ClientSession(headers={"Host": "routed.localhost"}) as session,
            session.get(f"{beta.sandbox.caddy_url}/api/health") as response,
        ):
            return response.status == 404

    assert await wait_until(not_served, 30, 0.2)


async def test_a_secret_value_for_a_service_placed_on_another_node_is_refused_on_its_field(
    fleet: dict[str, Node], pocketbase_versions: tuple[str, str]
) -> None:
    alpha, beta = fleet["alpha"], fleet["beta"]
    value = "a-smtp-password-that-must-stay-nowhere"
    body = {
        **placed("mailer", "beta", pocketbase_versions[1]),
        "settings": {"smtp": {"host": "smtp.example.com", "password": {"value": value}}},
    }
    refused = await alpha.api.call("POST", "/services", body)
    assert refused.status == 400, refused.body
    assert refused.codes() == {"settings.smtp.password": "SECRET_ON_ANOTHER_NODE"}
    assert value not in str(refused.body)
    assert alpha.agent.store.get_service("mailer") is None
    # Sent to the owning node's API, it is taken (and stays on the host that uses it).
    taken = await beta.api.call("POST", "/services", body)
    assert taken.status == 201, taken.body
    assert (await beta.api.call("DELETE", "/services/mailer", params={"purge": "true"})).status in (
        200,
        202,
    )


async def test_a_watch_through_alpha_sees_betas_reconcile_as_it_happens(
    fleet: dict[str, Node],
) -> None:
    alpha, beta = fleet["alpha"], fleet["beta"]
    start = await beta.api.call("POST", "/services/remote/control", {"action": "start"})
    assert start.status == 200, start.body
    headers = {"Authorization": f"Bearer {alpha.api.token}"}
    seen: list[str] = []
    async with alpha.api.session.get(
        f"{alpha.api.root}/services/remote", params={"watch": "true"}, headers=headers
    ) as response:
        assert response.status == 200

        runtimes: list[dict[str, object]] = []

        async def next_status() -> str:
            async for line in response.content:
                if line.startswith(b"data: "):
                    data = json.loads(line[6:])
                    runtimes.append(data["runtime_status"])
                    return str(data["service"]["status"])
            raise AssertionError("the watch ended")

        async def until(state: str) -> None:
            while not seen or seen[-1] != state:
                seen.append(await next_status())

        # Active (a moment of "error" first is beta's settle signing in before the new
        # process is ready, which the next health probe ends).
        await asyncio.wait_for(until("active"), 60)
        # The watch's runtime status is beta's (alpha's host has no such unit or site).
        assert runtimes[0]["caddy_status"] == "configured", runtimes[0]
        # Through beta's API: only the store's notice of beta's status can tell alpha.
        stop = await beta.api.call("POST", "/services/remote/control", {"action": "stop"})
        assert stop.status == 200, stop.body
        await asyncio.wait_for(until("inactive"), 30)
    assert seen[-1] == "inactive", seen


async def test_start_and_restart_through_alpha_act_on_betas_unit(fleet: dict[str, Node]) -> None:
    alpha, beta = fleet["alpha"], fleet["beta"]
    # "remote" was stopped through alpha; beta's unit starts again, and the answer (after
    # beta's reconcile) says what beta's systemd shows.
    started = await alpha.api.call("POST", "/services/remote/control", {"action": "start"})
    assert started.status == 200, started.body
    assert started.body["reconciled"] is True
    assert started.body["systemd"]["status"] in ("active", "activating"), started.body

    async def live_pid(api: Api) -> int:
        seen: dict[str, object] = {}

        async def active() -> bool:
            seen.update((await api.call("GET", "/services/remote/status")).body)
            return seen.get("systemd_status") == "active" and seen.get("pid") is not None

        assert await wait_until(active, 60, 0.1), seen
        return int(str(seen["pid"]))

    before = await live_pid(beta.api)
    restarted = await alpha.api.call("POST", "/services/remote/control", {"action": "restart"})
    assert restarted.status == 200, restarted.body
    after = await live_pid(alpha.api)
    assert after != before, "beta's unit was restarted: a new process"
    # A service's answer carries beta's runtime status too.
    one = await alpha.api.call("GET", "/services/remote")
    runtime = one.body["runtime_status"]
    # (alpha's host has neither unit nor site: its own view would be missing and not running)
    assert runtime["is_running"] is True and runtime["caddy_status"] == "configured", runtime
    assert "remote" not in alpha.agent.units.managed_names()


async def test_an_idle_agent_holds_at_most_its_pool_and_one_listening_connection(
    fleet: dict[str, Node], postgres_server: PostgresServer
) -> None:
    alpha = fleet["alpha"]
    dsn = alpha.agent.config.store.dsn
    assert dsn is not None
    name = dsn.split("dbname=")[1].split()[0]
    held = int(
        postgres_server.psql(
            "SELECT count(*) FROM pg_stat_activity "
            f"WHERE application_name = 'pockestrator' AND datname = '{name}'"
        )
    )
    pool = alpha.agent.config.store.pool_size
    # Each of the two agents: one connection listening, a pool of 1 to pool_size.
    assert 2 * 2 <= held <= 2 * (pool + 1), held
