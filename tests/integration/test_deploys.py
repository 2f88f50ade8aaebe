"""App deploys on the test bed: real PocketBase, systemd, journald and Caddy.

Every deploy goes through the agent's API as a tar.gz and is done by the service's
reconcile, as in production; what it changed is read back through Caddy (the hook's route,
the page) and PocketBase's own API (the collection a migration made).
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import aiohttp

from pockestrator.agent.daemon import Agent
from pockestrator.agent.sandbox import Sandbox, free_port
from pockestrator.apparchive import pack_app
from tests.testbed.api_client import Api, create, wait_running
from tests.testbed.cli_env import run_cli
from tests.testbed.waiting import wait_until

TODO_MIGRATION = """migrate((app) => {
  const todos = new Collection({
    type: "base",
    name: "todos",
    listRule: "",
    viewRule: "",
    fields: [{ name: "title", type: "text" }],
  })
  app.save(todos)
}, (app) => {
  app.delete(app.findCollectionByNameOrId("todos"))
})
"""


def hook(text: str) -> str:
    return f'routerAdd("GET", "/hello", (e) => e.string(200, "{text}"))\n'


def app_archive(files: dict[str, bytes | str], extra: tuple[tarfile.TarInfo, ...] = ()) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, data in files.items():
            payload = data.encode() if isinstance(data, str) else data
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        for info in extra:
            tar.addfile(info)
    return raw.getvalue()


async def deploy(api: Api, name: str, archive: bytes) -> Any:
    return await api.call(
        "POST", f"/services/{name}/releases", raw=archive, content_type="application/gzip"
    )


async def through_caddy(sandbox: Sandbox, domain: str, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{sandbox.caddy_url}{path}", headers={"Host": domain}) as response,
    ):
        return response.status, await response.text()


async def service(api: Api, version: str, name: str) -> str:
    created = await create(api, version, name)
    await wait_running(api, name)
    return str(created["service"]["domain"])


async def test_a_deploy_serves_its_hook_and_page_through_caddy_and_migrates_a_collection(
    api: Api, sandbox: Sandbox, version: str
) -> None:
    domain = await service(api, version, "todo")
    archive = app_archive(
        {
            "pb_hooks/hello.pb.js": hook("hello v1"),
            "pb_migrations/1700000000_todos.js": TODO_MIGRATION,
            "pb_public/index.html": "<h1>todo</h1>",
        }
    )

    reply = await deploy(api, "todo", archive)

    assert reply.status == 201, reply.body
    result = reply.body["operation"]["result"]
    assert reply.body["operation"]["kind"] == "deploy"
    assert result["diff"]["added"] == [
        "pb_hooks/hello.pb.js",
        "pb_migrations/1700000000_todos.js",
        "pb_public/index.html",
    ]
    assert await through_caddy(sandbox, domain, "/hello") == (200, "hello v1")
    assert await through_caddy(sandbox, domain, "/") == (200, "<h1>todo</h1>")
    status, body = await through_caddy(sandbox, domain, "/api/collections/todos/records")
    assert status == 200 and '"items":[]' in body.replace(" ", "")
    listed = await api.call("GET", "/services/todo/releases")
    assert listed.status == 200
    assert listed.body["live"] == result["release"]
    assert listed.body["releases"][0]["live"] is True
    assert listed.body["releases"][0]["file_count"] == 3
    assert listed.body["releases"][0]["created_by"] == "integration tests"


async def test_a_hook_that_does_not_parse_is_refused_with_its_error_and_the_old_code_serves(
    api: Api, sandbox: Sandbox, version: str
) -> None:
    domain = await service(api, version, "broken")
    assert (
        await deploy(api, "broken", app_archive({"pb_hooks/a.pb.js": hook("old")}))
    ).status == 201
    before = await api.call("GET", "/services/broken/releases")

    reply = await deploy(
        api, "broken", app_archive({"pb_hooks/a.pb.js": 'routerAdd("GET", "/hello", (e) => {'})
    )

    assert reply.status == 502, reply.body
    assert reply.body["code"] == "OPERATION_FAILED"
    assert "step validate" in reply.body["message"]
    assert "SyntaxError" in reply.body["message"]  # PocketBase's own text
    assert await through_caddy(sandbox, domain, "/hello") == (200, "old")
    after = await api.call("GET", "/services/broken/releases")
    assert after.body["releases"] == before.body["releases"]
    events = await api.call("GET", "/services/broken/events")
    assert any(
        e["kind"] == "deploy_failed" and "SyntaxError" in e["message"]
        for e in events.body["events"]
    )


async def test_a_migration_that_fails_midway_leaves_the_data_as_before(
    api: Api, sandbox: Sandbox, version: str
) -> None:
    domain = await service(api, version, "halfway")
    failing = TODO_MIGRATION.replace(
        "app.save(todos)", "app.save(todos)\n  throw new Error('stop here')"
    )
    archive = app_archive(
        {
            "pb_migrations/1700000000_first.js": TODO_MIGRATION.replace('"todos"', '"first"'),
            "pb_migrations/1700000001_second.js": failing,
        }
    )

    reply = await deploy(api, "halfway", archive)

    assert reply.status == 502, reply.body
    assert "stop here" in reply.body["message"]
    for collection in ("first", "todos"):
        status, _ = await through_caddy(sandbox, domain, f"/api/collections/{collection}/records")
        assert status == 404, collection
    listed = await api.call("GET", "/services/halfway/releases")
    assert listed.body["live"] is None and listed.body["releases"] == []


async def test_a_rollback_returns_the_previous_hooks(
    api: Api, sandbox: Sandbox, version: str
) -> None:
    domain = await service(api, version, "rewind")
    first = await deploy(api, "rewind", app_archive({"pb_hooks/a.pb.js": hook("first")}))
    second = await deploy(api, "rewind", app_archive({"pb_hooks/a.pb.js": hook("second")}))
    assert (first.status, second.status) == (201, 201)
    assert await through_caddy(sandbox, domain, "/hello") == (200, "second")

    reply = await api.call("POST", "/services/rewind/rollback")

    assert reply.status == 200, reply.body
    assert (
        reply.body["operation"]["result"]["release"] == first.body["operation"]["result"]["release"]
    )
    assert await through_caddy(sandbox, domain, "/hello") == (200, "first")
    listed = await api.call("GET", "/services/rewind/releases")
    assert listed.body["live"] == first.body["operation"]["result"]["release"]
    assert listed.body["releases"][0]["diff"]["changed"] == ["pb_hooks/a.pb.js"]
    assert [r["live"] for r in listed.body["releases"]] == [False, True]


def _special(name: str, kind: bytes, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


def _bomb() -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        info = tarfile.TarInfo("pb_public/bomb.bin")
        info.size = 300 * 1024 * 1024  # past the default 256 MiB unpacked
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    return raw.getvalue()


def hostile_archives() -> dict[str, tuple[bytes, str]]:
    """Each kind of hostile archive, and the words its refusal must contain. Built when the
    test runs, not at import: the bomb and the 10,000 files cost 1.3 CPU-s, and every
    xdist worker imports this module to collect it."""
    return {
        "traversal": (app_archive({"pb_hooks/../../../etc/cron.d/evil": "x"}), "'..'"),
        "symlink": (
            app_archive({}, (_special("pb_hooks/shadow.pb.js", tarfile.SYMTYPE, "/etc/shadow"),)),
            "symbolic link",
        ),
        "device": (app_archive({}, (_special("pb_public/sda", tarfile.BLKTYPE),)), "a device"),
        "many files": (
            app_archive({f"pb_public/{n}.txt": "" for n in range(10_000)}),
            "more than 5000 entries",
        ),
        "zip bomb": (_bomb(), "bytes unpacked"),
    }


async def test_hostile_archives_are_refused_by_name_and_nothing_is_written(
    api: Api, agent: Agent, version: str
) -> None:
    await service(api, version, "hostile")
    folder = agent.config.base_dir / "hostile"
    uploads = agent.config.apps_path / "uploads"

    for kind, (archive, words) in hostile_archives().items():
        reply = await deploy(api, "hostile", archive)
        assert reply.status == 422, (kind, reply.body)
        assert reply.body["code"] == "UNSAFE_ARCHIVE", kind
        assert words in reply.body["message"], (kind, reply.body["message"])

    assert not (folder / ".releases").exists() or list((folder / ".releases").iterdir()) == []
    assert not uploads.exists() or list(uploads.iterdir()) == []
    listed = await api.call("GET", "/services/hostile/releases")
    assert listed.body["releases"] == []
    assert not Path("/etc/cron.d/evil").exists()


LIVE_ONLY = (
    # Loads in the dry boot's scratch copy, throws in the instance's own folder.
    'if (!__hooks.includes(".scratch-")) { throw new Error("fails on the live data") }\n'
    + hook("bad")
)


async def test_a_release_that_fails_after_the_stop_is_undone_data_and_code_alike(
    api: Api, sandbox: Sandbox, version: str
) -> None:
    domain = await service(api, version, "undone")
    good = await deploy(api, "undone", app_archive({"pb_hooks/a.pb.js": hook("good")}))
    assert good.status == 201, good.body
    # A new migration: the instance is stopped for it, and the hooks then fail to load.
    archive = app_archive(
        {
            "pb_hooks/a.pb.js": LIVE_ONLY,
            "pb_migrations/1700000000_todos.js": TODO_MIGRATION,
        }
    )

    reply = await deploy(api, "undone", archive)

    assert reply.status == 502, reply.body
    message = reply.body["message"]
    assert "step migrate" in message and "fails on the live data" in message
    assert "is back" in message and "is live again" in message
    assert await through_caddy(sandbox, domain, "/hello") == (200, "good")
    status, _ = await through_caddy(sandbox, domain, "/api/collections/todos/records")
    assert status == 404
    listed = await api.call("GET", "/services/undone/releases")
    assert listed.body["live"] == good.body["operation"]["result"]["release"]


async def test_hooks_that_fail_on_the_live_instance_are_refused_while_the_old_code_serves(
    api: Api, sandbox: Sandbox, version: str
) -> None:
    domain = await service(api, version, "prechecked")
    good = await deploy(api, "prechecked", app_archive({"pb_hooks/a.pb.js": hook("good")}))
    assert good.status == 201, good.body
    pid_before = (await api.call("GET", "/services/prechecked/status")).body["pid"]

    reply = await deploy(api, "prechecked", app_archive({"pb_hooks/a.pb.js": LIVE_ONLY}))

    assert reply.status == 502, reply.body
    assert "step migrate" in reply.body["message"]
    assert "fails on the live data" in reply.body["message"]
    assert await through_caddy(sandbox, domain, "/hello") == (200, "good")
    # No migration to apply: checked before the stop, so the instance was never restarted.
    assert (await api.call("GET", "/services/prechecked/status")).body["pid"] == pid_before


def write_app(folder: Path, greeting: str) -> Path:
    (folder / "pb_hooks").mkdir(parents=True, exist_ok=True)
    (folder / "pb_public").mkdir(exist_ok=True)
    (folder / "pb_hooks" / "hello.pb.js").write_text(hook(greeting))
    (folder / "pb_public" / "index.html").write_text(f"<p>{greeting}</p>")
    return folder


async def test_the_cli_deploys_a_folder_and_an_archive_lists_releases_and_rolls_back(
    api: Api, agent: Agent, sandbox: Sandbox, version: str, tmp_path: Path
) -> None:
    domain = await service(api, version, "cli")
    token, _record = agent.accounts.create_token("cli-deployer")
    url = f"http://{agent.config.listen_host}:{agent.config.listen_port}"
    app = write_app(tmp_path / "app", "from a folder")

    code, out, err = await run_cli(url, token, "deploy", "cli", str(app))
    assert code == 0, err
    assert "is live" in out
    assert await through_caddy(sandbox, domain, "/hello") == (200, "from a folder")

    archive = tmp_path / "app.tar.gz"
    archive.write_bytes(app_archive({"pb_hooks/hello.pb.js": hook("from an archive")}))
    code, out, err = await run_cli(url, token, "deploy", "cli", "--from-archive", str(archive))
    assert code == 0, err
    assert await through_caddy(sandbox, domain, "/hello") == (200, "from an archive")

    code, out, err = await run_cli(url, token, "releases", "cli", "-o", "json")
    assert code == 0, err
    listed = json.loads(out)
    assert [r["created_by"] for r in listed["releases"]] == ["cli-deployer", "cli-deployer"]
    assert listed["releases"][0]["diff"]["removed"] == ["pb_public/index.html"]
    first = listed["releases"][1]["id"]

    code, out, err = await run_cli(url, token, "rollback", "cli", first)
    assert code == 0, err
    assert f"release {first} is live again" in out
    assert await through_caddy(sandbox, domain, "/hello") == (200, "from a folder")

    code, out, err = await run_cli(url, token, "releases", "cli")
    assert code == 0 and first in out and "*" in out

    # The same folder again is the same release: nothing to switch.
    code, out, err = await run_cli(url, token, "deploy", "cli", str(app))
    assert code == 0, err
    assert "already live" in out

    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(app_archive({"secrets/x": "1"}))
    code, out, err = await run_cli(url, token, "deploy", "cli", "--from-archive", str(bad))
    assert code == 3  # invalid: the agent refused the archive (422)
    assert "UNSAFE_ARCHIVE" in err or "outside" in err


async def test_a_spec_files_app_folder_is_deployed_and_a_change_in_it_is_a_new_release(
    api: Api, agent: Agent, sandbox: Sandbox, version: str
) -> None:
    spec_dir = agent.config.spec_dir
    app = write_app(spec_dir / "gitops-app", "from git")
    port = free_port()
    (spec_dir / "gitops.yaml").write_text(
        f"project_name: gitops\nport: {port}\npocketbase_version: '{version}'\n"
        "app:\n  path: ./gitops-app\n"
    )
    domain = "gitops.localhost"

    async def serves(text: str) -> bool:
        try:
            return await through_caddy(sandbox, domain, "/hello") == (200, text)
        except aiohttp.ClientError:
            return False  # Caddy starts with the first site it serves

    try:
        assert await wait_until(lambda: serves("from git"), 60, 0.2)
        (app / "pb_hooks" / "hello.pb.js").write_text(hook("changed in git"))
        assert await wait_until(lambda: serves("changed in git"), 60, 0.2)

        listed = await api.call("GET", "/services/gitops/releases")
        assert [r["source"] for r in listed.body["releases"]] == ["file", "file"]
        assert listed.body["releases"][0]["diff"]["changed"] == ["pb_hooks/hello.pb.js"]
        shown = await api.call("GET", "/services/gitops")
        assert "app" not in shown.body  # a spec file's own field, like its password file
    finally:
        (spec_dir / "gitops.yaml").unlink()


TODO_APP = Path(__file__).resolve().parents[2] / "docs" / "examples" / "todo-app"


async def todo_stats(sandbox: Sandbox, domain: str) -> Any:
    status, body = await through_caddy(sandbox, domain, "/api/todo/stats")
    assert status == 200, body
    return json.loads(body)


async def test_the_todo_app_of_the_deploy_guide_works_as_the_guide_says(
    api: Api, sandbox: Sandbox, version: str
) -> None:
    domain = await service(api, version, "guide")

    reply = await deploy(api, "guide", pack_app(TODO_APP))

    assert reply.status == 201, reply.body
    assert await todo_stats(sandbox, domain) == {"all": 0, "done": 0}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{sandbox.caddy_url}/api/collections/todos/records",
            json={"title": "write the guide"},
            headers={"Host": domain},
        ) as response,
    ):
        assert response.status == 200, await response.text()
    assert await todo_stats(sandbox, domain) == {"all": 1, "done": 0}
    status, page = await through_caddy(sandbox, domain, "/")
    assert status == 200 and "<h1>Todos</h1>" in page


async def test_a_retried_deploy_with_its_idempotency_key_gets_the_first_operation(
    api: Api, version: str
) -> None:
    await service(api, version, "retried-deploy")
    archive = app_archive({"pb_hooks/hello.pb.js": hook("once")})
    headers = {"Idempotency-Key": "deploy-3f2c9a1e"}
    path = "/services/retried-deploy/releases"

    async def send(body: bytes) -> Any:
        return await api.call(
            "POST", path, raw=body, content_type="application/gzip", headers=headers
        )

    first = await send(archive)
    assert first.status == 201, first.body
    again = await send(archive)
    assert again.status == 201
    assert again.body == first.body and again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"]
    assert first.headers["Location"].endswith(f"/operations/{first.body['operation']['id']}")
    listed = await api.call("GET", path)
    assert listed.body["total"] == 1
    other = await send(app_archive({"pb_hooks/hello.pb.js": hook("twice")}))
    assert other.status == 422 and other.body["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert (await api.call("GET", path)).body["total"] == 1
