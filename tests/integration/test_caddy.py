"""Caddy sites on the real test bed: snippets, one load through the admin API per wave.

Caddy runs as ``caddy.service`` of the sandbox's private systemd manager (HTTP only); a
real PocketBase runs as a unit beside it. Reloads are counted twice: by the controller's
own counter and by the "load complete" entries the running Caddy writes to the journal,
so a test cannot pass on the counter alone.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from pockestrator.agent.sandbox import Sandbox, free_port
from pockestrator.controllers.caddy import CaddySites, SiteSettings, render_site, site_address
from pockestrator.files import sha256_text
from pockestrator.specs.model import ServiceSpec
from tests.testbed.journal import journal_text
from tests.testbed.waiting import http_get, pocketbase_health, wait_for_pocketbase, wait_until

PB_UNIT = "caddytest-pocketbase.service"


def make_spec(name: str, port: int, domain: str | None = None) -> ServiceSpec:
    return ServiceSpec.model_validate(
        {
            "project_name": name,
            "port": port,
            "pocketbase_version": "0.29.0",
            "domain": domain or f"{name}.example.test",
        }
    )


def site(name: str, port: int) -> str:
    return render_site(make_spec(name, port), SiteSettings(tls="off"))


def controller(sandbox: Sandbox, **overrides: Any) -> CaddySites:
    return CaddySites(sandbox.agent_config(**overrides), sandbox.bus)


def admin_session(sandbox: Sandbox) -> aiohttp.ClientSession:
    """A client of the sandbox Caddy's admin API, on its unix socket (URLs: http://caddy/...)."""
    return aiohttp.ClientSession(connector=aiohttp.UnixConnector(str(sandbox.caddy_admin_socket)))


async def running_config(sandbox: Sandbox) -> Any:
    """What the running Caddy serves, from its admin API."""
    async with admin_session(sandbox) as session, session.get("http://caddy/config/") as response:
        assert response.status == 200
        return await response.json()


def served_hosts(config: Any) -> set[str]:
    hosts: set[str] = set()
    servers = (config or {}).get("apps", {}).get("http", {}).get("servers", {})
    for server in servers.values():
        for route in server.get("routes", []):
            for match in route.get("match", []):
                hosts.update(match.get("host", []))
    return hosts


def count_loads(journal: str) -> int:
    """How many "load complete" entries Caddy's journal text holds."""
    count = 0
    for line in journal.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("logger") == "admin.api" and entry.get("msg") == "load complete":
                count += 1
    return count


async def caddy_loads(sandbox: Sandbox) -> int:
    """How many configs the running Caddy has loaded, from its own journal entries, once
    the journal holds everything Caddy logged before this call.

    Journald takes entries in asynchronously, so a count read at once can miss the last
    load. Caddy writes its log to one stream, in order, and logs every admin request that
    is not a GET: a DELETE of an object id that does not exist (it changes nothing) with a
    unique marker in its URI is written after every earlier line, so once the marker is in
    the journal (a bounded wait for that entry, not a fixed pause) the count is exact.
    """
    marker = f"journal-marker-{secrets.token_hex(8)}"
    url = f"http://caddy/id/{marker}"
    async with admin_session(sandbox) as session, session.delete(url) as response:
        assert response.status == 404, await response.text()
    journal = ""

    async def marker_arrived() -> bool:
        nonlocal journal
        journal = journal_text(sandbox, "caddy")
        return marker in journal

    assert await wait_until(marker_arrived, timeout=15), "Caddy's marker never reached the journal"
    return count_loads(journal)


@pytest.fixture(scope="module")
async def pocketbase_port(sandbox: Sandbox) -> AsyncIterator[int]:
    """One real PocketBase unit; every site of this module proxies to it."""
    assert sandbox.bus is not None
    port = free_port()
    data = sandbox.layout.services_dir / "caddytest" / "pb_data"
    data.mkdir(parents=True)
    binary = Path(sys.executable).parent / "pocketbase"
    (sandbox.systemd.paths.unit_dir / PB_UNIT).write_text(
        "[Service]\n"
        f"ExecStart={binary} serve --http=127.0.0.1:{port} --dir={data}\n"
        "SyslogIdentifier=caddytest-pocketbase\n"
    )
    await sandbox.bus.daemon_reload()
    await sandbox.bus.start_unit(PB_UNIT)
    assert await wait_for_pocketbase(f"http://127.0.0.1:{port}")
    yield port
    await sandbox.bus.stop_unit(PB_UNIT)


async def answers(sandbox: Sandbox, domain: str) -> bool:
    """True when PocketBase itself answers through Caddy for ``domain``."""
    return await pocketbase_health(sandbox.caddy_url, host=domain)


# -- a real site -----------------------------------------------------------------------


async def test_rendered_site_serves_pocketbase_health_through_caddy(
    sandbox: Sandbox, pocketbase_port: int
) -> None:
    sites = controller(sandbox)
    loads = await caddy_loads(sandbox)

    result = await sites.apply({"health-one": site("health-one", pocketbase_port)})

    assert result.ok and result.reloaded and result.validations == 1
    assert result.sites["health-one"].changed
    assert await wait_for_pocketbase(sandbox.caddy_url, host="health-one.example.test")
    # Caddy answers an empty 200 for hosts it does not know: that is not PocketBase.
    status, body = await http_get(f"{sandbox.caddy_url}/api/health", "unknown.example.test")
    assert (status, body) == (200, "")
    assert await caddy_loads(sandbox) == loads + 1

    await sites.apply({"health-one": None})
    assert not await answers(sandbox, "health-one.example.test")


async def test_request_body_over_the_limit_is_refused_by_caddy(
    sandbox: Sandbox, pocketbase_port: int
) -> None:
    sites = controller(sandbox)
    await sites.apply({"bodylimit": site("bodylimit", pocketbase_port)})

    async def post(size: int) -> int:
        # A sign-in that PocketBase reads in full before it refuses the credentials.
        payload = b'{"identity": "' + b"x" * size + b'", "password": "wrong"}'
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{sandbox.caddy_url}/api/collections/_superusers/auth-with-password",
                data=payload,
                headers={"Host": "bodylimit.example.test", "Content-Type": "application/json"},
            ) as response,
        ):
            return response.status

    try:
        under, over = await post(9_000_000), await post(11_000_000)
        print(f"\nbody 9MB -> {under}, 11MB -> {over}")
        assert under == 400  # PocketBase itself: bad credentials
        assert over == 413
    finally:
        await sites.apply({"bodylimit": None})


async def test_unchanged_wave_costs_no_validation_and_no_reload(
    sandbox: Sandbox, pocketbase_port: int
) -> None:
    sites = controller(sandbox)
    wave = {"steady": site("steady", pocketbase_port)}
    await sites.apply(wave)
    validations, reloads = sites.validation_count, sites.reload_count
    loads = await caddy_loads(sandbox)

    again = await sites.apply(wave)

    assert again.ok and not again.reloaded and again.validations == 0
    assert not again.sites["steady"].changed
    assert (sites.validation_count, sites.reload_count) == (validations, reloads)
    assert await caddy_loads(sandbox) == loads
    await sites.apply({"steady": None})


async def test_caddy_gives_the_upstream_the_clients_address_whatever_the_client_claims(
    sandbox: Sandbox,
) -> None:
    """X-Forwarded-For and X-Real-IP as PocketBase behind one Caddy sees them: exactly the
    TCP peer's address (here 127.0.0.2), never a value the client wrote itself."""
    seen: list[dict[str, str]] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.Response(text="echo")

    app = web.Application()
    app.router.add_get("/{tail:.*}", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    sites = controller(sandbox)
    try:
        await sites.apply({"echo": site("echo", port)})
        connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
        async with aiohttp.ClientSession(connector=connector) as session:

            async def answered() -> bool:
                async with session.get(
                    f"{sandbox.caddy_url}/x",
                    headers={
                        "Host": "echo.example.test",
                        "X-Forwarded-For": "203.0.113.9",
                        "X-Real-IP": "203.0.113.9",
                    },
                ) as response:
                    return response.status == 200 and await response.text() == "echo"

            assert await wait_until(answered, 15)
    finally:
        await sites.apply({"echo": None})
        await runner.cleanup()
    headers = seen[-1]
    assert headers["X-Forwarded-For"] == "127.0.0.2"
    assert headers["X-Real-IP"] == "127.0.0.2"
    assert headers["X-Forwarded-Proto"] == "http"
    assert headers["X-Forwarded-Host"] == "echo.example.test"


# -- observation and drift -------------------------------------------------------------


async def test_observe_reports_hashes_import_line_and_a_running_caddy(
    sandbox: Sandbox, pocketbase_port: int
) -> None:
    sites = controller(sandbox)
    text = site("observed", pocketbase_port)
    await sites.apply({"observed": text})

    seen = await sites.observe(["observed", "never-written"])

    assert seen.snippets == {"observed": sha256_text(text), "never-written": None}
    assert seen.import_present and seen.caddy_running
    assert "observed" in (await sites.observe()).snippets
    await sites.apply({"observed": None})


async def test_hand_edited_snippet_is_detected_by_hash_and_repaired(
    sandbox: Sandbox, pocketbase_port: int
) -> None:
    sites = controller(sandbox)
    text = site("edited", pocketbase_port)
    await sites.apply({"edited": text})
    path = sites.snippet_path("edited")
    path.write_text(text.replace("360s", "5s"))

    drifted = await sites.observe(["edited"])
    assert drifted.snippets["edited"] not in (None, sha256_text(text))

    repaired = await sites.apply({"edited": text})

    outcome = repaired.sites["edited"]
    assert outcome.ok and outcome.changed
    assert outcome.hash_before == drifted.snippets["edited"]
    assert outcome.hash_after == sha256_text(text) == sites.snippet_hash("edited")
    await sites.apply({"edited": None})


# -- failures never reach the running Caddy --------------------------------------------


async def test_broken_wave_never_reaches_caddy_and_its_good_sites_still_apply(
    sandbox: Sandbox, pocketbase_port: int
) -> None:
    sites = controller(sandbox)
    await sites.apply({"keeper": site("keeper", pocketbase_port)})
    assert await wait_for_pocketbase(sandbox.caddy_url, host="keeper.example.test")
    before = await running_config(sandbox)
    loads = await caddy_loads(sandbox)
    reloads = sites.reload_count

    result = await sites.apply(
        {
            "fresh": site("fresh", pocketbase_port),
            "typo": "http://typo.example.test {\n\tnot_a_directive on\n}\n",
            # Hand-written: claims keeper's address, which Caddy cannot serve twice.
            "thief": "http://keeper.example.test {\n\trespond stolen\n}\n",
        }
    )

    assert result.sites["fresh"].ok and result.sites["fresh"].changed
    typo_error = result.errors["typo"]
    assert "typo.caddy:2" in typo_error and "not_a_directive" in typo_error
    assert "ambiguous site definition" in result.errors["thief"]
    assert result.reloaded and sites.reload_count == reloads + 1
    assert result.validations == 3  # the wave, without typo, without thief too
    assert await caddy_loads(sandbox) == loads + 1
    # The refused snippets are gone again (they did not exist before the wave).
    assert sites.snippet_hash("typo") is None and sites.snippet_hash("thief") is None
    after = await running_config(sandbox)
    assert served_hosts(after) == served_hosts(before) | {"fresh.example.test"}
    assert await answers(sandbox, "keeper.example.test")
    assert await wait_for_pocketbase(sandbox.caddy_url, host="fresh.example.test")
    assert not await answers(sandbox, "typo.example.test")
    await sites.apply({"keeper": None, "fresh": None})


async def test_refused_change_restores_the_old_snippet_and_leaves_caddy_untouched(
    sandbox: Sandbox, pocketbase_port: int
) -> None:
    sites = controller(sandbox)
    good = site("stable", pocketbase_port)
    await sites.apply({"stable": good})
    before = await running_config(sandbox)
    loads = await caddy_loads(sandbox)
    reloads = sites.reload_count

    result = await sites.apply({"stable": good.replace("reverse_proxy", "reverse_proxx")})

    assert "stable.caddy" in result.errors["stable"]
    assert result.validations == 1 and not result.reloaded
    assert sites.reload_count == reloads
    assert sites.snippet_path("stable").read_text() == good
    assert result.sites["stable"].hash_after == sha256_text(good)
    assert await running_config(sandbox) == before
    assert await caddy_loads(sandbox) == loads
    assert await answers(sandbox, "stable.example.test")
    await sites.apply({"stable": None})


async def test_unclosed_block_is_blamed_on_its_own_snippet_not_the_next_file(
    sandbox: Sandbox, pocketbase_port: int
) -> None:
    sites = controller(sandbox)
    result = await sites.apply(
        {
            "aaa-open": "http://aaa-open.example.test {\n\trespond hi\n",
            "bbb-fine": site("bbb-fine", pocketbase_port),
        }
    )

    assert "never closed" in result.errors["aaa-open"]
    assert result.sites["bbb-fine"].ok and result.validations == 1
    assert sites.snippet_hash("aaa-open") is None
    await sites.apply({"bbb-fine": None})


async def test_offender_caddy_does_not_name_is_found_by_halving_the_wave(
    sandbox: Sandbox, pocketbase_port: int
) -> None:
    sites = controller(sandbox)
    names = [f"half-{index}" for index in range(6)]
    wave: dict[str, str | None] = {name: site(name, pocketbase_port) for name in names}
    # Fails while Caddy provisions the config, with no file or line in the message.
    wave["half-4"] = (
        "http://half-4.example.test {\n\tlog {\n\t\toutput file /proc/none/x.log\n\t}\n}\n"
    )
    reloads = sites.reload_count

    result = await sites.apply(wave)

    assert "opening log writer" in result.errors["half-4"]
    assert "half-4.caddy" not in result.errors["half-4"]
    assert set(result.errors) == {"half-4"}
    # Caddy has no dry run of provisioning, so the halves are loaded: each accepted one is
    # live at once (only accepted changes ever run), 0-2, then 3, then 5.
    assert result.reloaded and sites.reload_count == reloads + 3
    # All six loaded (refused); without the wave, adapted (the old config is fine); 0-2
    # load; 3-5 fail; 3 loads; 4-5 fail; 4 fails alone; 5 loads.
    assert result.validations == 8
    assert sites.snippet_hash("half-4") is None
    for name in names:
        if name != "half-4":
            assert await answers(sandbox, f"{name}.example.test")
    await sites.apply(dict.fromkeys(names))


async def test_broken_file_outside_the_wave_blocks_it_with_a_clear_reason(
    sandbox: Sandbox, pocketbase_port: int
) -> None:
    sites = controller(sandbox)
    hand_made = sandbox.layout.caddy_sites_dir / "hand-made.caddy"
    hand_made.write_text("http://hand.example.test {\n\tnope\n}\n")
    before = await running_config(sandbox)
    try:
        result = await sites.apply({name: site(name, pocketbase_port) for name in ("p", "q", "r")})
    finally:
        hand_made.unlink()

    assert set(result.errors) == {"p", "q", "r"}
    for error in result.errors.values():
        assert error.startswith("the Caddy configuration is invalid even without this change")
        assert "hand-made.caddy:2" in error
    assert result.validations == 2 and not result.reloaded
    assert all(sites.snippet_hash(name) is None for name in ("p", "q", "r"))
    assert await running_config(sandbox) == before


async def test_reload_caddy_refuses_puts_the_files_back(
    sandbox: Sandbox, pocketbase_port: int
) -> None:
    sites = controller(sandbox)
    before = await running_config(sandbox)
    # Valid to `caddy validate`, which binds nothing; the reload cannot listen there.
    taken = f"http://taken.example.test:{pocketbase_port} {{\n\trespond hi\n}}\n"

    result = await sites.apply({"taken": taken})

    assert result.validations == 1 and not result.reloaded
    assert "reload" in result.errors["taken"]
    assert sites.snippet_hash("taken") is None
    assert await running_config(sandbox) == before


# -- waves -----------------------------------------------------------------------------


async def test_wave_of_fifty_sites_is_one_validation_and_one_reload(
    sandbox: Sandbox, pocketbase_port: int
) -> None:
    sites = controller(sandbox)
    names = [f"bulk-{index:02d}" for index in range(50)]
    loads = await caddy_loads(sandbox)
    validations, reloads = sites.validation_count, sites.reload_count

    started = time.monotonic()
    result = await sites.apply({name: site(name, pocketbase_port) for name in names})
    elapsed = time.monotonic() - started

    assert result.ok and len(result.sites) == 50
    assert result.validations == 1 and result.reloaded
    assert sites.validation_count == validations + 1
    assert sites.reload_count == reloads + 1
    assert await caddy_loads(sandbox) == loads + 1
    healthy = await asyncio.gather(*(answers(sandbox, f"{name}.example.test") for name in names))
    assert all(healthy)
    print(
        f"\n50 sites: apply {elapsed:.3f}s = validate {result.validate_seconds:.3f}s"
        f" + reload {result.reload_seconds:.3f}s"
    )

    removed = await sites.apply(dict.fromkeys(names))
    assert removed.ok and removed.validations == 1 and removed.reloaded
    assert sites.reload_count == reloads + 2
    assert not any(name in sites.list_sites() for name in names)
    assert not await answers(sandbox, "bulk-07.example.test")


# -- ownership and paths ---------------------------------------------------------------


async def test_removal_touches_only_snippets_in_the_sites_folder(
    sandbox: Sandbox, pocketbase_port: int
) -> None:
    sites = controller(sandbox)
    folder = sandbox.layout.caddy_sites_dir
    await sites.apply({"doomed": site("doomed", pocketbase_port)})
    bystanders = {
        folder / "README.txt": "not a snippet\n",
        folder / ".hidden.caddy": "garbage {{{\n",
        folder / ".doomed.caddy.x1y2.tmp": "garbage {{{\n",
        sandbox.layout.caddy_dir / "doomed.caddy": "outside the folder\n",
    }
    for path, text in bystanders.items():
        path.write_text(text)
    caddyfile = sandbox.layout.caddyfile.read_bytes()

    result = await sites.apply(
        {"doomed": None, "../doomed": None, "../Caddyfile": None, "UPPER": None, "x/../y": None}
    )

    assert result.sites["doomed"].ok and result.sites["doomed"].changed
    assert sites.snippet_hash("doomed") is None
    for refused in ("../doomed", "../Caddyfile", "UPPER", "x/../y"):
        assert result.errors[refused].startswith("refused")
    for path, text in bystanders.items():
        assert path.read_text() == text
        path.unlink()
    assert sandbox.layout.caddyfile.read_bytes() == caddyfile


async def test_snippet_that_is_a_link_out_of_the_folder_is_refused(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sites = controller(sandbox)
    target = tmp_path / "elsewhere.caddy"
    target.write_text("kept\n")
    link = sandbox.layout.caddy_sites_dir / "linked.caddy"
    link.symlink_to(target)
    try:
        result = await sites.apply({"linked": None})
        assert result.errors["linked"].startswith("refused")
        assert target.read_text() == "kept\n" and link.is_symlink()
    finally:
        link.unlink()


# -- the main Caddyfile and admin-API reloads ------------------------------------------


def caddyfile_without_import(sandbox: Sandbox) -> bytes:
    lines = sandbox.layout.caddyfile.read_text().splitlines(keepends=True)
    kept = "".join(line for line in lines if not line.startswith("import "))
    return (
        kept + "# an operator's own site, which must survive untouched\n"
        'http://handmade.example.test {\n\trespond "hand made"\n}'
    ).encode()


async def test_missing_import_line_is_added_once_and_the_rest_of_the_file_kept(
    sandbox: Sandbox, pocketbase_port: int
) -> None:
    assert sandbox.bus is not None
    own = sandbox.layout.root / "own-caddy"
    own.mkdir()
    main = own / "Caddyfile"
    original = caddyfile_without_import(sandbox)
    main.write_bytes(original)
    main.chmod(0o640)
    sites = controller(
        sandbox,
        caddy_config=main,
        caddy_sites_dir=own / "sites",
        caddy_reload="admin",
    )
    assert not sites.import_present()
    try:
        result = await sites.apply({"imported": site("imported", pocketbase_port)})

        assert result.ok and result.import_added and result.reloaded
        assert main.read_bytes() == original + f"\nimport {own}/sites/*.caddy\n".encode()
        assert main.stat().st_mode & 0o777 == 0o640
        assert sites.import_present()
        assert await wait_for_pocketbase(sandbox.caddy_url, host="imported.example.test")
        status, body = await http_get(sandbox.caddy_url, "handmade.example.test")
        assert (status, body) == (200, "hand made")

        again = await sites.apply({"imported": site("imported", pocketbase_port)})
        assert not again.import_added and again.validations == 0
        assert main.read_bytes().count(b"import ") == 1
    finally:
        # Give the sandbox's Caddy its own Caddyfile back.
        await sandbox.bus.reload_unit("caddy.service")
    assert not await answers(sandbox, "imported.example.test")


async def test_import_line_is_not_kept_when_it_would_break_caddy(sandbox: Sandbox) -> None:
    own = sandbox.layout.root / "own-broken"
    (own / "sites").mkdir(parents=True)
    (own / "sites" / "hand-made.caddy").write_text("http://x.example.test {\n\tnope\n}\n")
    main = own / "Caddyfile"
    original = caddyfile_without_import(sandbox)
    main.write_bytes(original)
    before = await running_config(sandbox)
    sites = controller(
        sandbox, caddy_config=main, caddy_sites_dir=own / "sites", caddy_reload="admin"
    )

    result = await sites.apply({})

    assert not result.import_added and not result.reloaded and result.validations == 1
    assert result.note is not None and "hand-made.caddy" in result.note
    assert main.read_bytes() == original
    assert await running_config(sandbox) == before


async def test_admin_api_reload_mode_applies_a_wave(sandbox: Sandbox, pocketbase_port: int) -> None:
    sites = controller(sandbox, caddy_reload="admin")
    loads = await caddy_loads(sandbox)
    assert (await sites.observe([])).caddy_running

    result = await sites.apply({"via-admin": site("via-admin", pocketbase_port)})

    assert result.ok and result.reloaded and result.validations == 1
    assert "via-admin.example.test" in served_hosts(await running_config(sandbox))
    assert await wait_for_pocketbase(sandbox.caddy_url, host="via-admin.example.test")
    assert await caddy_loads(sandbox) == loads + 1

    await sites.apply({"via-admin": None})
    assert "via-admin.example.test" not in served_hosts(await running_config(sandbox))


async def test_only_an_answering_admin_api_means_caddy_is_running(
    sandbox: Sandbox, pocketbase_port: int
) -> None:
    # With a site loaded the HTTP port answers 200 to anything; only the admin API
    # answers with JSON.
    await controller(sandbox).apply({"decoy": site("decoy", pocketbase_port)})
    try:
        assert (await http_get(f"{sandbox.caddy_url}/config/"))[0] == 200
        for url in (f"http://127.0.0.1:{free_port()}", sandbox.caddy_url):
            sites = controller(sandbox, caddy_reload="admin", caddy_admin_url=url)
            assert not (await sites.observe([])).caddy_running
        admin = controller(sandbox, caddy_reload="admin")
        assert (await admin.observe([])).caddy_running
    finally:
        await controller(sandbox).apply({"decoy": None})


async def test_stopped_caddy_unit_is_observed_and_not_reloaded(
    sandbox: Sandbox, pocketbase_port: int
) -> None:
    assert sandbox.bus is not None
    sites = controller(sandbox)
    await sandbox.bus.stop_unit("caddy.service")
    try:
        assert not (await sites.observe([])).caddy_running
        result = await sites.apply({"offline": site("offline", pocketbase_port)})
        assert result.ok and result.validations == 1 and not result.reloaded
        assert result.note is not None and "not running" in result.note
    finally:
        await sandbox.bus.start_unit("caddy.service")
    # On start Caddy reads what was validated while it was down.
    assert await wait_for_pocketbase(sandbox.caddy_url, host="offline.example.test")
    await sites.apply({"offline": None})


# -- hostile but valid specs through Caddy's own parser --------------------------------


@pytest.mark.parametrize(
    ("domain", "tls"),
    [
        ("ex\u0430mple.com", True),  # Cyrillic a
        ("import.localhost", True),  # "import" alone is refused: Caddy would read a directive
        ("import.localhost", False),
        ("a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 61, True),
        ("\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com", False),
    ],
)
async def test_caddy_reads_any_accepted_domain_as_exactly_one_site(
    sandbox: Sandbox, tmp_path: Path, domain: str, tls: bool
) -> None:
    service = make_spec("edge", 8090, domain)
    caddyfile = tmp_path / "Caddyfile"
    text = render_site(service, SiteSettings(tls="auto" if tls else "off"))
    caddyfile.write_text("{\n\tadmin off\n}\n" + text)
    binary = sandbox.agent_config().caddy_binary

    adapted = subprocess.run(
        [binary, "adapt", "--config", str(caddyfile), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        check=True,
    )

    config = json.loads(adapted.stdout)
    routes = [
        route for server in config["apps"]["http"]["servers"].values() for route in server["routes"]
    ]
    assert len(routes) == 1
    assert routes[0]["match"] == [{"host": [service.domain]}]
    assert site_address(service.domain, tls=tls).endswith(service.domain)
