"""The dashboard in a real browser: Debian's Chromium, driven by Playwright, against a real
agent on the test bed (the ``agent`` fixture: private systemd, journald, Caddy, PocketBase).

Playwright's async API runs in the session's event loop, the same loop as the agent, so a
test can drive the page and look at the host (systemd over D-Bus, files) side by side.
Each page is watched (``browser.PageWatch``) and the test fails at teardown if the page
reported a problem. Each test leaves screenshots in ``test-artifacts/e2e/``.
"""

from __future__ import annotations

import importlib.util
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from pockestrator.accounts import create_admin
from pockestrator.agent.daemon import Agent
from tests.e2e.browser import (
    ARTIFACTS,
    CHROMIUM,
    DESKTOP,
    LAUNCH_ARGS,
    PHONE,
    Admin,
    Dashboard,
    PageWatch,
)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(
            f"no Chromium at {CHROMIUM}: install Debian's chromium (scripts/install-system-deps)"
        )
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture(scope="module")
def admin(agent: Agent) -> Admin:
    """A dashboard admin in the agent's store, as `pockestrator up` creates one."""
    account = Admin("admin@e2e.example", secrets.token_urlsafe(16))
    create_admin(agent.accounts, account.email, account.password, agent.config.password_hashing)
    return account


@pytest.fixture(scope="module")
def dashboard_url(agent: Agent) -> str:
    return f"http://127.0.0.1:{agent.config.listen_port}/"


@pytest.fixture(scope="session")
def artifacts() -> Iterator[Path]:
    """The screenshot folder, emptied of the last run's pictures."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    yield ARTIFACTS


@asynccontextmanager
async def _dashboard_page(
    browser: Any, url: str, admin: Admin, name: str, viewport: dict[str, int]
) -> AsyncIterator[Dashboard]:
    context = await browser.new_context(
        viewport=viewport,
        is_mobile=viewport is PHONE,
        has_touch=viewport is PHONE,
        device_scale_factor=2 if viewport is PHONE else 1,
    )
    page = await context.new_page()
    watch = PageWatch()
    watch.attach(page)
    dashboard = Dashboard(page, url, admin, watch, name)
    try:
        yield dashboard
        await page.screenshot(path=str(ARTIFACTS / f"{name}-final.png"), full_page=True)
    finally:
        problems = list(watch.problems)
        await context.close()
    assert problems == [], "the page reported problems:\n" + "\n".join(problems)


def _test_name(request: pytest.FixtureRequest) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name).removeprefix("test_")


@pytest.fixture
async def dashboard(
    browser: Any, dashboard_url: str, admin: Admin, artifacts: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Dashboard]:
    """A desktop-sized page; the test fails at teardown if the page reported a problem."""
    async with _dashboard_page(browser, dashboard_url, admin, _test_name(request), DESKTOP) as page:
        yield page


@pytest.fixture
async def phone(
    browser: Any, dashboard_url: str, admin: Admin, artifacts: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Dashboard]:
    """A phone-sized page (390x844, touch), watched the same way."""
    async with _dashboard_page(browser, dashboard_url, admin, _test_name(request), PHONE) as page:
        yield page
