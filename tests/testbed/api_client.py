"""A client of a test agent's REST API with one token, and the calls most tests make.

``Api.call`` sends JSON (or raw bytes) with the bearer token and decodes the answer;
``create`` makes a service and waits for its first reconcile; ``wait_running`` waits until
its status says it runs; ``notes_service`` makes one that runs with a ``notes`` collection
in its PocketBase; ``api_for`` makes a client of a running agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import aiohttp

from pockestrator.agent.daemon import Agent
from pockestrator.agent.sandbox import free_port
from tests.testbed.pocketbase_client import PocketBaseClient
from tests.testbed.waiting import wait_until

JSON_TYPE = "application/json"


@dataclass
class Reply:
    status: int
    body: Any
    headers: Any

    def codes(self) -> dict[str, str]:
        return {item["field"]: item["code"] for item in self.body["errors"]}


class Api:
    """A client of the agent's API with one token."""

    def __init__(self, session: aiohttp.ClientSession, root: str, token: str) -> None:
        self.session = session
        self.root = root
        self.token = token

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        content_type: str = JSON_TYPE,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        sent = {"Authorization": f"Bearer {self.token}", **(headers or {})}
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is not None:
            sent["Content-Type"] = content_type
        async with self.session.request(
            method,
            self.root + path,
            data=data,
            params=params,
            headers=sent,
            timeout=aiohttp.ClientTimeout(total=120),
        ) as response:
            return await reply_of(response)


async def reply_of(response: aiohttp.ClientResponse) -> Reply:
    """An answer's status, its body (decoded when it is JSON, else its text) and headers."""
    text = await response.text()
    try:
        decoded: Any = json.loads(text)
    except ValueError:
        decoded = text
    return Reply(response.status, decoded, response.headers)


@contextlib.asynccontextmanager
async def api_for(agent: Agent) -> AsyncIterator[Api]:
    """A client of ``agent``'s API with a token made for it (as ``pockestrator up`` does)."""
    token, _record = agent.accounts.create_token("integration tests")
    config = agent.config
    async with aiohttp.ClientSession() as session:
        yield Api(
            session, f"http://{config.listen_host}:{config.listen_port}/api/pockestrator", token
        )


async def create(api: Api, version: str, name: str, **fields: Any) -> dict[str, Any]:
    body = {"project_name": name, "port": free_port(), "pocketbase_version": version, **fields}
    reply = await api.call("POST", "/services", body, params={"wait": "true"})
    assert reply.status == 201, reply.body
    assert reply.body["reconciled"] is True
    return dict(reply.body)


async def wait_running(api: Api, name: str, timeout: float = 30.0) -> dict[str, Any]:
    latest: dict[str, Any] = {}

    async def running() -> bool:
        reply = await api.call("GET", f"/services/{name}/status")
        latest.update(reply.body)
        return reply.status == 200 and reply.body["is_running"] and reply.body["state"] == "active"

    assert await wait_until(running, timeout, 0.1), latest
    return latest


class NotesService(NamedTuple):
    client: PocketBaseClient  # signed in as the first superuser
    password: str  # that superuser's password
    created: dict[str, Any]  # the create's answer


async def notes_service(
    api: Api, version: str, name: str, notes: int = 0, **fields: Any
) -> NotesService:
    """A running service ``name`` whose first superuser is ``admin@{name}.example``, with a
    ``notes`` collection holding ``notes`` records ("note 0", "note 1", ...)."""
    email = f"admin@{name}.example"
    created = await create(api, version, name, superuser_email=email, **fields)
    await wait_running(api, name)
    client = PocketBaseClient(f"http://127.0.0.1:{created['service']['port']}")
    password = str(created["superuser_password"])
    await client.sign_in(email, password)
    await client.notes()
    for number in range(notes):
        await client.add(f"note {number}")
    return NotesService(client, password, created)


async def read_sse(
    response: aiohttp.ClientResponse, count: int, timeout: float = 30.0
) -> list[dict[str, Any]]:
    """The next ``count`` server-sent events of ``response`` (``id``, ``event`` and JSON
    ``data``, as far as each has them), comments and keep-alives passed over; read here
    line by line, not by the CLI's parser, so a framing fault of the API is seen."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    try:
        async with asyncio.timeout(timeout):
            while len(events) < count:
                line = (await response.content.readline()).decode().rstrip("\n")
                if line.startswith("id: "):
                    current["id"] = line[4:]
                elif line.startswith("event: "):
                    current["event"] = line[7:]
                elif line.startswith("data: "):
                    current["data"] = json.loads(line[6:])
                elif line == "" and "data" in current:
                    events.append(current)
                    current = {}
    except TimeoutError:
        raise AssertionError(
            f"{len(events)} of {count} server-sent events arrived within {timeout:g} s: {events}"
        ) from None
    return events
