"""The webhooks page in Chromium: add a webhook (its secret shown once), send a test event
to a receiver started here, see the delivery with the receiver's answer, delete it."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tests.e2e.browser import Dashboard
from tests.testbed.receivers import receiving

expect = pytest.importorskip("playwright.async_api").expect
pytestmark = pytest.mark.e2e


class Receiver:
    def __init__(self) -> None:
        self.secret = ""
        self.signed: list[bool] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        stamp = request.headers["X-Pockestrator-Timestamp"]
        mac = hmac.new(self.secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
        self.signed.append(
            hmac.compare_digest(
                "sha256=" + mac.hexdigest(), request.headers["X-Pockestrator-Signature"]
            )
        )
        return web.Response(status=204)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    hooks = Receiver()
    async with receiving("/in", hooks.handle) as url:
        yield hooks, url


async def test_a_webhook_is_added_tested_and_deleted_and_its_secret_shown_once(
    dashboard: Dashboard, receiver: tuple[Receiver, str]
) -> None:
    hooks, url = receiver
    page = dashboard.page
    await dashboard.sign_in("/webhooks")
    await expect(page.locator("h1")).to_have_text("Webhooks")
    await expect(page.locator("tbody").first).to_contain_text("No webhooks yet.")

    dashboard.watch.expect(400, "/webhooks")  # the refused URL, on purpose
    await page.get_by_label("URL").fill("http://user:secret@example.com/in")
    await page.get_by_role("button", name="Add webhook").click()
    await expect(page.locator('[data-field="url"] .message')).to_contain_text("url")

    await page.get_by_label("URL").fill(url)
    await page.get_by_label("Only these kinds").fill("process_restarted, crash_loop")
    await page.get_by_role("button", name="Add webhook").click()
    secret = page.locator("code.secret")
    await expect(secret).to_be_visible()
    hooks.secret = (await secret.text_content() or "").strip()
    assert len(hooks.secret) >= 40
    row = page.locator("tr[data-webhook]")
    await expect(row).to_contain_text("crash_loop, process_restarted")
    await dashboard.shot("added")

    await row.get_by_role("button", name="Send test event").click()
    delivered = page.locator("tr[data-delivery]")
    await expect(delivered).to_contain_text("204", timeout=20_000)
    await expect(delivered).to_contain_text("delivered")
    assert hooks.signed == [True]
    await dashboard.shot("delivered")

    await dashboard.reload()  # the reload cuts what was in flight (a health check)
    await expect(page.locator("tr[data-webhook]")).to_contain_text("process_restarted")
    assert hooks.secret not in await page.content(), "the secret is shown only once"

    delete = page.locator("tr[data-webhook]").get_by_role("button", name="Delete")
    await delete.click()
    await page.get_by_role("button", name="Really delete?").click()
    await expect(page.locator("tbody").first).to_contain_text("No webhooks yet.")
