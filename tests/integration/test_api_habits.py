"""HTTP habits of the API on a real agent (issue 17): a retried create gets its first
answer (the one-time password once, never a second service), a stale If-Match is a 412,
every 201 says where the resource is, and lists page with a cursor and a Link header."""

from __future__ import annotations

import uuid
from typing import Any

from pockestrator.agent.daemon import Agent
from pockestrator.agent.sandbox import free_port
from tests.testbed.api_client import Api, create


async def test_a_retried_create_gets_the_first_answer_with_its_password_and_one_service(
    api: Api, version: str, agent: Agent
) -> None:
    key = str(uuid.uuid4())
    body = {
        "project_name": "retried",
        "port": free_port(),
        "pocketbase_version": version,
        "superuser_email": "admin@example.com",
    }
    first = await api.call("POST", "/services", body, headers={"Idempotency-Key": key})
    assert first.status == 201, first.body
    password = first.body["superuser_password"]
    assert password and first.headers["Location"].endswith(f"/services/{first.body['id']}")
    again = await api.call("POST", "/services", body, headers={"Idempotency-Key": key})
    assert again.status == 201
    assert again.body == first.body
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert agent.store.service_names().count("retried") == 1
    # The answer is kept sealed: the password is nowhere in the database's rows.
    rows = agent.store._database.read("SELECT lookup, sealed FROM idempotency_keys")
    assert rows and all(password.encode() not in bytes(row["sealed"] or b"") for row in rows)
    assert all(key not in row["lookup"] for row in rows)
    # Without the key, the same body is an ordinary second create: refused, no password.
    plain = await api.call("POST", "/services", body)
    assert plain.status == 409 or plain.status == 400
    assert "superuser_password" not in plain.body


async def test_the_same_key_with_another_body_is_a_422_and_changes_nothing(
    api: Api, version: str, agent: Agent
) -> None:
    key = str(uuid.uuid4())
    body = {"project_name": "keyed", "port": free_port(), "pocketbase_version": version}
    assert (
        await api.call("POST", "/services", body, headers={"Idempotency-Key": key})
    ).status == 201
    other = {**body, "project_name": "keyed-other", "port": free_port()}
    reply = await api.call("POST", "/services", other, headers={"Idempotency-Key": key})
    assert reply.status == 422
    assert reply.body["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert reply.codes() == {"Idempotency-Key": "IDEMPOTENCY_KEY_REUSED"}
    assert "keyed-other" not in agent.store.service_names()
    bad = await api.call("POST", "/services", other, headers={"Idempotency-Key": "a b"})
    assert bad.status == 400 and bad.codes() == {"Idempotency-Key": "INVALID_VALUE"}


async def test_a_refused_create_does_not_keep_its_key(api: Api, version: str) -> None:
    key = str(uuid.uuid4())
    body: dict[str, Any] = {
        "project_name": "9bad",
        "port": free_port(),
        "pocketbase_version": version,
    }
    refused = await api.call("POST", "/services", body, headers={"Idempotency-Key": key})
    assert refused.status == 400
    body["project_name"] = "fixed"
    # A new body under the key is fine: the refused request left nothing behind.
    fixed = await api.call("POST", "/services", body, headers={"Idempotency-Key": key})
    assert fixed.status == 201, fixed.body


async def test_a_retried_token_create_gets_the_same_token(api: Api) -> None:
    key = str(uuid.uuid4())
    first = await api.call("POST", "/tokens", {"name": "ci"}, headers={"Idempotency-Key": key})
    again = await api.call("POST", "/tokens", {"name": "ci"}, headers={"Idempotency-Key": key})
    assert first.status == again.status == 201
    assert again.body["token"] == first.body["token"]
    assert first.headers["Location"].endswith(f"/tokens/{first.body['id']}")
    listed = await api.call("GET", "/tokens", params={"limit": "500"})
    assert [t["id"] for t in listed.body["tokens"]].count(first.body["id"]) == 1


async def test_a_stale_if_match_is_a_412_and_the_current_etag_writes(
    api: Api, version: str
) -> None:
    await create(api, version, "tagged")
    read = await api.call("GET", "/services/tagged")
    etag = read.headers["ETag"]
    assert etag == f'"{read.body["service"]["generation"]}"'
    changed = await api.call(
        "PATCH", "/services/tagged", {"description": "one"}, headers={"If-Match": etag}
    )
    assert changed.status == 200, changed.body
    assert changed.headers["ETag"] != etag
    stale = await api.call(
        "PATCH", "/services/tagged", {"description": "two"}, headers={"If-Match": etag}
    )
    assert stale.status == 412
    assert stale.codes() == {"If-Match": "PRECONDITION_FAILED"}
    current = await api.call("GET", "/services/tagged")
    assert current.body["service"]["description"] == "one"
    refused = await api.call("DELETE", "/services/tagged", headers={"If-Match": etag})
    assert refused.status == 412
    # No If-Match keeps today's behaviour; * matches whatever the generation is.
    assert (await api.call("PATCH", "/services/tagged", {"description": "three"})).status == 200
    gone = await api.call("DELETE", "/services/tagged", headers={"If-Match": "*"})
    assert gone.status == 200, gone.body


async def test_lists_page_with_next_and_a_link_header_to_the_end(
    api: Api, version: str, agent: Agent
) -> None:
    for name in ("page-a", "page-b", "page-c"):
        if name not in agent.store.service_names():
            await create(api, version, name)
    names: list[str] = []
    params: dict[str, str] | None = {"limit": "2"}
    path = "/services"
    pages = 0
    while params is not None:
        reply = await api.call("GET", path, params=params)
        assert reply.status == 200, reply.body
        names += [s["project_name"] for s in reply.body["services"]]
        pages += 1
        cursor = reply.body["next"]
        if cursor is None:
            assert "Link" not in reply.headers
            params = None
        else:
            link = reply.headers["Link"]
            assert link.endswith('>; rel="next"') and f"cursor={cursor}" in link
            params = {"limit": "2", "cursor": cursor}
    assert names == agent.store.service_names()
    assert pages == (len(names) + 1) // 2

    for events_path in ("/services/page-a/events", "/events"):
        everything = await api.call("GET", events_path, params={"limit": "500"})
        assert everything.body["next"] is None
        newest = max(e["id"] for e in everything.body["events"])
        ids: list[int] = []
        cursor = None
        while True:
            query = {"limit": "2", **({"cursor": cursor} if cursor else {})}
            events = await api.call("GET", events_path, params=query)
            ids += [e["id"] for e in events.body["events"]]
            cursor = events.body["next"]
            if cursor is None:
                break
            assert cursor == str(events.body["next_before"])
            assert f"cursor={cursor}" in events.headers["Link"]
        # The agent may record an event meanwhile: it is newer than the first answer's.
        assert [i for i in ids if i <= newest] == [e["id"] for e in everything.body["events"]]
    for path in ("/services", "/services/page-a/events", "/tokens", "/events"):
        too_many = await api.call("GET", path, params={"limit": "501"})
        assert too_many.status == 400 and too_many.codes() == {"limit": "INVALID_VALUE"}, path


async def test_the_api_version_is_in_the_document_system_info_and_every_answer(
    api: Api,
) -> None:
    document = await api.call("GET", "/openapi.json")
    info = await api.call("GET", "/system/info")
    assert info.body["api_version"] == document.body["info"]["version"]
    assert info.headers["Pockestrator-Api-Version"] == info.body["api_version"]
    refused = await api.call("GET", "/services/nobody")
    assert refused.headers["Pockestrator-Api-Version"] == info.body["api_version"]
