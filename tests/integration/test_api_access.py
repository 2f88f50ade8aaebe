"""Who may call the API, and how it answers what it does not serve: tokens, sessions,
login throttling, the Host and Origin checks, 401/404/405/413 as JSON, on a real agent.

The module's agent keeps the time of a ``FakeClock``: lock-outs and sessions expire when a
test advances it, never because the machine was slow (an Argon2 check that outlasted a
200 ms lock once turned a 429 into a 200). Logins are throttled by client address, so the
login tests connect from addresses of their own (all of 127/8 is this machine): one
test's failures never lock another's attempts, and an attacker and an admin are two
addresses, as they are in the world.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from pockestrator.accounts import THROTTLE_CAP_SECONDS, create_admin
from pockestrator.agent.daemon import Agent
from pockestrator.agent.sandbox import Sandbox, free_port
from pockestrator.api.openapi import build_openapi
from pockestrator.api.routing import Operation
from pockestrator.api.server import STATIC_DIR, all_operations, build_app
from pockestrator.clock import FakeClock
from pockestrator.config import AgentConfig
from tests.testbed.api_client import Reply, reply_of
from tests.testbed.mirror import ReleaseMirror

EXTRA_HOST = "pockestrator.example.test"
ADMIN_EMAIL = "root@example.test"
ADMIN_PASSWORD = "a long and careful password"


@pytest.fixture(scope="module")
async def agent_config(sandbox: Sandbox, release_mirror: ReleaseMirror) -> AgentConfig:
    """The shared configuration, plus one extra Host name the API must answer to."""
    return release_mirror.agent_config(
        sandbox,
        allowed_hosts=(EXTRA_HOST,),
    )


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def agent_clock(clock: FakeClock) -> FakeClock:
    """The shared running agent runs on the module's fake clock."""
    return clock


class Client:
    def __init__(
        self, session: aiohttp.ClientSession, agent: Agent, port: int | None = None
    ) -> None:
        self.session = session
        self.origin = f"http://{agent.config.listen_host}:{port or agent.config.listen_port}"
        self.root = self.origin + "/api/pockestrator"

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: Any = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        absolute: bool = False,
    ) -> Reply:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        url = (self.origin if absolute else self.root) + path
        async with self.session.request(method, url, data=data, headers=sent) as response:
            return await reply_of(response)


@pytest.fixture(scope="module")
async def client(agent: Agent) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as session:
        yield Client(session, agent)


# Client addresses for the login tests: every one of 127/8 is this machine, and a test
# that takes fresh ones meets no failure another test left behind.
_ADDRESSES = (f"127.0.{n // 200 + 1}.{n % 200 + 2}" for n in itertools.count())


def fresh_address() -> str:
    """A client address no other test in this module has used."""
    return next(_ADDRESSES)


@asynccontextmanager
async def client_at(agent: Agent, address: str, port: int | None = None) -> AsyncIterator[Client]:
    """A client whose connections come from ``address`` (its TCP peer, as the API sees it)."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        yield Client(session, agent, port)


async def log_in(
    client: Client, email: str, password: str, headers: dict[str, str] | None = None
) -> Reply:
    body = {"email": email, "password": password}
    return await client.call("POST", "/auth/login", body=body, headers=headers)


def seen(reply: Reply) -> tuple[int, Any, dict[str, str]]:
    """Everything a client can tell from an answer but its time: status, body, headers."""
    headers = {name: value for name, value in reply.headers.items() if name != "Date"}
    return reply.status, reply.body, headers


@pytest.fixture(scope="module")
def token(agent: Agent) -> str:
    """A token made by the store itself, as `pockestrator up` and the CLI make them."""
    plaintext, _record = agent.accounts.create_token("bootstrap")
    return plaintext


@pytest.fixture(scope="module")
def admin(agent: Agent) -> str:
    create_admin(agent.accounts, ADMIN_EMAIL, ADMIN_PASSWORD, agent.config.password_hashing)
    return ADMIN_EMAIL


def concrete(path: str) -> str:
    """A path of the document with its parameters filled in (any value: auth comes first)."""
    path = path.replace("/api/pockestrator", "").replace("{id}", "something")
    return re.sub(r"\{[a-z_]+\}", "20261202T031500Z", path)


PROTECTED = [
    (method.upper(), path)
    for path, item in build_openapi(all_operations())["paths"].items()
    for method, operation in item.items()
    if operation.get("security") != []
]


def assert_error(reply: Reply, status: int, code: str) -> None:
    assert reply.status == status, reply.body
    assert isinstance(reply.body, dict), reply.body
    assert reply.body["code"] == code
    assert reply.body["status"] == "error"
    assert reply.body["errors"] and reply.body["details"]
    assert "Traceback" not in json.dumps(reply.body)


@pytest.mark.parametrize(("method", "path"), PROTECTED)
async def test_every_protected_endpoint_answers_401_json_without_a_valid_token(
    client: Client, token: str, method: str, path: str
) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer pks_not-a-real-token"},
        {"Authorization": "Bearer pkss_not-a-real-session"},
        {"Authorization": f"Basic {token}"},
        {"Authorization": "Bearer"},
        {"Authorization": token},
    ):
        reply = await client.call(method, concrete(path), headers=headers, body={})
        assert_error(reply, 401, "UNAUTHORIZED")
        assert reply.headers["WWW-Authenticate"].startswith('Bearer realm="pockestrator"')


async def test_a_store_created_token_works_and_records_its_use(
    client: Client, token: str, agent: Agent
) -> None:
    reply = await client.call("GET", "/system/info", token=token)
    assert reply.status == 200
    used = [t for t in agent.accounts.list_tokens() if t.name == "bootstrap"]
    assert used and used[0].last_used_at is not None


async def test_tokens_are_created_listed_and_revoked(client: Client, token: str) -> None:
    created = await client.call("POST", "/tokens", token=token, body={"name": "ci"})
    assert created.status == 201
    new_token = created.body["token"]
    assert new_token.startswith("pks_") and created.body["name"] == "ci"
    assert (await client.call("GET", "/services", token=new_token)).status == 200

    listed = await client.call("GET", "/tokens", token=token)
    assert listed.status == 200
    assert listed.body["total"] == len(listed.body["tokens"])
    entry = next(t for t in listed.body["tokens"] if t["id"] == created.body["id"])
    assert entry["name"] == "ci" and entry["revoked"] is False
    assert entry["last_used_at"] is not None
    assert new_token not in json.dumps(listed.body)

    revoked = await client.call("DELETE", f"/tokens/{created.body['id']}", token=token)
    assert revoked.status == 200 and revoked.body["revoked"] is True
    assert_error(await client.call("GET", "/services", token=new_token), 401, "UNAUTHORIZED")
    again = await client.call("DELETE", f"/tokens/{created.body['id']}", token=token)
    assert again.status == 200 and again.body["message"] == "Token was already revoked"
    assert_error(await client.call("DELETE", "/tokens/nope", token=token), 404, "TOKEN_NOT_FOUND")
    for body, code in (
        ({}, "FIELD_REQUIRED"),
        ({"name": ""}, "INVALID_VALUE"),
        ({"name": "a\nb"}, "INVALID_VALUE"),
        ({"name": 5}, "INVALID_TYPE"),
    ):
        reply = await client.call("POST", "/tokens", token=token, body=body)
        assert reply.status == 400 and reply.body["errors"][0]["code"] == code, body


async def test_a_password_hashed_otherwise_is_hashed_again_as_configured_at_its_login(
    agent: Agent,
) -> None:
    """The CLI hashes with the default; this agent is configured for OWASP's minimum."""
    email = "rehashed@example.test"
    create_admin(agent.accounts, email, ADMIN_PASSWORD, "rfc9106-low-memory")
    before = agent.accounts.get_admin(email)
    assert before is not None and "$m=65536,t=3,p=4$" in before.password_hash
    async with client_at(agent, fresh_address()) as client:
        assert (await log_in(client, email, ADMIN_PASSWORD)).status == 200
        after = agent.accounts.get_admin(email)
        assert after is not None and "$m=19456,t=2,p=1$" in after.password_hash
        assert (await log_in(client, email, ADMIN_PASSWORD)).status == 200
        again = agent.accounts.get_admin(email)
        assert again is not None and again.password_hash == after.password_hash


async def test_an_admin_logs_in_for_an_expiring_session_and_logs_out(
    client: Client, admin: str, token: str
) -> None:
    login = await client.call(
        "POST", "/auth/login", body={"email": admin.upper(), "password": ADMIN_PASSWORD}
    )
    assert login.status == 200, login.body
    session = login.body["token"]
    assert session.startswith("pkss_") and login.body["token_type"] == "Bearer"
    assert login.body["expires_in"] == 12 * 3600
    assert login.body["admin"]["email"] == admin
    assert (await client.call("GET", "/services", token=session)).status == 200

    out = await client.call("POST", "/auth/logout", token=session)
    assert out.status == 200 and out.body["revoked"] is True
    assert_error(await client.call("GET", "/services", token=session), 401, "UNAUTHORIZED")
    not_session = await client.call("POST", "/auth/logout", token=token)
    assert_error(not_session, 400, "NOT_A_SESSION")


async def test_failed_logins_of_an_email_at_an_address_lock_it_for_growing_delays(
    agent: Agent, admin: str, clock: FakeClock
) -> None:
    wrong = {"email": admin, "password": "wrong password"}
    right = {"email": admin, "password": ADMIN_PASSWORD}
    async with client_at(agent, fresh_address()) as client:
        failed = await client.call("POST", "/auth/login", body=wrong)
        assert_error(failed, 401, "INVALID_CREDENTIALS")
        # Locked for 2**1 * 100 ms: even the right password is not checked meanwhile,
        # however long the first attempt's password check took.
        locked = await client.call("POST", "/auth/login", body=right)
        assert_error(locked, 429, "LOGIN_THROTTLED")
        assert locked.headers["Retry-After"] == "1"
        clock.advance(0.199)
        assert (await client.call("POST", "/auth/login", body=right)).status == 429
        clock.advance(0.001)
        failed = await client.call("POST", "/auth/login", body=wrong)
        assert_error(failed, 401, "INVALID_CREDENTIALS")
        clock.advance(0.2)
        assert (await client.call("POST", "/auth/login", body=right)).status == 429  # 400 ms
        clock.advance(0.2)
        assert (await client.call("POST", "/auth/login", body=right)).status == 200
        # The success forgot the failures: a typo now costs 200 ms again.
        assert_error(
            await client.call("POST", "/auth/login", body=wrong), 401, "INVALID_CREDENTIALS"
        )
        clock.advance(0.2)
        assert (await client.call("POST", "/auth/login", body=right)).status == 200


async def test_guesses_sent_together_meet_the_lock_instead_of_all_being_checked(
    agent: Agent, clock: FakeClock
) -> None:
    email = "racer@example.test"
    create_admin(agent.accounts, email, ADMIN_PASSWORD, agent.config.password_hashing)
    wrong = {"email": email, "password": "wrong password"}
    async with client_at(agent, fresh_address()) as client:
        replies = await asyncio.gather(
            *(client.call("POST", "/auth/login", body=wrong) for _ in range(8))
        )
        # One guess is checked; the rest arrive while the e-mail is locked at this address,
        # and the lock lasts until the clock moves, however slow the machine.
        assert sorted(reply.status for reply in replies) == [401] + [429] * 7
        # Only that one counted: the next failure locks for 2**2 * 100 ms, not 2**9.
        clock.advance(0.2)
        assert (await client.call("POST", "/auth/login", body=wrong)).status == 401
        clock.advance(0.4)
        right = {"email": email, "password": ADMIN_PASSWORD}
        assert (await client.call("POST", "/auth/login", body=right)).status == 200


async def test_an_unknown_account_gets_the_same_answer_as_a_wrong_password(
    agent: Agent, admin: str
) -> None:
    async with (
        client_at(agent, fresh_address()) as first,
        client_at(agent, fresh_address()) as second,
    ):
        unknown = await log_in(first, "nobody@example.test", "whatever")
        wrong = await log_in(second, admin, "nope")
        assert_error(unknown, 401, "INVALID_CREDENTIALS")
        assert seen(wrong) == seen(unknown)
        for body in (
            {},
            {"email": admin},
            {"email": admin, "password": ""},
            {"email": 1, "password": 2},
        ):
            assert (await first.call("POST", "/auth/login", body=body)).status == 400


# -- login throttling: per (e-mail, client address) and per client address -------------

WRONG = "not the password at all"


async def test_two_quick_bad_logins_do_not_tell_a_known_account_from_an_unknown_one(
    agent: Agent, admin: str
) -> None:
    async with (
        client_at(agent, fresh_address()) as known,
        client_at(agent, fresh_address()) as unknown,
    ):
        for_known = [seen(await log_in(known, admin, WRONG)) for _ in range(2)]
        for_unknown = [seen(await log_in(unknown, "nobody@example.test", WRONG)) for _ in range(2)]
    assert for_known == for_unknown
    assert [status for status, _body, _headers in for_known] == [401, 429]
    assert for_known[1][2]["Retry-After"] == "1"


# Attempts at e-mails "a" and "b" from one address: how far the clock moves after each,
# and the answer (status, Retry-After) the rule gives, whichever e-mail has an account.
ATTEMPTS = [
    ("a", 0, 401, None), ("b", 0, 401, None),
    ("a", 0, 429, "1"), ("b", 0.25, 429, "1"),  # each e-mail locked for 200 ms
    ("a", 0, 401, None), ("b", 0, 401, None),
    ("a", 0.5, 429, "1"),  # 400 ms now
    ("a", 0, 401, None), ("b", 1, 401, None),
    ("b", 0, 401, None), ("a", 2, 401, None),
    ("a", 0, 401, None), ("b", 4, 401, None),  # the address's tenth failure, 3.75 s in
    ("a", 8, 429, "293"), ("b", 0, 429, "285"),  # the address waits for its bucket
    ("a", 16, 429, "285"), ("b", 0, 429, "269"),
    ("a", 32, 429, "269"), ("b", 0, 429, "237"),
    ("a", 0, 429, "237"), ("b", 64, 429, "237"),
    ("a", 0, 429, "173"), ("b", 300, 429, "173"),
    ("a", 0, 401, None),  # the bucket has room for one more 300 s after it filled
    ("b", 0, 429, "173"),
]  # fmt: skip


async def test_any_sequence_of_bad_logins_is_answered_alike_whichever_email_exists(
    agent: Agent, admin: str, clock: FakeClock
) -> None:
    """The same attempts from two addresses, the known account "a" at one and "b" at the
    other, in lockstep: every answer must match, lock-outs and Retry-After included."""
    roles = ({"a": admin, "b": "ghost-1@example.test"}, {"a": "ghost-2@example.test", "b": admin})
    async with (
        client_at(agent, fresh_address()) as first,
        client_at(agent, fresh_address()) as second,
    ):
        for step, (who, advance, status, retry_after) in enumerate(ATTEMPTS):
            one = seen(await log_in(first, roles[0][who], WRONG))
            other = seen(await log_in(second, roles[1][who], WRONG))
            assert one == other, step
            assert (one[0], one[2].get("Retry-After")) == (status, retry_after), step
            clock.advance(advance)


async def test_an_attacker_failing_every_300_seconds_does_not_lock_the_admin_out_elsewhere(
    agent: Agent, admin: str, clock: FakeClock
) -> None:
    async with (
        client_at(agent, fresh_address()) as attacker,
        client_at(agent, fresh_address()) as owner,
    ):
        for _round in range(14):
            assert_error(await log_in(attacker, admin, WRONG), 401, "INVALID_CREDENTIALS")
            locked = await log_in(attacker, admin, ADMIN_PASSWORD)
            assert_error(locked, 429, "LOGIN_THROTTLED")  # even the right password, there
            signed_in = await log_in(owner, admin, ADMIN_PASSWORD)
            assert signed_in.status == 200, signed_in.body
            clock.advance(THROTTLE_CAP_SECONDS)
        # By now the attacker's address waits the whole cap after each failure.
        assert_error(await log_in(attacker, admin, WRONG), 401, "INVALID_CREDENTIALS")
        assert (await log_in(attacker, admin, WRONG)).headers["Retry-After"] == "300"
        assert (await log_in(owner, admin, ADMIN_PASSWORD)).status == 200


async def test_one_address_trying_many_emails_is_throttled_as_a_whole(
    agent: Agent, clock: FakeClock
) -> None:
    sprayed = [f"spray-{n}@example.test" for n in range(11)]
    async with (
        client_at(agent, fresh_address()) as sprayer,
        client_at(agent, fresh_address()) as bystander,
    ):
        for email in sprayed[:10]:
            assert_error(await log_in(sprayer, email, WRONG), 401, "INVALID_CREDENTIALS")
        locked = await log_in(sprayer, sprayed[10], WRONG)
        assert_error(locked, 429, "LOGIN_THROTTLED")
        assert locked.headers["Retry-After"] == "300"
        # Another address is not concerned, even for the same e-mails.
        assert_error(await log_in(bystander, sprayed[0], WRONG), 401, "INVALID_CREDENTIALS")
        clock.advance(THROTTLE_CAP_SECONDS - 1)
        assert (await log_in(sprayer, sprayed[10], WRONG)).headers["Retry-After"] == "1"
        clock.advance(1)
        # One more failure every five minutes, and no more.
        assert_error(await log_in(sprayer, sprayed[10], WRONG), 401, "INVALID_CREDENTIALS")
        again = await log_in(sprayer, "spray-new@example.test", WRONG)
        assert_error(again, 429, "LOGIN_THROTTLED")
        assert again.headers["Retry-After"] == "300"


async def test_guesses_at_many_emails_sent_together_meet_the_address_lock(agent: Agent) -> None:
    async with client_at(agent, fresh_address()) as sprayer:
        replies = await asyncio.gather(
            *(log_in(sprayer, f"burst-{n}@example.test", WRONG) for n in range(14))
        )
    assert sorted(reply.status for reply in replies) == [401] * 10 + [429] * 4


async def test_x_forwarded_for_is_not_believed_from_an_untrusted_peer(
    agent: Agent, admin: str
) -> None:
    victim = fresh_address()
    async with client_at(agent, fresh_address()) as attacker, client_at(agent, victim) as owner:
        forged = {"X-Forwarded-For": victim}
        for _ in range(12):
            await log_in(attacker, admin, WRONG, headers=forged)
        signed_in = await log_in(owner, admin, ADMIN_PASSWORD)
        assert signed_in.status == 200, signed_in.body


class BehindAProxy:
    """The module's agent as an API sees it, but configured with a trusted proxy."""

    def __init__(self, agent: Agent, config: AgentConfig) -> None:
        self._agent = agent
        self.config = config

    def __getattr__(self, name: str) -> Any:
        return getattr(self._agent, name)


async def test_behind_a_trusted_proxy_each_forwarded_client_counts_on_its_own(
    agent: Agent, admin: str
) -> None:
    proxy = fresh_address()
    config = agent.config.model_copy(update={"trusted_proxies": (f"{proxy}/32",)})
    runner = web.AppRunner(build_app(BehindAProxy(agent, config)))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    attacker = {"X-Forwarded-For": "203.0.113.66"}
    owner = {"X-Forwarded-For": "198.51.100.1"}
    try:
        async with (
            client_at(agent, proxy, port) as through_proxy,
            client_at(agent, fresh_address(), port) as direct,
        ):
            for n in range(10):
                failed = await log_in(through_proxy, f"spray-{n}@example.test", WRONG, attacker)
                assert_error(failed, 401, "INVALID_CREDENTIALS")
            locked = await log_in(through_proxy, admin, ADMIN_PASSWORD, attacker)
            assert_error(locked, 429, "LOGIN_THROTTLED")
            # What the client wrote left of the proxy's own entry does not change who it is.
            forged = {"X-Forwarded-For": "198.51.100.1, 203.0.113.66"}
            assert (await log_in(through_proxy, admin, ADMIN_PASSWORD, forged)).status == 429
            # The owner, through the same proxy, is another client.
            signed_in = await log_in(through_proxy, admin, ADMIN_PASSWORD, owner)
            assert signed_in.status == 200, signed_in.body
            # The proxy itself, without the header, is a client of its own.
            assert_error(await log_in(through_proxy, admin, WRONG), 401, "INVALID_CREDENTIALS")
            # A peer that is not the proxy cannot name itself the owner.
            for _ in range(12):
                await log_in(direct, admin, WRONG, owner)
            signed_in = await log_in(through_proxy, admin, ADMIN_PASSWORD, owner)
            assert signed_in.status == 200, signed_in.body
    finally:
        await runner.cleanup()


async def test_requests_for_another_host_name_are_refused(client: Client, token: str) -> None:
    for host in ("evil.example", "127.0.0.1.evil.example:8091", "localhost.evil.example"):
        reply = await client.call("GET", "/system/info", token=token, headers={"Host": host})
        assert_error(reply, 400, "HOST_NOT_ALLOWED")
    for host in (EXTRA_HOST, "localhost", "127.0.0.1"):
        reply = await client.call("GET", "/system/info", token=token, headers={"Host": host})
        assert reply.status == 200, host
    liveness = await client.call("GET", "/healthz", headers={"Host": "evil.example"}, absolute=True)
    assert liveness.status == 400


async def test_browser_requests_from_another_origin_are_refused(client: Client, token: str) -> None:
    own = client.origin
    for origin in ("http://evil.example", "null", own.replace("127.0.0.1", "localhost")):
        reply = await client.call(
            "POST", "/tokens", token=token, body={"name": "x"}, headers={"Origin": origin}
        )
        assert_error(reply, 403, "ORIGIN_NOT_ALLOWED")
        assert "Access-Control-Allow-Origin" not in reply.headers
    cross = await client.call(
        "GET", "/services", token=token, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert_error(cross, 403, "ORIGIN_NOT_ALLOWED")
    same = await client.call("GET", "/services", token=token, headers={"Origin": own})
    assert same.status == 200


@pytest.mark.parametrize(("method", "path"), PROTECTED)
async def test_undocumented_methods_get_405_json_with_allow(
    client: Client, token: str, method: str, path: str
) -> None:
    documented = {m.upper() for m in build_openapi(all_operations())["paths"][path]}
    for other in sorted({"GET", "POST", "PUT", "PATCH", "DELETE"} - documented):
        reply = await client.call(other, concrete(path), token=token)
        assert_error(reply, 405, "METHOD_NOT_ALLOWED")
        assert set(reply.headers["Allow"].split(",")) == documented


async def test_unknown_query_parameters_are_refused_not_ignored(client: Client, token: str) -> None:
    for path in ("/services?limt=5", "/system/info?verbose=1", "/tokens?x=&y="):
        reply = await client.call("GET", path, token=token)
        assert_error(
            reply,
            400,
            "UNKNOWN_FIELD" if "limt" in path or "verbose" in path else "VALIDATION_FAILED",
        )
        assert {e["code"] for e in reply.body["errors"]} == {"UNKNOWN_FIELD"}
    assert (await client.call("GET", "/services?limit=5", token=token)).status == 200


async def test_unknown_routes_get_404_json(client: Client, token: str) -> None:
    for path in ("/nope", "/services/a/b/c", "/services/"):
        assert_error(await client.call("GET", path, token=token), 404, "NOT_FOUND")
    assert_error(await client.call("GET", "/nope", absolute=True), 404, "NOT_FOUND")


async def test_bodies_over_the_limit_get_413_even_with_a_lying_length(
    client: Client, token: str, agent: Agent
) -> None:
    size = agent.config.max_body_bytes + 1
    reply = await client.call(
        "POST",
        "/tokens",
        token=token,
        raw=b"x" * size,
        headers={"Content-Type": "application/json"},
    )
    assert_error(reply, 413, "PAYLOAD_TOO_LARGE")

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(size // 65536 + 1):
            yield b" " * 65536

    async with client.session.post(
        client.root + "/validate/service",
        data=chunks(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    ) as response:
        assert response.status == 413
        assert (await response.json())["code"] == "PAYLOAD_TOO_LARGE"


async def test_liveness_needs_no_token_and_reveals_nothing(client: Client) -> None:
    for path, absolute in (("/healthz", True), ("/healthz", False)):
        reply = await client.call("GET", path, absolute=absolute)
        assert reply.status == 200
        assert reply.body == {"status": "ok"}


async def test_the_openapi_document_is_served_as_generated(client: Client) -> None:
    reply = await client.call("GET", "/openapi.json")
    assert reply.status == 200
    assert reply.body == json.loads(json.dumps(build_openapi(all_operations())))


async def test_the_dashboard_hook_serves_index_html_when_it_is_installed(client: Client) -> None:
    reply = await client.call("GET", "/", absolute=True)
    if (STATIC_DIR / "index.html").is_file():
        assert reply.status == 200 and "<html" in reply.body.lower()
    else:
        assert_error(reply, 404, "NOT_FOUND")
        assert reply.body["message"] == "The dashboard is not installed"


async def test_an_unexpected_failure_is_a_500_json_without_a_trace(
    agent: Agent, token: str, capfd: pytest.CaptureFixture[str]
) -> None:
    async def broken(request: web.Request) -> web.StreamResponse:
        raise RuntimeError("something inside broke: /secret/path")

    extra = Operation("GET", "/broken", broken, "broken", "test only", {}, "system")
    runner = web.AppRunner(build_app(agent, [*all_operations(), extra]))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"http://127.0.0.1:{port}/api/pockestrator/broken",
                headers={"Authorization": f"Bearer {token}"},
            ) as response,
        ):
            assert response.status == 500
            body = await response.json()
    finally:
        await runner.cleanup()
    assert body["code"] == "INTERNAL_ERROR"
    assert "secret" not in json.dumps(body) and "Traceback" not in json.dumps(body)
    logged = capfd.readouterr()
    assert "something inside broke" in logged.out + logged.err


async def test_responses_carry_defensive_headers(client: Client, token: str) -> None:
    reply = await client.call("GET", "/services", token=token)
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    assert reply.headers["X-Frame-Options"] == "DENY"
    assert reply.headers["Cache-Control"] == "no-store"
