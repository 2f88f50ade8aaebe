"""A hostile instance on the test bed: every route out of its box is tried, and must fail.

Two services run under one agent: ``victim``, with a secret variable and a superuser, and
``mallory``, whose owner's JavaScript (``pb_hooks/attack.pb.js``) starts an attack script
at every start of PocketBase, as the instance, in its box. The script tries everything an
instance should not be able to do (read ``victim``'s data, secrets and processes, signal
it, write outside its folder, reach Caddy's admin API or any address beyond loopback,
gain privileges, log as ``victim``) and writes what it got to ``pb_data/findings.json``.
Each test then reads one part of the findings: the attack was made (a positive control
shows the script could do what its own instance may) and got nothing.

The other routes are tried from outside the box: the agent's own superuser bootstrap with
the hostile hooks in place, a root observer watching every command line while a password
is set, and a hostile process racing the agent's backup and restore with symlinks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from pockestrator.agent.daemon import Agent
from pockestrator.agent.sandbox import Sandbox, free_port
from pockestrator.controllers.servicedirs import ServiceDirs, ServiceFolders, UnsafePath
from pockestrator.controllers.systemd import UnitSettings
from pockestrator.controllers.systemd.transient import run_transient
from pockestrator.journal import syslog_identifier
from pockestrator.specs.model import ServiceSpec
from tests.testbed import boxes
from tests.testbed.api_client import Api, create, wait_running
from tests.testbed.waiting import wait_until

PYTHON = Path("/usr/bin/python3")
VICTIM_SECRET = "victim-secret-" + secrets.token_hex(8)

# Run by the instance's PocketBase at every start: the attack script, as the instance.
ATTACK_HOOK = """
try {
  $os.exec("%(python)s", __hooks + "/attack.py").start()
} catch (err) {
  console.log("attack script failed: " + err)
}
"""

# What a hostile owner's code tries; every outcome goes to pb_data/findings.json.
ATTACK_SCRIPT = r"""
import errno, json, os, socket, sys

here = os.path.dirname(os.path.abspath(__file__))
data = os.path.join(here, "..", "pb_data")
targets = json.load(open(os.path.join(here, "targets.json")))


def outcome(action):
    try:
        result = action()
    except OSError as exc:
        return "error:" + errno.errorcode.get(exc.errno, str(exc.errno))
    return "ok" if result is None else "ok:" + str(result)[:4096]


def read(path):
    with open(path, "rb") as file:
        return file.read(65536).decode("utf-8", "replace")


def write(path):
    with open(path, "w") as file:
        file.write("written by mallory")


def connect(family, address):
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(3)
        sock.connect(address)


def journal(identifier):
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(
            f"SYSLOG_IDENTIFIER={identifier}\nMESSAGE=spoofed-by-mallory\n".encode(),
            "/run/systemd/journal/socket",
        )


visible = sorted(int(entry) for entry in os.listdir("/proc") if entry.isdigit())
loot = {}
for pid in visible:
    for part in ("cmdline", "environ"):
        loot[f"{pid}/{part}"] = outcome(lambda: read(f"/proc/{pid}/{part}"))
findings = {
    "uid": os.getuid(),
    "cgroup": next(
        line
        for line in read("/proc/self/cgroup").splitlines()
        if line.startswith("0::") or ":name=systemd:" in line
    ),
    "status": read("/proc/self/status"),
    "read": {label: outcome(lambda p=path: read(p)) for label, path in targets["read"].items()},
    "write": {label: outcome(lambda p=path: write(p)) for label, path in targets["write"].items()},
    "visible_pids": visible,
    "loot": loot,
    "signal_victim": outcome(lambda: os.kill(targets["victim_pid"], 0)),
    "caddy_admin": outcome(lambda: connect(socket.AF_UNIX, targets["caddy_admin_socket"])),
    "egress": outcome(lambda: connect(socket.AF_INET, tuple(targets["outside"]))),
    "loopback": outcome(lambda: connect(socket.AF_INET, ("127.0.0.1", targets["loopback"]))),
    "setuid_root": outcome(lambda: os.setuid(0)),
    "journal_spoof": outcome(lambda: journal(targets["victim_identifier"])),
    "manager_bus": outcome(
        lambda: connect(
            socket.AF_UNIX,
            os.environ.get("DBUS_SESSION_BUS_ADDRESS", "unix:path=/none").split("path=", 1)[1],
        )
    ),
}
with open(os.path.join(data, "hook-loads.txt"), "a") as loads:
    loads.write(findings["cgroup"] + "\n")
partial = os.path.join(data, ".findings.json.partial")
with open(partial, "w") as file:
    json.dump(findings, file)
os.rename(partial, os.path.join(data, "findings.json"))
"""


# Swaps pb_data/sub, and every restore folder root makes, for symlinks to a root-only place.
SWAPPER = """
while :; do
  mv pb_data/sub pb_data/sub.real 2>/dev/null
  ln -s PRECIOUS pb_data/sub 2>/dev/null
  rm -f pb_data/sub
  mv pb_data/sub.real pb_data/sub 2>/dev/null
  for d in .pb_data.restore-*; do
    [ -d "$d" ] && mv "$d" "stolen-$d" && ln -s PRECIOUS "$d"
  done 2>/dev/null
done
"""


def non_loopback_address() -> str | None:
    """An address of this host beyond loopback (where an instance must not connect)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("198.51.100.1", 9))  # no packet is sent for a UDP connect
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address


@contextlib.contextmanager
def listener(address: str) -> Iterator[int]:
    """A TCP port on ``address`` that accepts connections (the egress target)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind((address, 0))
        server.listen(8)
        yield int(server.getsockname()[1])


@pytest.fixture(scope="module")
def folders(agent: Agent) -> ServiceFolders:
    return ServiceFolders(agent.config)


@pytest.fixture(scope="module")
async def victim(api: Api, newer: str) -> dict[str, Any]:
    created = await create(
        api,
        newer,
        "victim",
        env={"PLAIN_SETTING": "visible"},
        secret_env={"VICTIM_TOKEN": VICTIM_SECRET},
        superuser_email="admin@victim.example",
    )
    status = await wait_running(api, "victim")
    return {"password": created["superuser_password"], "pid": status["pid"]}


@pytest.fixture(scope="module")
async def findings(
    agent: Agent,
    api: Api,
    sandbox: Sandbox,
    folders: ServiceFolders,
    victim: dict[str, Any],
    newer: str,
) -> AsyncIterator[dict[str, Any]]:
    """Start mallory with the attack in its hooks; what the attack script found."""
    if not PYTHON.exists():
        pytest.fail(f"the attack script needs {PYTHON} (Debian's python3)")
    outside = non_loopback_address()
    if outside is None:
        pytest.fail("the test bed has no address beyond loopback to test egress against")
    config = agent.config
    port = free_port()
    await create(api, newer, "mallory", port=port, extra_dirs=["pb_hooks"])
    await wait_running(api, "mallory")
    hooks = folders.private_path("mallory") / "pb_hooks"
    owner = os.stat(hooks).st_uid
    with listener(outside) as outside_port, listener("127.0.0.1") as loopback_port:
        targets = {
            "read": {
                "victim_data": f"{config.base_dir}/victim/pb_data/data.db",
                "victim_private_data": f"{folders.private_path('victim')}/pb_data/data.db",
                "victim_environment": str(config.environment_path / "victim.env"),
                "agent_database": str(config.database),
                "shadow": "/etc/shadow",
                "own_data": "pb_data/data.db",
            },
            "write": {
                "base_dir": f"{config.base_dir}/planted",
                "unit_dir": f"{config.systemd_dir}/planted.service",
                "victim_folder": f"{config.base_dir}/victim/pb_data/planted",
                "etc": "/etc/planted",
                "own_folder": "pb_data/planted",
            },
            "victim_pid": victim["pid"],
            "caddy_admin_socket": str(sandbox.caddy_admin_socket),
            "outside": [outside, outside_port],
            "loopback": loopback_port,
            "victim_identifier": syslog_identifier("victim"),
        }
        for name, text in (
            ("targets.json", json.dumps(targets)),
            ("attack.py", ATTACK_SCRIPT),
            ("attack.pb.js", ATTACK_HOOK % {"python": PYTHON}),
        ):
            (hooks / name).write_text(text)
            os.chown(hooks / name, owner, owner)
        result = folders.private_path("mallory") / "pb_data" / "findings.json"
        reply = await api.call("POST", "/services/mallory/control", {"action": "restart"})
        assert reply.status == 200, reply.body
        assert await wait_until(lambda: _exists(result), 30, 0.1), "the attack never reported"
    yield json.loads(result.read_text())


async def _exists(path: Path) -> bool:
    return path.exists()


# What the script could do in its own instance: the findings are real ------------------


async def test_the_attack_ran_as_the_instance_in_its_own_unit(
    findings: dict[str, Any], folders: ServiceFolders
) -> None:
    assert findings["uid"] == os.stat(folders.private_path("mallory")).st_uid != 0
    assert findings["cgroup"].endswith("/mallory-pocketbase.service")
    assert findings["read"]["own_data"].startswith("ok:")  # it can read its own data
    assert findings["write"]["own_folder"] == "ok"
    assert findings["loopback"] == "ok"  # and reach loopback


# Route 3: other instances -------------------------------------------------------------


async def test_an_instance_cannot_read_or_write_another_instances_data(
    findings: dict[str, Any],
) -> None:
    for label in ("victim_data", "victim_private_data"):
        assert findings["read"][label].startswith("error:"), label
    assert findings["write"]["victim_folder"].startswith("error:")


async def test_an_instance_sees_and_signals_no_process_but_its_own(
    findings: dict[str, Any], victim: dict[str, Any]
) -> None:
    assert victim["pid"] not in findings["visible_pids"]
    assert findings["signal_victim"] in ("error:ESRCH", "error:EPERM")
    own = {int(pid) for pid in findings["visible_pids"]}
    for pid in own:
        status = Path(f"/proc/{pid}/status")
        if status.exists():  # still running: it is one of mallory's own processes
            uid_line = next(line for line in status.read_text().splitlines() if "Uid:" in line)
            assert int(uid_line.split()[1]) == findings["uid"], pid


# Routes 4 and 5: secrets ----------------------------------------------------------------

# What systemd itself puts in a unit's environment; anything else came from somewhere else.
SYSTEMD_VARIABLES = {
    "INVOCATION_ID",
    "JOURNAL_STREAM",
    "LANG",
    "LOGNAME",
    "MANAGERPID",
    "PATH",
    "PWD",
    "QT_ACCESSIBILITY",
    "STATE_DIRECTORY",
    "SYSTEMD_EXEC_PID",
    "USER",
    "HOME",
    "SHELL",
    "XDG_CONFIG_HOME",
    "XDG_RUNTIME_DIR",
    "XDG_STATE_HOME",
    "DBUS_SESSION_BUS_ADDRESS",
}


async def test_no_secret_of_another_instance_or_the_agent_reaches_an_instance(
    findings: dict[str, Any], victim: dict[str, Any], agent: Agent
) -> None:
    for label in ("victim_environment", "agent_database", "shadow"):
        assert findings["read"][label].startswith("error:"), label
    everything = json.dumps(findings)
    assert VICTIM_SECRET not in everything
    assert victim["password"] not in everything


async def test_an_instance_inherits_no_variable_of_the_agents_environment(
    findings: dict[str, Any],
) -> None:
    environments = [
        value.removeprefix("ok:").split("\0")
        for key, value in findings["loot"].items()
        if key.endswith("/environ") and value.startswith("ok:")
    ]
    assert environments  # it read its own processes' environments
    for environment in environments:
        names = {entry.split("=", 1)[0] for entry in environment if "=" in entry}
        assert names <= SYSTEMD_VARIABLES, names - SYSTEMD_VARIABLES


async def test_an_instance_cannot_reach_the_manager_that_runs_it(
    findings: dict[str, Any],
) -> None:
    assert findings["manager_bus"] in ("error:EACCES", "error:ENOENT", "error:EAFNOSUPPORT")


async def test_secrets_are_in_no_unit_text_and_in_a_root_only_file(
    agent: Agent, victim: dict[str, Any]
) -> None:
    unit = (agent.config.systemd_dir / "victim-pocketbase.service").read_text()
    assert VICTIM_SECRET not in unit and "VICTIM_TOKEN" not in unit
    environment = agent.config.environment_path / "victim.env"
    info = os.stat(environment)
    assert (info.st_uid, info.st_mode & 0o777) == (0, 0o600)
    assert VICTIM_SECRET in environment.read_text()
    assert os.stat(environment.parent).st_mode & 0o077 == 0
    process = Path(f"/proc/{victim['pid']}/environ").read_bytes().split(b"\0")
    assert f"VICTIM_TOKEN={VICTIM_SECRET}".encode() in process  # it did reach the instance


async def test_a_superuser_password_never_appears_on_any_command_line(
    api: Api, victim: dict[str, Any]
) -> None:
    seen: set[bytes] = set()
    stop = threading.Event()

    def watch() -> None:  # root, reading every process's command line as fast as it can
        while not stop.is_set():
            for entry in os.scandir("/proc"):
                if entry.name.isdigit():
                    with contextlib.suppress(OSError):
                        seen.add(Path(entry.path, "cmdline").read_bytes())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        reply = await api.call(
            "PATCH", "/services/victim", {"superuser_email": "second@victim.example"}
        )
        assert reply.status == 200, reply.body
        password = reply.body["superuser_password"]
        assert await wait_until(lambda: _superusers(api, "victim"), 30, 0.1)
    finally:
        stop.set()
        watcher.join()
    assert password and len(seen) > 10
    assert not any(password.encode() in cmdline for cmdline in seen)
    assert not any(victim["password"].encode() in cmdline for cmdline in seen)


async def _superusers(api: Api, name: str) -> bool:
    reply = await api.call("GET", f"/services/{name}/events", params={"limit": "50"})
    return any(
        event["kind"] == "superuser_created"
        and "second@victim.example" in json.dumps(event.get("details", {}))
        for event in reply.body.get("events", [])
    )


# The host: writes, Caddy, the network, privileges ----------------------------------------


async def test_an_instance_cannot_write_outside_its_folder(findings: dict[str, Any]) -> None:
    for label in ("base_dir", "unit_dir", "etc"):
        assert findings["write"][label].startswith("error:"), label


async def test_an_instance_cannot_reach_caddys_admin_api(
    findings: dict[str, Any], sandbox: Sandbox
) -> None:
    assert sandbox.caddy_admin_socket.exists()  # it is there, only not for instances
    assert findings["caddy_admin"] in ("error:EACCES", "error:ENOENT", "error:EAFNOSUPPORT")


async def test_an_instance_cannot_connect_beyond_loopback(findings: dict[str, Any]) -> None:
    assert findings["egress"].startswith("error:")


@pytest.mark.parametrize(
    ("egress", "reaches"),
    [((), False), (("OUTSIDE",), True), (("any",), True), (("198.51.100.0/24",), False)],
)
async def test_egress_opens_exactly_the_addresses_the_spec_names(
    agent: Agent, sandbox: Sandbox, newer: str, egress: tuple[str, ...], reaches: bool
) -> None:
    outside = non_loopback_address()
    assert outside is not None and sandbox.bus is not None
    spec = ServiceSpec.model_validate(
        {
            "project_name": "egress",
            "port": free_port(),
            "pocketbase_version": newer,
            "domain": "egress.localhost",
            "egress": [outside if entry == "OUTSIDE" else entry for entry in egress],
        }
    )
    with listener(outside) as port:
        run = await boxes.run_in_box(
            sandbox.bus,
            UnitSettings.from_config(agent.config),
            spec,
            f"{PYTHON} -c 'import socket; socket.create_connection((\"{outside}\", {port}), 1)'",
        )
    assert run.ok is reaches, run.output


async def test_an_instance_has_no_capability_and_cannot_become_root(
    findings: dict[str, Any],
) -> None:
    status = dict(line.split(":", 1) for line in findings["status"].splitlines() if ":" in line)
    for capability in ("CapEff", "CapPrm", "CapBnd", "CapAmb"):
        assert int(status[capability].strip(), 16) == 0, capability
    assert status["NoNewPrivs"].strip() == "1"
    assert findings["setuid_root"] == "error:EPERM"


# Route 9: logs -----------------------------------------------------------------------------


async def test_lines_logged_under_another_services_name_are_not_its_logs(
    findings: dict[str, Any], api: Api, agent: Agent, sandbox: Sandbox
) -> None:
    identifier = syslog_identifier("victim")
    # A local process of another unit logging as the victim (any user may run one).
    spoofer = f"spoof-{secrets.token_hex(3)}.service"
    assert sandbox.bus is not None
    run = await run_transient(
        sandbox.bus,
        spoofer,
        ["/usr/bin/systemd-cat", "-t", identifier, "/bin/echo", "spoofed-by-a-local-user"],
        [],
        timeout=20,
    )
    assert run.ok, run.output
    journal_dir = str(agent.config.journal_dir)

    async def landed() -> bool:
        found = subprocess.run(
            ["journalctl", "-D", journal_dir, "-o", "cat", f"SYSLOG_IDENTIFIER={identifier}"],
            capture_output=True,
            text=True,
        ).stdout
        return "spoofed-by-a-local-user" in found

    assert await wait_until(landed, 10, 0.1), "the spoofed line never reached the journal"
    reply = await api.call("GET", "/services/victim/logs", params={"lines": "1000"})
    assert reply.status == 200 and reply.body["logs"]  # the victim's own lines are there
    messages = [entry["message"] for entry in reply.body["logs"]]
    assert not any("spoofed" in message for message in messages)
    assert findings["journal_spoof"] is not None  # mallory tried from inside too


# Route 1: the agent's own runs of the instance's binary ----------------------------------


async def test_the_superuser_bootstrap_never_runs_the_instances_hooks(
    findings: dict[str, Any], api: Api, folders: ServiceFolders
) -> None:
    loads = folders.private_path("mallory") / "pb_data" / "hook-loads.txt"
    before = loads.read_text().splitlines()

    reply = await api.call("PATCH", "/services/mallory", {"superuser_email": "m@mallory.example"})

    assert reply.status == 200, reply.body
    assert reply.body["superuser_password"]
    assert await wait_until(lambda: _created(api, "mallory"), 30, 0.1)
    after = loads.read_text().splitlines()
    assert after[: len(before)] == before
    assert all(line.endswith("/mallory-pocketbase.service") for line in after), after


async def _created(api: Api, name: str) -> bool:
    reply = await api.call("GET", f"/services/{name}/events", params={"limit": "50"})
    return any(event["kind"] == "superuser_created" for event in reply.body.get("events", []))


# Route 2: racing root's copies with symlinks ------------------------------------------------


@pytest.fixture
def precious(sandbox: Sandbox) -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="precious-", dir=sandbox.layout.root))
    (folder / "secret.txt").write_text("root's own")
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


async def test_symlinks_swapped_in_during_backup_and_restore_are_never_followed(
    agent: Agent, sandbox: Sandbox, folders: ServiceFolders, precious: Path, newer: str
) -> None:
    assert sandbox.bus is not None
    dirs = ServiceDirs(agent.config, sandbox.bus)
    settings = UnitSettings.from_config(agent.config)
    spec = ServiceSpec.model_validate(
        {
            "project_name": "racer",
            "port": free_port(),
            "pocketbase_version": newer,
            "domain": "racer.localhost",
        }
    )
    made = await boxes.run_in_box(
        sandbox.bus,
        settings,
        spec,
        "mkdir -p pb_data/sub && for i in 1 2 3 4 5 6 7 8; do echo $i > pb_data/sub/f$i; done",
    )
    assert made.ok, made.output
    backup = await dirs.backup_data("racer")
    before = sorted(p.name for p in precious.iterdir())
    # Swap pb_data/sub and every restore folder for symlinks to a root-only place, forever.
    attacker = boxes.box_unit(spec, "attacker")
    swapping = asyncio.create_task(
        boxes.run_in_box(
            sandbox.bus,
            settings,
            spec,
            SWAPPER.replace("PRECIOUS", str(precious)),
            unit=attacker,
            timeout=120,
        )
    )
    refused = 0
    try:
        for _ in range(40):
            for attempt in (dirs.backup_data("racer"), dirs.restore_data("racer", backup)):
                try:
                    await attempt
                except (UnsafePath, FileNotFoundError, OSError):
                    refused += 1
    finally:
        await sandbox.bus.stop_unit(attacker)
        await swapping
    assert sorted(p.name for p in precious.iterdir()) == before
    assert (precious / "secret.txt").read_text() == "root's own"
    for copy in (agent.config.base_dir / ".backups" / "racer").glob("pb_data-*"):
        for path in copy.rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert "root's own" not in path.read_text(errors="replace"), path
    print(f"{refused} of 80 copies were refused as the instance swapped a folder under them")
