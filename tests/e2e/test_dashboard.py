"""The dashboard as a user drives it, in Chromium, against a real agent on the test bed.

What the page shows is checked against the host itself where it matters: systemd's answer
over D-Bus, the files on disk, PocketBase answering through Caddy at the domain link.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import tarfile
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pockestrator.accounts import ADDRESS_BURST, lockout_seconds
from pockestrator.agent.daemon import Agent
from pockestrator.agent.sandbox import CADDY_UNIT, Sandbox, free_port
from tests.e2e.browser import PHONE, Dashboard, row
from tests.testbed.api_client import Api, create
from tests.testbed.waiting import wait_until

expect = pytest.importorskip("playwright.async_api").expect

pytestmark = pytest.mark.e2e

DEPLOY_TIMEOUT_MS = 60_000
UI_TIMEOUT_MS = 15_000


async def unit_state(agent: Agent, name: str) -> str:
    return (await agent.bus.unit_status(f"{name}-pocketbase.service")).active_state


# -- signing in --------------------------------------------------------------------------


async def test_signing_in_keeps_the_session_in_the_tab_and_signing_out_ends_it(
    dashboard: Dashboard, api: Api
) -> None:
    page = dashboard.page
    dashboard.watch.expect(401, "/auth/login")
    await dashboard.open("/system")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await dashboard.shot("sign-in")

    # Keyboard only: the e-mail field has the focus, Tab moves on, Enter submits.
    await page.keyboard.type(dashboard.admin.email)
    await page.keyboard.press("Tab")
    await page.keyboard.type("not the password")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("alert")).to_have_text("Wrong e-mail or password.")
    await dashboard.shot("wrong-password")

    # One failure locks the account briefly (the API's throttle); a person waits that long.
    await asyncio.sleep(lockout_seconds(1))
    await page.get_by_label("Password").fill(dashboard.admin.password)
    await page.keyboard.press("Enter")
    # It returns to the page that asked for a sign-in.
    await expect(page.get_by_role("heading", name="System")).to_be_visible()
    await expect(page.locator("#who")).to_have_text(dashboard.admin.email)
    session = json.loads(await page.evaluate("sessionStorage.getItem('pockestrator.session')"))
    assert session["token"].startswith("pkss_")
    assert await page.evaluate("document.cookie") == ""

    await dashboard.reload()
    await expect(page.get_by_role("heading", name="System")).to_be_visible()

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert await page.evaluate("sessionStorage.getItem('pockestrator.session')") is None
    # The session is revoked on the agent, not only forgotten by the page.
    async with aiohttp.ClientSession() as session_client:
        response = await session_client.get(
            api.root + "/system/info", headers={"Authorization": f"Bearer {session['token']}"}
        )
        assert response.status == 401


async def test_a_sign_in_refused_for_the_address_says_so_and_not_that_the_account_is_locked(
    dashboard: Dashboard, agent: Agent
) -> None:
    # The address rule: failures of any e-mails from one address use up its tries (each
    # comes back only after ADDRESS_REFILL_SECONDS), then even the right password is refused.
    page = dashboard.page
    dashboard.watch.expect(429, "/auth/login")
    throttle, address = agent.accounts.login_throttle, "127.0.0.1"
    await dashboard.open("/services")
    await page.get_by_label("E-mail").fill(dashboard.admin.email)
    await page.get_by_label("Password").fill(dashboard.admin.password)
    guesses = [f"guess-{number}@e2e.example" for number in range(ADDRESS_BURST)]
    counted = [email for email in guesses if throttle.admit(email, address) == 0.0]
    try:
        assert throttle.admit(dashboard.admin.email, address) > 0
        await page.keyboard.press("Enter")
        await expect(page.get_by_role("alert")).to_have_text(
            "Too many failed sign-ins from this network address; try again later."
        )
        await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        await dashboard.shot("address-throttled")
    finally:
        for email in counted:  # each takes its failure back: the address has its tries again
            throttle.succeeded(email, address)
    assert throttle.admit(dashboard.admin.email, address) == 0.0
    throttle.succeeded(dashboard.admin.email, address)


# -- the whole life of a service ---------------------------------------------------------


async def test_a_first_time_user_creates_a_service_opens_it_watches_logs_controls_and_deletes_it(
    dashboard: Dashboard, agent: Agent, sandbox: Sandbox, newer: str
) -> None:
    page = dashboard.page
    name = "first"
    await dashboard.sign_in("/services/new")
    await page.get_by_label("Project name").fill(name)
    await page.get_by_label("Port", exact=True).fill(str(free_port()))
    await page.get_by_label("PocketBase version").fill(newer)
    await page.get_by_label("First superuser e-mail (optional)").fill("owner@first.example")
    await page.get_by_role("button", name="Add variable").click()
    await page.get_by_label("Variable 1 name").fill("GOMEMLIMIT")
    await page.get_by_label("Variable 1 value").fill("200MiB")
    await page.get_by_label("Memory limit (optional)").fill("256M")
    await dashboard.shot("form")
    await page.get_by_role("button", name="Create service").click()

    # The generated password is shown once, then the deployment until the instance is up.
    password = await page.get_by_test_id("superuser-password").text_content()
    assert password and len(password) >= 20
    await expect(page.locator(".steps li.done")).to_have_count(4, timeout=DEPLOY_TIMEOUT_MS)
    await expect(page.locator(".outcome")).to_contain_text(f"{name} is up and running")
    await dashboard.shot("deployed")
    assert await unit_state(agent, name) == "active"
    unit = (agent.config.systemd_dir / f"{name}-pocketbase.service").read_text()
    environment = (agent.config.environment_path / f"{name}.env").read_text()
    assert "MemoryMax=256M" in unit and "GOMEMLIMIT" not in unit  # variables: root-only file
    assert 'GOMEMLIMIT="200MiB"' in environment.splitlines()

    # The domain link reaches the instance through Caddy: PocketBase's admin UI, signed in
    # with the password the page showed.
    async with page.context.expect_page() as opened:
        await page.get_by_role("link", name="Open the PocketBase admin UI").click()
    admin_ui = await opened.value
    # PocketBase's admin UI routes itself to ``#/login`` once its script has run.
    assert admin_ui.url.partition("#")[0] == f"http://{name}.localhost:{sandbox.caddy_http_port}/_/"
    await admin_ui.get_by_role("textbox", name="Email").fill("owner@first.example")
    await admin_ui.get_by_role("textbox", name="Password").fill(password)
    await admin_ui.keyboard.press("Enter")
    await expect(admin_ui.get_by_text("Collections").first).to_be_visible(timeout=UI_TIMEOUT_MS)
    await admin_ui.screenshot(path=str(dashboard.next_path("pocketbase-admin-ui")))
    await admin_ui.close()

    # The list shows it live, with its domain link on Caddy's port.
    await dashboard.go("/services")
    listed = row(dashboard, name)
    await expect(listed.locator(".badge")).to_have_text("Active")
    await expect(listed.get_by_role("link", name=f"{name}.localhost")).to_have_attribute(
        "href", f"http://{name}.localhost:{sandbox.caddy_http_port}/"
    )
    await expect(listed.locator(".config")).to_have_text("Match")
    # One host: the node column names the host's own node.
    await expect(listed.locator(".node")).to_have_text(agent.config.node)
    await expect(listed.locator(".memory")).to_have_text(re.compile(r"^[\d.]+ [KMG]iB$"))
    await expect(listed.locator(".restarts")).to_have_text("0")
    await dashboard.shot("listed")

    # Logs: a line of the instance itself.
    await listed.get_by_role("link", name=name, exact=True).click()
    await page.get_by_role("link", name="Logs", exact=True).click()
    await expect(page.locator(".log .line", has_text="Server started at")).not_to_have_count(0)
    await dashboard.shot("logs")

    # Stop and start, with systemd's own answer.
    await dashboard.go(f"/services/{name}")
    await page.get_by_role("button", name="Stop", exact=True).click()
    await expect(page.locator("h1 .badge")).to_have_text("Stopped", timeout=DEPLOY_TIMEOUT_MS)
    await expect(page.get_by_role("button", name="Start", exact=True)).to_be_enabled()
    assert await unit_state(agent, name) == "inactive"
    await dashboard.shot("stopped")
    await page.get_by_role("button", name="Start", exact=True).click()
    await expect(page.locator("h1 .badge")).to_have_text("Active", timeout=DEPLOY_TIMEOUT_MS)
    assert await unit_state(agent, name) == "active"

    # Delete: the confirmation says what happens to the data; archive is the default.
    await page.get_by_role("button", name="Delete service…").click()
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_contain_text("will be archived")
    await dialog.get_by_label("Purge it (deleted for good)").check()
    await expect(dialog).to_contain_text("deleted permanently")
    await dashboard.shot("delete-purge")
    await dialog.get_by_label("Archive it (can be restored by hand)").check()
    await dashboard.shot("delete-archive")
    await dialog.get_by_role("button", name="Delete and archive data").click()
    await expect(page.get_by_role("heading", name="Services")).to_be_visible()
    await expect(page.locator("#toast")).to_contain_text(f"Deleted {name}; its data archived to")
    await expect(row(dashboard, name)).to_have_count(0)
    archived = list(agent.config.archive_path.glob(f"{name}-*"))
    assert len(archived) == 1 and (archived[0] / "pb_data").is_dir()
    assert not (agent.config.systemd_dir / f"{name}-pocketbase.service").exists()
    await dashboard.shot("deleted")


# -- services list -------------------------------------------------------------------------


async def test_the_status_filter_shows_only_services_in_that_state(
    dashboard: Dashboard, api: Api, newer: str
) -> None:
    await create(api, newer, "filter-running")
    await create(api, newer, "filter-stopped", desired_state="stopped")
    assert await wait_until(lambda: _is(api, "filter-running", "active"), 30, 0.2)
    assert await wait_until(lambda: _is(api, "filter-stopped", "inactive"), 30, 0.2)
    page = dashboard.page
    await dashboard.sign_in("/services")
    await expect(row(dashboard, "filter-running")).to_have_count(1)
    await expect(row(dashboard, "filter-stopped")).to_have_count(1)

    # With the keyboard: All -> Active -> Sleeping -> Stopped; each step filters, the focus
    # stays.
    status = page.get_by_label("Status")
    await status.focus()
    await page.keyboard.press("ArrowDown")
    await page.keyboard.press("ArrowDown")
    await expect(status).to_have_value("sleeping")
    await expect(row(dashboard, "filter-running")).to_have_count(0)
    await page.keyboard.press("ArrowDown")
    await expect(status).to_have_value("inactive")
    await expect(row(dashboard, "filter-running")).to_have_count(0)
    await expect(status).to_be_focused()
    await expect(row(dashboard, "filter-stopped")).to_have_count(1)
    badges = await page.locator("tbody .badge").all_text_contents()
    assert badges and set(badges) == {"Stopped"}
    assert page.url.endswith("#/services?status=inactive")
    await dashboard.shot("stopped-only")

    await status.select_option(label="Active")
    await expect(row(dashboard, "filter-stopped")).to_have_count(0)
    await expect(row(dashboard, "filter-running")).to_have_count(1)
    assert set(await page.locator("tbody .badge").all_text_contents()) == {"Active"}
    await dashboard.shot("active-only")

    # Live: a change made elsewhere shows up within a few seconds, without a reload.
    await api.call("POST", "/services/filter-running/control", {"action": "stop"})
    await expect(row(dashboard, "filter-running")).to_have_count(0, timeout=10_000)


async def _is(api: Api, name: str, state: str) -> bool:
    reply = await api.call("GET", f"/services/{name}/status")
    return reply.status == 200 and reply.body["state"] == state


# -- create form ---------------------------------------------------------------------------


async def test_validation_errors_appear_next_to_their_field_while_typing(
    dashboard: Dashboard, older: str, newer: str
) -> None:
    page = dashboard.page
    await dashboard.sign_in("/services/new")
    name_field = page.locator('.field[data-field="project_name"]')
    port_field = page.locator('.field[data-field="port"]')
    version_field = page.locator('.field[data-field="pocketbase_version"]')

    await page.get_by_label("Project name").press_sequentially("Bad_Name", delay=30)
    await expect(name_field.locator(".message.error")).to_contain_text("lowercase")
    await expect(page.get_by_label("Project name")).to_have_attribute("aria-invalid", "true")
    # Fields not touched yet keep quiet, though the spec is incomplete.
    await expect(page.locator('.field[data-field="domain"] .message')).to_be_empty()

    await page.get_by_label("Port", exact=True).fill("80")
    await expect(port_field.locator(".message.error")).to_contain_text("1024")
    await dashboard.shot("errors")

    await page.get_by_label("Project name").fill("good-name")
    await page.get_by_label("Port", exact=True).fill(str(free_port()))
    await expect(name_field.locator(".message")).to_be_empty()
    await expect(port_field.locator(".message")).to_be_empty()
    await expect(page.get_by_label("Project name")).not_to_have_attribute("aria-invalid", "true")
    # Once the spec is valid, the checks against the host run: an old version warns.
    await page.get_by_label("PocketBase version").fill(older)
    await expect(version_field.locator(".message.warning")).to_contain_text(f"latest ({newer})")
    await expect(page.get_by_label("PocketBase version")).not_to_have_attribute(
        "aria-invalid", "true"
    )
    await dashboard.shot("fixed")


# -- detail --------------------------------------------------------------------------------


async def test_a_file_owned_service_shows_its_file_and_refuses_deletion_but_obeys_control(
    dashboard: Dashboard, agent: Agent, api: Api, newer: str
) -> None:
    spec_file = agent.config.spec_dir / "from-file.yaml"
    spec_file.parent.mkdir(parents=True, exist_ok=True)
    spec_file.write_text(
        f"project_name: from-file\nport: {free_port()}\npocketbase_version: {newer}\n"
    )
    try:
        assert await wait_until(lambda: _is(api, "from-file", "active"), 30, 0.2)
        page = dashboard.page
        await dashboard.sign_in("/services")
        await expect(row(dashboard, "from-file")).to_contain_text("(spec file)")
        await dashboard.go("/services/from-file")
        await expect(page.locator(".source-file")).to_have_text(str(spec_file))
        await expect(page.get_by_role("button", name="Delete service…")).to_be_disabled()
        await expect(page.get_by_role("button", name="Change version")).to_be_disabled()
        await expect(page.get_by_label("New PocketBase version")).to_be_disabled()
        await dashboard.shot("file-owned")

        await page.get_by_role("button", name="Stop", exact=True).click()
        await expect(page.locator("h1 .badge")).to_have_text("Stopped", timeout=DEPLOY_TIMEOUT_MS)
        assert await unit_state(agent, "from-file") == "inactive"
        await page.get_by_role("button", name="Start", exact=True).click()
        await expect(page.locator("h1 .badge")).to_have_text("Active", timeout=DEPLOY_TIMEOUT_MS)
    finally:
        # Removing the file deletes the service under the open page: its refresh may
        # meet the 404s before the page is closed.
        dashboard.watch.expect(404, "/services/")
        spec_file.unlink()


async def test_the_detail_page_shows_the_rendered_hashes_and_the_repair_of_a_hand_edit(
    dashboard: Dashboard, agent: Agent, api: Api, newer: str
) -> None:
    await create(api, newer, "drifty")
    page = dashboard.page
    await dashboard.sign_in("/services/drifty")
    drift = page.locator('dd[data-term="Config match"]')
    await expect(drift).to_have_text("Match")
    detail = (await api.call("GET", "/services/drifty")).body
    await expect(page.locator('dd[data-term="systemd config hash"]')).to_have_text(
        detail["service"]["systemd_config_hash"]
    )
    await expect(page.locator('dd[data-term="Caddy config hash"]')).to_have_text(
        detail["service"]["caddy_config_hash"]
    )
    await expect(page.locator(".events")).to_contain_text("reconciled")
    await expect(page.locator('dd[data-term="Node"]')).to_have_text(detail["service"]["node"])
    assert detail["service"]["node"] == agent.config.node

    # A hand edit of the unit file: the agent repairs it and the page shows the event.
    unit = agent.config.systemd_dir / "drifty-pocketbase.service"
    unit.write_text(unit.read_text() + "\n# edited by hand\n")
    await expect(page.locator(".events")).to_contain_text("drift repaired", timeout=30_000)
    await expect(drift).to_have_text("Match", timeout=UI_TIMEOUT_MS)
    await dashboard.shot("drift-repaired")


async def test_changing_the_version_upgrades_the_instance(
    dashboard: Dashboard, agent: Agent, api: Api, older: str, newer: str
) -> None:
    await create(api, older, "upgradable")
    page = dashboard.page
    await dashboard.sign_in("/services/upgradable")
    await expect(page.locator('dd[data-term="Deployed version"]')).to_have_text(older)
    await page.get_by_label("New PocketBase version").fill(newer)
    await page.get_by_role("button", name="Change version").click()
    await expect(page.locator('dd[data-term="Deployed version"]')).to_have_text(
        newer, timeout=DEPLOY_TIMEOUT_MS
    )
    await expect(page.locator(".events")).to_contain_text(f"PocketBase {older} -> {newer}")
    await expect(page.locator("h1 .badge")).to_have_text("Active", timeout=DEPLOY_TIMEOUT_MS)
    await dashboard.shot("upgraded")
    unit = (agent.config.systemd_dir / "upgradable-pocketbase.service").read_text()
    assert f"X-Pockestrator-Version={newer}" in unit


# -- app releases ----------------------------------------------------------------------------


def _app_archive(path: Path, greeting: str) -> Path:
    payload = f'routerAdd("GET", "/hello", (e) => e.string(200, "{greeting}"))\n'.encode()
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("pb_hooks/hello.pb.js")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    return path


async def _hello(sandbox: Sandbox, domain: str) -> str:
    base = f"http://127.0.0.1:{sandbox.caddy_http_port}"
    async with (
        aiohttp.ClientSession(headers={"Host": domain}) as session,
        session.get(f"{base}/hello") as response,
    ):
        return await response.text()


async def test_an_app_is_deployed_by_upload_listed_and_rolled_back_on_the_service_page(
    dashboard: Dashboard, api: Api, sandbox: Sandbox, newer: str, tmp_path: Path
) -> None:
    service = (await create(api, newer, "shipped"))["service"]
    page = dashboard.page
    await dashboard.sign_in("/services/shipped")
    releases = page.locator("section", has=page.get_by_role("heading", name="App releases"))
    await expect(releases).to_contain_text("No app deployed")

    for greeting in ("first", "second"):
        await page.get_by_label("App archive (tar.gz)").set_input_files(
            str(_app_archive(tmp_path / f"{greeting}.tar.gz", greeting))
        )
        await page.get_by_role("button", name="Deploy", exact=True).click()
        await expect(page.get_by_test_id("release-message")).to_contain_text(
            "is live", timeout=DEPLOY_TIMEOUT_MS
        )
        assert await _hello(sandbox, service["domain"]) == greeting
    rows = releases.locator("tbody tr")
    await expect(rows).to_have_count(2)
    await expect(rows.first).to_contain_text("Live")
    await expect(rows.first).to_contain_text(dashboard.admin.email)
    await expect(rows.first).to_contain_text("+0 ~1 -0")
    await dashboard.shot("deployed")

    first_id = await rows.nth(1).get_attribute("data-release")
    await rows.nth(1).get_by_role("button", name=f"Roll back to release {first_id}").click()
    await expect(page.get_by_test_id("release-message")).to_contain_text(
        f"Release {first_id} is live", timeout=DEPLOY_TIMEOUT_MS
    )
    await expect(releases.locator("tr.live")).to_have_attribute("data-release", str(first_id))
    assert await _hello(sandbox, service["domain"]) == "first"
    await dashboard.shot("rolled-back")


# -- PocketBase's own settings --------------------------------------------------------------


async def _pocketbase_settings(
    sandbox: Sandbox, domain: str, email: str, password: str
) -> dict[str, Any]:
    """What the instance itself says its settings are (through Caddy, as its superuser)."""
    base = f"http://127.0.0.1:{sandbox.caddy_http_port}"
    async with aiohttp.ClientSession(headers={"Host": domain}) as session:
        async with session.post(
            f"{base}/api/collections/_superusers/auth-with-password",
            json={"identity": email, "password": password},
        ) as response:
            token = (await response.json())["token"]
        async with session.get(
            f"{base}/api/settings", headers={"Authorization": token}
        ) as response:
            return dict(await response.json())


async def test_settings_are_set_on_creation_and_edited_on_the_page_with_secrets_write_only(
    dashboard: Dashboard, api: Api, sandbox: Sandbox, newer: str
) -> None:
    page = dashboard.page
    secret = "dashboard-smtp-secret-0451"
    await dashboard.sign_in("/services/new")
    await page.get_by_label("Project name").fill("mailroom")
    await page.get_by_label("Port", exact=True).fill(str(free_port()))
    await page.get_by_label("PocketBase version").fill(newer)
    await page.get_by_label("First superuser e-mail (optional)").fill("owner@mailroom.example")
    await page.get_by_label("App name").fill("Mailroom")
    await page.get_by_label("SMTP host").fill("127.0.0.1")
    await page.get_by_label("SMTP port").fill("2525")
    await page.get_by_label("SMTP password").fill(secret)
    await dashboard.shot("settings-form")
    await page.get_by_role("button", name="Create service").click()
    password = await page.get_by_test_id("superuser-password").text_content()
    assert password
    await expect(page.locator(".outcome")).to_contain_text(
        "mailroom is up and running", timeout=DEPLOY_TIMEOUT_MS
    )
    declared = (await api.call("GET", "/services/mailroom")).body["service"]["settings"]
    assert declared["app_name"] == "Mailroom" and declared["smtp"]["password"] == {}

    # The page shows what is declared, says a password is set and never shows it.
    await dashboard.go("/services/mailroom")
    await expect(page.locator('dd[data-term="App name"]')).to_have_text("Mailroom")
    await expect(page.locator('dd[data-term="Mail (SMTP)"]')).to_contain_text("password set")
    await page.get_by_text("Edit settings").click()
    await expect(page.get_by_label("SMTP password", exact=True)).to_have_value("")
    assert secret not in await page.content()
    await dashboard.shot("settings-shown")

    # An edit goes to the spec and from there into PocketBase; the password stays set.
    await page.get_by_label("App name").fill("Mailroom 2")
    await page.get_by_role("button", name="Save settings").click()
    await expect(page.locator('dd[data-term="App name"]')).to_have_text(
        "Mailroom 2", timeout=UI_TIMEOUT_MS
    )
    answer = (await api.call("GET", "/services/mailroom")).body
    assert answer["service"]["settings"]["smtp"]["password"] == {}

    async def pocketbase_has_it() -> bool:
        settings = await _pocketbase_settings(
            sandbox, "mailroom.localhost", "owner@mailroom.example", password
        )
        return bool(settings["meta"]["appName"] == "Mailroom 2")

    assert await wait_until(pocketbase_has_it, 30, 0.3)
    assert secret not in await page.content()
    await dashboard.shot("settings-saved")


async def test_a_refused_downgrade_offers_to_restore_the_backup_and_then_does(
    dashboard: Dashboard, agent: Agent, api: Api, older: str, newer: str
) -> None:
    await create(api, older, "rewound")
    reply = await api.call("PATCH", "/services/rewound?wait=true", {"pocketbase_version": newer})
    assert reply.status == 200, reply.body
    page = dashboard.page
    dashboard.watch.expect(400, "/services/")  # the refused downgrade, on purpose
    await dashboard.sign_in("/services/rewound")
    deployed = page.locator('dd[data-term="Deployed version"]')
    await expect(deployed).to_have_text(newer, timeout=DEPLOY_TIMEOUT_MS)
    allow = page.get_by_label("Allow the downgrade", exact=False)
    await expect(allow).to_be_hidden()

    await page.get_by_label("New PocketBase version").fill(older)
    await page.get_by_role("button", name="Change version").click()
    await expect(page.get_by_text("set allow_downgrade to restore the backup")).to_be_visible()
    await allow.check()
    await page.get_by_label("New PocketBase version").fill(older)
    await page.get_by_role("button", name="Change version").click()

    await expect(deployed).to_have_text(older, timeout=DEPLOY_TIMEOUT_MS)
    await expect(page.locator(".events")).to_contain_text(
        f"downgrading PocketBase {newer} -> {older}"
    )
    await dashboard.shot("downgraded")


# -- proxy and HTTPS -------------------------------------------------------------------------


async def test_proxy_options_are_chosen_at_creation_and_edited_on_the_detail_page(
    dashboard: Dashboard, agent: Agent, api: Api, newer: str
) -> None:
    page = dashboard.page
    await dashboard.sign_in("/services/new")
    await page.get_by_label("Project name").fill("proxied")
    await page.get_by_label("Port", exact=True).fill(str(free_port()))
    await page.get_by_label("PocketBase version").fill(newer)
    await page.get_by_label("More domains").fill("www-proxied.localhost")
    await page.get_by_label("Largest request body").fill("3MB")
    await page.get_by_role("button", name="Create service").click()
    await expect(page.locator(".outcome")).to_contain_text(
        "proxied is up and running", timeout=DEPLOY_TIMEOUT_MS
    )
    detail = (await api.call("GET", "/services/proxied")).body
    proxy = detail["service"]["proxy"]
    assert proxy["aliases"] == ["www-proxied.localhost"] and proxy["max_body_size"] == "3MB"

    dashboard.watch.expect(400, "/services/")  # the refused hold, on purpose
    await dashboard.go("/services/proxied")
    row = page.locator('dd[data-term="Proxy"]')
    await expect(row).to_contain_text("body up to 3MB")
    await expect(row).to_contain_text("www-proxied.localhost (served)")
    await expect(page.locator('dd[data-term="HTTPS"]')).to_contain_text("plain HTTP")
    await expect(page.locator('dd[data-term="Certificate"]')).to_have_text("none (plain HTTP)")
    hold = page.get_by_label("Hold requests while restarting (seconds)")
    await expect(hold).to_have_value("10")
    await hold.fill("5")
    await page.get_by_label("Redirect them to the main domain (301)").check()
    await page.get_by_role("button", name="Save").click()
    await expect(row).to_contain_text("requests held 5 s", timeout=UI_TIMEOUT_MS)
    await expect(row).to_contain_text("(redirected)")
    site = agent.config.caddy_sites_dir / "proxied.caddy"

    async def rewritten() -> bool:
        return site.exists() and "lb_try_duration 5s" in site.read_text()

    assert await wait_until(rewritten, 30)
    assert "redir http://proxied.localhost" in site.read_text()

    await hold.fill("900")
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_text("hold_requests must be")).to_be_visible()
    await dashboard.shot("proxy-options")


# -- logs ----------------------------------------------------------------------------------


async def test_follow_mode_streams_new_lines_and_keeps_the_newest_in_view(
    dashboard: Dashboard, api: Api, newer: str
) -> None:
    await create(api, newer, "chatty")
    page = dashboard.page
    await page.set_viewport_size({"width": 1280, "height": 480})  # so that lines overflow
    await dashboard.sign_in("/services/chatty/logs")
    await expect(page.locator(".log .line", has_text="Server started at")).to_have_count(1)

    await page.get_by_role("button", name="Follow live").click()
    following = page.get_by_role("button", name="Stop following")
    await expect(following).to_have_attribute("aria-pressed", "true")
    await expect(following).to_be_focused()
    started = page.locator(".log .line", has_text="Server started at")
    await expect(started).to_have_count(1)
    await expect(page.locator("#log-state")).to_contain_text("Following live")
    for restarts in range(1, 5):
        reply = await api.call("POST", "/services/chatty/control", {"action": "restart"})
        assert reply.status == 200, reply.body
        await expect(started).to_have_count(1 + restarts, timeout=UI_TIMEOUT_MS)
    log = page.locator(".log")
    overflow, at_bottom = await log.evaluate(
        "el => [el.scrollHeight > el.clientHeight,"
        " el.scrollHeight - el.scrollTop - el.clientHeight < 2]"
    )
    assert overflow and at_bottom
    await dashboard.shot("following")

    # Scrolled up to read: new lines arrive but the view stays where the reader is.
    await log.evaluate("el => { el.scrollTop = 0; }")
    await api.call("POST", "/services/chatty/control", {"action": "restart"})
    await expect(started).to_have_count(6, timeout=UI_TIMEOUT_MS)
    assert await log.evaluate("el => el.scrollTop") == 0

    await page.get_by_role("button", name="Stop following").click()
    await expect(page.get_by_role("button", name="Follow live")).to_be_visible()


async def test_the_event_stream_parser_follows_the_html_standard(dashboard: Dashboard) -> None:
    """Chunks split anywhere, CRLF, comments, multi-line data, ids and retry, in Chromium."""
    await dashboard.open()
    events = await dashboard.page.evaluate(
        """async () => {
          const { SseParser } = await import('/static/js/sse.js');
          const seen = [];
          const parser = new SseParser((event) => seen.push(event));
          const text = 'retry: 2500\\r\\n: keepalive\\r\\n\\r\\nid: c1\\r\\nevent: log\\r\\n'
            + 'data: {"a":1}\\r\\n\\r\\ndata:two\\ndata: lines\\n\\nid: c2\\rdata: x\\r\\r'
            + 'event: log\\ndata\\n\\n';
          for (const size of [1, 2, 3, 7, text.length]) {
            for (let i = 0; i < text.length; i += size) parser.push(text.slice(i, i + size));
          }
          return { seen, retry: parser.retry, last: parser.lastEventId };
        }"""
    )
    one_pass = [
        {"type": "log", "data": '{"a":1}', "id": "c1"},
        {"type": "message", "data": "two\nlines", "id": "c1"},
        {"type": "message", "data": "x", "id": "c2"},
        {"type": "log", "data": "", "id": "c2"},
    ]
    assert events["seen"] == one_pass * 5
    assert events["retry"] == 2500 and events["last"] == "c2"


async def test_the_page_watch_reports_errors_and_unexpected_answers_but_not_expected_ones(
    dashboard: Dashboard,
) -> None:
    """The teardown check of every test is only worth something if it catches problems."""
    await dashboard.sign_in("/services")
    page = dashboard.page
    validation = await page.evaluate(
        """async () => {
          const token = JSON.parse(sessionStorage.getItem('pockestrator.session')).token;
          const headers = { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' };
          const api = '/api/pockestrator';
          const init = { method: 'POST', headers, body: '{}' };
          const answer = await fetch(`${api}/validate/service`, init);
          await fetch(`${api}/services/no-such-service`, { headers });
          await fetch('/static/js/missing.js');
          console.error('something broke');
          setTimeout(() => { throw new Error('uncaught in a timer'); });
          return answer.status;
        }"""
    )
    expected = ("no-such-service", "missing.js", "something broke", "uncaught in a timer")

    async def all_reported() -> bool:
        # The timer's exception and the console messages reach the watch asynchronously.
        return all(any(e in problem for problem in dashboard.watch.problems) for e in expected)

    reported = await wait_until(all_reported, timeout=10)
    problems = list(dashboard.watch.problems)
    dashboard.watch.problems.clear()  # seen; the teardown check is what is under test here
    # Each one is reported; how many lines Chromium gives one of them varies (a 404 of a
    # static file is a console error, sometimes an aborted request as well).
    assert reported, (expected, problems)
    assert validation == 400  # expected while typing: not a problem
    assert not any("validate/service" in problem for problem in problems)


# -- system --------------------------------------------------------------------------------


async def test_the_system_page_shows_health_version_paths_and_a_setup_hint_when_not_ready(
    dashboard: Dashboard, agent: Agent, sandbox: Sandbox, api: Api
) -> None:
    # The port of the instances' links comes from the API, read from the sandbox's Caddyfile.
    info = (await api.call("GET", "/system/info")).body
    assert info["public_port"] == sandbox.caddy_http_port
    page = dashboard.page
    await dashboard.sign_in("/system")
    await expect(page.locator(".verdict")).to_have_text("This host is ready to run services.")
    await expect(page.locator(".checks li.bad")).to_have_count(0)
    await expect(page.locator(".checks li.ok")).to_have_count(9)
    about = page.get_by_role("region", name="Agent")
    await expect(about).to_contain_text("0.1.0")
    paths = page.get_by_role("region", name="Configuration and paths")
    await expect(paths).to_contain_text(str(agent.config.base_dir))
    await expect(paths).to_contain_text(str(sandbox.caddy_http_port))
    await expect(page.locator(".setup")).to_be_hidden()
    await dashboard.shot("healthy")

    dashboard.watch.expect(503, "/system/health")
    await sandbox.bus.stop_unit(CADDY_UNIT)  # type: ignore[union-attr]
    try:
        await page.get_by_role("button", name="Check again").click()
        await expect(page.locator(".verdict")).to_have_text(
            "This host is not ready to run services."
        )
        setup = page.locator(".setup")
        await expect(setup).to_contain_text("Caddy is not running")
        await expect(setup).to_contain_text("Start Caddy")
        await expect(page.locator(".issues li.error")).to_contain_text("CADDY_NOT_RUNNING")
        # Every page says so until it is fixed.
        await dashboard.go("/services")
        await expect(page.locator("#host-banner")).to_contain_text("not ready")
        await page.locator("#host-banner").get_by_role("link", name="See what to set up").click()
        await expect(page.locator(".setup")).to_be_visible()
        await dashboard.shot("not-ready")
    finally:
        await sandbox.bus.start_unit(CADDY_UNIT)  # type: ignore[union-attr]
    await page.get_by_role("button", name="Check again").click()
    await expect(page.locator(".verdict")).to_have_text("This host is ready to run services.")
    await expect(page.locator("#host-banner")).to_be_hidden()


# -- phone ---------------------------------------------------------------------------------


async def test_the_dashboard_works_on_a_phone_sized_screen(
    phone: Dashboard, api: Api, sandbox: Sandbox, newer: str
) -> None:
    await create(api, newer, "pocket", description="Seen on a phone")
    page = phone.page
    await page.add_init_script(WIDTH_WATCH)
    await phone.sign_in("/services")
    card = row(phone, "pocket")
    await expect(card.locator(".badge")).to_have_text("Active")
    await expect(card.locator('td[data-label="Domain"] a')).to_be_visible()
    await assert_fits_the_screen(page)
    await phone.shot("services")

    await card.get_by_role("link", name="pocket", exact=True).tap()
    await expect(page.get_by_role("heading", name="pocket", level=1)).to_be_visible()
    await expect(page.get_by_role("button", name="Restart")).to_be_visible()
    await assert_fits_the_screen(page)
    await phone.shot("detail")

    await page.get_by_role("link", name="New service").tap()
    await expect(page.get_by_label("Project name")).to_be_visible()
    await assert_fits_the_screen(page)
    await phone.shot("create")

    await phone.go("/services/pocket/logs")
    await expect(page.locator(".log .line").first).to_be_visible()
    await assert_fits_the_screen(page)
    await phone.shot("logs")

    # A table that keeps its columns on a phone scrolls in its own box.
    await phone.go("/services/pocket/backups")
    await page.get_by_role("button", name="Take a backup now").tap()
    await expect(page.locator("tr[data-backup]")).to_have_count(1, timeout=DEPLOY_TIMEOUT_MS)
    await assert_fits_the_screen(page)
    await phone.shot("backups")

    await page.get_by_role("link", name="System").tap()
    await expect(page.locator(".verdict")).to_be_visible()
    await assert_fits_the_screen(page)
    await phone.shot("system")


async def assert_fits_the_screen(page: Any) -> None:
    """The page is no wider than the phone now, nor was it at any moment since the last
    look (``WIDTH_WATCH``: a page wide for a few frames is what a user sees jump); if it
    was, the failure names what stuck out."""
    now = await page.evaluate(f"({WIDEST_ELEMENTS})()")
    widest = await page.evaluate("window.__widest ?? null") or now
    await page.evaluate("window.__widest = null")
    for width, sticking_out in (now, widest):
        assert width <= PHONE["width"], (
            f"the page was {width}px wide on a {PHONE['width']}px screen; what stuck out "
            "(selector: width, right edge, the start of its HTML):\n" + "\n".join(sticking_out)
        )


# The page's width and, in the same moment, the outermost elements whose right edge passes
# the screen's (their parents fit, and no box clips them), widest first.
WIDEST_ELEMENTS = """() => {
  const screen = document.documentElement.clientWidth;
  const path = (el) => {
    const parts = [];
    for (let node = el; node && node !== document.body; node = node.parentElement) {
      const classes = [...node.classList].map((c) => `.${c}`).join('');
      parts.unshift(node.tagName.toLowerCase() + (node.id ? `#${node.id}` : '') + classes);
    }
    return parts.join(' > ');
  };
  const out = (el) => el.getBoundingClientRect().right > screen + 0.5;
  // Inside a box that clips or scrolls, an element cannot widen the page.
  const clipped = (el) => {
    for (let node = el.parentElement; node && node !== document.body; node = node.parentElement) {
      if (getComputedStyle(node).overflowX !== 'visible') return true;
    }
    return false;
  };
  const widest = [...document.body.querySelectorAll('*')]
    .filter((el) => out(el) && !(el.parentElement && out(el.parentElement)) && !clipped(el))
    .map((el) => [el, el.getBoundingClientRect()])
    .sort((a, b) => b[1].width - a[1].width)
    .slice(0, 8)
    .map(([el, box]) =>
      `${path(el)}: ${Math.round(box.width)}px, right ${Math.round(box.right)}px: ` +
      el.outerHTML.slice(0, 200));
  return [document.documentElement.scrollWidth, widest];
}"""

# Run in the page from its first load: after every change to the DOM and every frame, the
# widest the page has been since the test last looked (``window.__widest``), with what
# stuck out then. A check that only looks now and then finds a short-lived widening only
# by luck (the releases table did it for a few frames, caught once in many runs).
WIDTH_WATCH = f"""(() => {{
  const widestNow = {WIDEST_ELEMENTS};
  const look = () => {{
    const width = document.documentElement.scrollWidth;
    if (width <= document.documentElement.clientWidth) return;
    if (window.__widest && window.__widest[0] >= width) return;
    window.__widest = widestNow();
  }};
  addEventListener('DOMContentLoaded', () => {{
    new MutationObserver(look).observe(document.body, {{
      subtree: true, childList: true, attributes: true, characterData: true,
    }});
    const frame = () => {{ look(); requestAnimationFrame(frame); }};
    requestAnimationFrame(frame);
  }});
}})();"""
