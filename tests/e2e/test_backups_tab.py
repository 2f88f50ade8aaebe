"""The backups page of a service, in Chromium, against a real agent on the test bed.

A user takes a backup, sees it listed with its size and age, downloads it, writes more
records, restores the backup after a confirmation that names what is lost, and the
records are checked through PocketBase's own API.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from tests.e2e.browser import Dashboard
from tests.testbed.api_client import Api, create, wait_running
from tests.testbed.pocketbase_client import PocketBaseClient

expect = pytest.importorskip("playwright.async_api").expect
pytestmark = pytest.mark.e2e

OPERATION_TIMEOUT_MS = 60_000


async def test_a_backup_is_taken_listed_downloaded_and_restored_after_a_plain_warning(
    dashboard: Dashboard, api: Api, pocketbase_versions: tuple[str, str], tmp_path: Path
) -> None:
    created = await create(
        api, pocketbase_versions[1], "journal", superuser_email="admin@journal.example"
    )
    await wait_running(api, "journal")
    page = dashboard.page
    async with PocketBaseClient(f"http://127.0.0.1:{created['service']['port']}") as client:
        await client.sign_in("admin@journal.example", created["superuser_password"])
        await client.notes()
        await client.add("kept")

        await dashboard.sign_in("/services/journal")
        await page.get_by_role("link", name="Backups").click()
        await expect(page.locator("h1")).to_have_text("Backups of journal")
        await expect(page.locator("tbody")).to_contain_text("No backups yet.")
        await page.get_by_role("button", name="Take a backup now").click()
        row = page.locator("tr[data-backup]")
        await expect(row).to_have_count(1, timeout=OPERATION_TIMEOUT_MS)
        await expect(row).to_contain_text("manual")
        await expect(row).to_contain_text("KiB")
        await expect(row).to_contain_text("ago")
        await dashboard.shot("listed")

        async with page.expect_download() as waiting:
            await row.get_by_role("button", name="Download").click()
        download = await waiting.value
        saved = tmp_path / "backup.tar"
        await download.save_as(saved)
        with tarfile.open(saved) as tar:
            assert any(n.endswith("/pb_data/data.db") for n in tar.getnames())

        await client.add("lost by the restore")
        await row.get_by_role("button", name="Restore…").click()
        dialog = page.get_by_role("dialog")
        await expect(dialog).to_contain_text("Everything written to journal since")
        await expect(dialog).to_contain_text("is lost from the running service")
        await dashboard.shot("confirm")
        await dialog.get_by_role("button", name="Restore and replace the data").click()
        await expect(page.locator(".progress")).to_contain_text("Restoring")
        await expect(page.locator("tr[data-backup]")).to_have_count(2, timeout=OPERATION_TIMEOUT_MS)
        await expect(page.locator("tr[data-backup]").first).to_contain_text("safety")
        await wait_running(api, "journal")
        assert await client.titles() == ["kept"]
