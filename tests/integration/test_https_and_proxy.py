"""HTTPS and the proxy options on the real test bed, through Caddy, against real PocketBase.

The module's sandbox serves HTTPS from Caddy's local CA (``tls internal``, as an operator
without a public name would choose), whose root is never installed into the host's trust
store: a client here trusts that root and nothing else, so an answer over HTTPS proves the
certificate chain is Caddy's. Services are created through the agent's API; every request
goes to Caddy's ports on loopback with the service's domain as the TLS server name and Host.
"""

from __future__ import annotations

import json
import shutil
import ssl
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pockestrator.agent.sandbox import Sandbox, free_port
from tests.testbed.api_client import Api, create, wait_running
from tests.testbed.waiting import wait_until

MB = 1_000_000
HSTS = "max-age=31536000"


@pytest.fixture(scope="module")
async def sandbox(testbed_base: Path) -> AsyncIterator[Sandbox]:
    """This module's test bed: conftest's, with HTTPS from Caddy's local CA."""
    root = Path(tempfile.mkdtemp(prefix="tb-", dir=testbed_base))
    box = Sandbox(root, tls="internal")
    await box.start()
    try:
        yield box
    finally:
        await box.stop()
        leftovers = box.leftover_pids()
        shutil.rmtree(root, ignore_errors=True)
    if leftovers:
        pytest.fail(f"the test bed left processes behind: {leftovers}")


class Through:
    """Requests to Caddy on loopback for one domain, over HTTPS trusting only Caddy's root."""

    def __init__(self, sandbox: Sandbox, session: aiohttp.ClientSession) -> None:
        self.sandbox = sandbox
        self.session = session
        self.trust = ssl.create_default_context(cafile=str(sandbox.caddy_root_certificate))

    async def https(
        self,
        method: str,
        domain: str,
        path: str,
        *,
        server_name: str | None = None,
        **options: Any,
    ) -> tuple[int, str, Any]:
        assert self.sandbox.caddy_https_url is not None
        async with self.session.request(
            method,
            self.sandbox.caddy_https_url + path,
            headers={"Host": domain, **options.pop("headers", {})},
            ssl=self.trust,
            server_hostname=server_name or domain,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=30),
            **options,
        ) as response:
            return response.status, await response.text(), response.headers

    async def http(self, domain: str, path: str) -> tuple[int, str, Any]:
        async with self.session.get(
            self.sandbox.caddy_url + path,
            headers={"Host": domain},
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=10),
        ) as response:
            return response.status, await response.text(), response.headers


@pytest.fixture(scope="module")
async def through(sandbox: Sandbox) -> AsyncIterator[Through]:
    async with aiohttp.ClientSession() as session:
        yield Through(sandbox, session)


async def served_over_https(through: Through, domain: str) -> bool:
    """True once PocketBase answers its health check for ``domain`` over verified HTTPS."""
    try:
        status, body, _headers = await through.https("GET", domain, "/api/health")
    except aiohttp.ClientError:
        return False  # no certificate yet: the handshake fails
    return status == 200 and '"code":200' in body.replace(" ", "")


@pytest.fixture(scope="module")
async def shop(api: Api, version: str, through: Through) -> dict[str, Any]:
    """One service over HTTPS with a 3MB body limit, an alias it serves, and a superuser."""
    created = await create(
        api,
        version,
        "shop",
        superuser_email="admin@shop.example",
        proxy={"max_body_size": "3MB", "aliases": ["www-shop.localhost"]},
    )
    await wait_running(api, "shop")
    assert await wait_until(lambda: served_over_https(through, "shop.localhost"), 30, 0.2)
    return created


# -- HTTPS -------------------------------------------------------------------------------


async def test_an_instance_is_reached_over_https_by_a_client_trusting_only_caddys_root(
    shop: dict[str, Any], through: Through, sandbox: Sandbox
) -> None:
    status, body, headers = await through.https("GET", "shop.localhost", "/api/health")

    assert status == 200 and "API is healthy" in body
    assert headers["Strict-Transport-Security"] == HSTS
    assert shop["service"]["url"] == f"https://shop.localhost:{sandbox.caddy_https_port}"
    # The same answer does not verify against the host's usual roots: the chain is Caddy's.
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        async with aiohttp.ClientSession() as session:
            await session.get(
                f"{sandbox.caddy_https_url}/api/health",
                headers={"Host": "shop.localhost"},
                server_hostname="shop.localhost",
                ssl=ssl.create_default_context(),
            )


async def test_system_info_gives_the_https_port_the_links_need(api: Api, sandbox: Sandbox) -> None:
    reply = await api.call("GET", "/system/info")
    assert reply.status == 200, reply.body
    assert reply.body["public_port"] == sandbox.caddy_https_port


async def test_plain_http_is_redirected_to_https_on_caddys_https_port(
    shop: dict[str, Any], through: Through, sandbox: Sandbox
) -> None:
    status, _body, headers = await through.http("shop.localhost", "/api/health?x=1")

    assert status == 308  # keeps the method, unlike a 301
    assert headers["Location"] == (
        f"https://shop.localhost:{sandbox.caddy_https_port}/api/health?x=1"
    )


async def test_the_served_certificate_and_its_expiry_are_part_of_the_status(
    shop: dict[str, Any], api: Api
) -> None:
    latest: dict[str, Any] = {}

    async def known() -> bool:
        reply = await api.call("GET", "/services/shop/status")
        latest.update(reply.body)
        certificate = reply.body.get("certificate")
        return bool(certificate and certificate["not_after"])

    assert await wait_until(known, 30, 0.2), latest
    certificate = latest["certificate"]
    now = datetime.now(UTC)
    not_before = datetime.fromisoformat(certificate["not_before"])
    not_after = datetime.fromisoformat(certificate["not_after"])
    renews_after = datetime.fromisoformat(certificate["renews_after"])
    assert not_before <= now < renews_after < not_after
    assert "Caddy Local Authority" in certificate["issuer"]
    detail = await api.call("GET", "/services/shop")
    assert detail.body["service"]["certificate"] == certificate


# -- the catch-all -------------------------------------------------------------------------


async def test_an_unknown_host_gets_404_and_a_text_over_http_and_https(
    shop: dict[str, Any], through: Through
) -> None:
    status, body, _headers = await through.http("gone.localhost", "/api/health")
    assert (status, body) == (404, "No service has this domain.")
    # A name that has a certificate (the TLS server name) but no service (the Host).
    status, body, _headers = await through.https(
        "GET", "gone.localhost", "/api/health", server_name="shop.localhost"
    )
    assert (status, body) == (404, "No service has this domain.")
    # A name with no certificate at all is refused in the handshake: no certificate is
    # made for whatever name a client asks.
    with pytest.raises(aiohttp.ClientError):
        await through.https("GET", "gone.localhost", "/api/health")


async def test_a_deleted_service_is_answered_by_the_catch_all_not_an_empty_200(
    api: Api, version: str, through: Through
) -> None:
    await create(api, version, "doomed")
    await wait_running(api, "doomed")
    assert await wait_until(lambda: served_over_https(through, "doomed.localhost"), 30, 0.2)

    reply = await api.call("DELETE", "/services/doomed", params={"purge": "true"})
    assert reply.status == 200, reply.body

    async def caught() -> bool:
        status, body, _headers = await through.http("doomed.localhost", "/api/health")
        return (status, body) == (404, "No service has this domain.")

    assert await wait_until(caught, 30, 0.2)


# -- the body limit ------------------------------------------------------------------------


async def superuser_token(through: Through, shop: dict[str, Any]) -> str:
    status, body, _headers = await through.https(
        "POST",
        "shop.localhost",
        "/api/collections/_superusers/auth-with-password",
        json={"identity": "admin@shop.example", "password": shop["superuser_password"]},
    )
    assert status == 200, body
    return str(json.loads(body)["token"])


async def test_an_upload_under_the_body_limit_is_stored_and_one_over_gets_a_clear_413(
    shop: dict[str, Any], through: Through
) -> None:
    token = await superuser_token(through, shop)
    auth = {"Authorization": token}
    status, body, _headers = await through.https(
        "POST",
        "shop.localhost",
        "/api/collections",
        headers=auth,
        json={
            "name": "uploads",
            "type": "base",
            "fields": [{"name": "doc", "type": "file", "maxSelect": 1, "maxSize": 50 * MB}],
        },
    )
    assert status == 200, body

    async def upload(size: int) -> tuple[int, str]:
        form = aiohttp.FormData()
        form.add_field("doc", b"u" * size, filename="doc.bin")
        status, body, _headers = await through.https(
            "POST", "shop.localhost", "/api/collections/uploads/records", headers=auth, data=form
        )
        return status, body

    status, body = await upload(2 * MB)  # max_body_size - 1MB
    assert status == 200, body
    assert '"doc":"doc_' in body.replace(" ", "")

    status, body = await upload(4 * MB)
    assert (status, body) == (413, "The request body is larger than this service accepts (3MB).")


# -- aliases -------------------------------------------------------------------------------


async def test_an_alias_serves_the_same_instance(shop: dict[str, Any], through: Through) -> None:
    assert await wait_until(lambda: served_over_https(through, "www-shop.localhost"), 30, 0.2)
    status, _body, headers = await through.https("GET", "www-shop.localhost", "/api/health")
    assert status == 200 and headers["Strict-Transport-Security"] == HSTS


async def test_a_redirecting_alias_answers_301_to_the_service_url(
    api: Api, version: str, through: Through, sandbox: Sandbox
) -> None:
    created = await create(
        api,
        version,
        "blog",
        proxy={"aliases": ["old-blog.localhost"], "redirect_aliases": True},
    )
    await wait_running(api, "blog")
    url = created["service"]["url"]
    assert url == f"https://blog.localhost:{sandbox.caddy_https_port}"

    async def redirected() -> bool:
        try:
            status, _body, headers = await through.https(
                "GET", "old-blog.localhost", "/api/health?y=2"
            )
        except aiohttp.ClientError:
            return False
        return status == 301 and headers.get("Location") == f"{url}/api/health?y=2"

    assert await wait_until(redirected, 30, 0.2)
    assert await wait_until(lambda: served_over_https(through, "blog.localhost"), 30, 0.2)


@pytest.mark.parametrize("taken", ["www-shop.localhost", "shop.localhost"])
async def test_a_domain_another_service_has_is_refused_as_an_alias_naming_the_field(
    shop: dict[str, Any], api: Api, version: str, taken: str
) -> None:
    reply = await api.call(
        "POST",
        "/services",
        {
            "project_name": "copycat",
            "port": free_port(),
            "pocketbase_version": version,
            "proxy": {"aliases": ["copycat-www.localhost", taken]},
        },
    )
    assert reply.status == 400, reply.body
    assert reply.codes() == {"proxy.aliases.1": "DOMAIN_IN_USE"}
    assert (await api.call("GET", "/services/copycat")).status == 404
