"""The browser side of the dashboard tests: what a page may not do (``PageWatch``) and the
steps every test repeats (``Dashboard``). The fixtures that make them are in conftest.py.

Every page is watched from its first request: an uncaught exception, a console error, a
failed request or an answer of 500 or more is a problem, reported at teardown. Chromium
logs every non-2xx answer as a console error ("Failed to load resource"); for the API those
are answers the page shows the user, so a test names the ones it provokes on purpose
(``watch.expect``; the validation endpoint's 400 is expected everywhere), and any other
still fails.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
API = "/api/pockestrator"
_FAILED_LOAD = re.compile(r"Failed to load resource: the server responded with a status of (\d+)")


@dataclass(frozen=True)
class Admin:
    email: str
    password: str


@dataclass
class PageWatch:
    """What went wrong in a page; ``expect`` names API answers a test provokes on purpose."""

    problems: list[str] = field(default_factory=list)
    expected: set[tuple[int, str]] = field(default_factory=lambda: {(400, "/validate/service")})
    reloading: bool = False

    def expect(self, status: int, api_path: str) -> None:
        self.expected.add((status, api_path))

    def _is_expected(self, status: int, url: str) -> bool:
        path = urlsplit(url).path
        if not path.startswith(API):
            return False
        return any(
            status == code and path.removeprefix(API).startswith(prefix)
            for code, prefix in self.expected
        )

    def attach(self, page: Any) -> None:
        page.on("pageerror", lambda error: self.problems.append(f"uncaught: {error}"))
        page.on("console", self._console)
        page.on("requestfailed", self._request_failed)
        page.on("response", self._response)

    def _console(self, message: Any) -> None:
        if message.type != "error":
            return
        failed = _FAILED_LOAD.match(message.text)
        url = message.location.get("url", "")
        if failed and self._is_expected(int(failed.group(1)), url):
            return
        self.problems.append(f"console error: {message.text} ({url})")

    def _request_failed(self, request: Any) -> None:
        failure = request.failure or ""
        # The page ends a live log stream or a watch itself when the user leaves it or stops
        # following; a reload the test asks for cuts whatever was in flight.
        streams = ("follow=true", "watch=true")
        if failure == "net::ERR_ABORTED" and (
            any(s in request.url for s in streams) or self.reloading
        ):
            return
        self.problems.append(f"request failed: {request.method} {request.url}: {failure}")

    def _response(self, response: Any) -> None:
        if response.status >= 500 and not self._is_expected(response.status, response.url):
            self.problems.append(f"answer {response.status}: {response.url}")


class Dashboard:
    """One browser page on the dashboard, with the steps every test repeats."""

    def __init__(self, page: Any, url: str, admin: Admin, watch: PageWatch, name: str) -> None:
        self.page = page
        self.url = url
        self.admin = admin
        self.watch = watch
        self.name = name
        self.shots = 0

    async def open(self, route: str = "") -> None:
        await self.page.goto(self.url + (f"#{route}" if route else ""))

    async def sign_in(self, route: str = "/services") -> None:
        await self.open(route)
        page = self.page
        await page.get_by_label("E-mail").fill(self.admin.email)
        await page.get_by_label("Password").fill(self.admin.password)
        await page.get_by_role("button", name="Sign in").click()
        await page.locator("header.top").wait_for(state="visible")

    async def reload(self) -> None:
        """Reload the page; requests it cuts short are not the page's fault."""
        self.watch.reloading = True
        try:
            await self.page.reload()
        finally:
            self.watch.reloading = False

    async def go(self, route: str) -> None:
        """Navigate inside the app (no reload; the session stays)."""
        await self.page.evaluate("route => { location.hash = route; }", route)
        await self.page.locator("main h1").first.wait_for()

    def next_path(self, step: str) -> Path:
        """Where the next screenshot of this test goes (numbered in the order taken)."""
        self.shots += 1
        return ARTIFACTS / f"{self.name}-{self.shots:02d}-{step}.png"

    async def shot(self, step: str) -> Path:
        """A screenshot of this step, after checking that every visible control is labelled."""
        await assert_controls_are_labelled(self.page)
        path = self.next_path(step)
        await self.page.screenshot(path=str(path), full_page=True)
        return path


def row(dashboard: Dashboard, name: str) -> Any:
    """The services list's row of the service ``name`` (the row with its link)."""
    link = dashboard.page.get_by_role("link", name=name, exact=True)
    return dashboard.page.locator("tbody tr", has=link)


async def assert_controls_are_labelled(page: Any) -> None:
    """Every visible input, select, textarea, button and link has an accessible name."""
    unnamed = await page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea, button, a[href]')]
          .filter((el) => el.getClientRects().length > 0)
          .filter((el) => {
            const byLabel = [...(el.labels ?? [])].map((l) => l.textContent).join('');
            const byAria = el.getAttribute('aria-label') ?? '';
            const byIds = (el.getAttribute('aria-labelledby') ?? '').split(' ')
              .map((id) => document.getElementById(id)?.textContent ?? '').join('');
            const own = ['BUTTON', 'A'].includes(el.tagName) ? el.textContent : '';
            return !(byLabel + byAria + byIds + own).trim();
          })
          .map((el) => el.outerHTML.slice(0, 160))"""
    )
    assert unnamed == [], f"controls without an accessible name: {unnamed}"
