"""When health probes happen: the prober's interval, jitter and spread, and the growing
pauses of ``wait_healthy``, on fake loop time against real HTTP servers on 127.0.0.1.

Both take their time from the event loop, so the tests run on a loop of their own with
looptime's fake clock: an interval of 10 s passes at once, and every probe is asserted to
reach the server at its exact loop time (to the fake clock's resolution). The
servers are real sockets in the same loop: one answers 200, one 503, one accepts the
connection and never answers (a hung instance), and one port refuses connections.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from looptime import LoopTimeProxy

from pockestrator.agent.health import HealthProber, probe_delays, wait_healthy
from pockestrator.specs.model import parse_spec
from pockestrator.specs.store import Store

pytestmark = [pytest.mark.asyncio(loop_scope="function"), pytest.mark.looptime]

# The fake clock counts whole microseconds and rounds every sleep to one: a time reached
# through a dozen sleeps is exact to within that many microseconds.
RESOLUTION = 1e-5


class HealthServers:
    """Real HTTP servers, one port each, answering ``/api/health`` with a chosen status
    and recording the loop time at which each request arrived."""

    def __init__(self) -> None:
        self.answers: dict[int, list[int]] = {}  # port -> statuses to answer, last repeats
        self.arrivals: list[tuple[int, float]] = []
        self._runner: web.AppRunner | None = None
        self._sockets: list[socket.socket] = []

    async def _health(self, request: web.Request) -> web.Response:
        assert request.transport is not None
        port = int(request.transport.get_extra_info("sockname")[1])
        self.arrivals.append((port, asyncio.get_running_loop().time()))
        statuses = self.answers[port]
        status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
        return web.json_response({"code": status}, status=status)

    def arrivals_at(self, port: int) -> list[float]:
        return [at for arrived_on, at in self.arrivals if arrived_on == port]

    def _bound_socket(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._sockets.append(sock)
        return sock

    async def answering(self, *statuses: int) -> int:
        """A port whose server answers ``statuses`` in turn (the last one from then on)."""
        assert self._runner is not None
        sock = self._bound_socket()
        port = int(sock.getsockname()[1])
        self.answers[port] = list(statuses)
        await web.SockSite(self._runner, sock).start()
        return port

    def silent(self) -> int:
        """A port that accepts connections (the kernel's backlog) and never answers."""
        sock = self._bound_socket()
        sock.listen(16)
        return int(sock.getsockname()[1])

    def refusing(self) -> int:
        """A port that is bound but not listening: connections are refused."""
        return int(self._bound_socket().getsockname()[1])

    @asynccontextmanager
    async def running(self) -> AsyncIterator[HealthServers]:
        app = web.Application()
        app.router.add_get("/api/health", self._health)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        try:
            yield self
        finally:
            await self._runner.cleanup()
            for sock in self._sockets:
                sock.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(tmp_path / "state.db")
    yield opened
    opened.close()


def add_running_service(store: Store, name: str, port: int) -> None:
    spec = parse_spec({"project_name": name, "port": port, "pocketbase_version": "0.29.0"}, "x.y")
    store.create_service(spec)
    store.update_status(name, state="active")


def exactly(values: Iterable[float]) -> object:
    return pytest.approx(list(values), abs=RESOLUTION)


# -- the prober ----------------------------------------------------------------------------


async def test_the_prober_probes_every_interval_with_jitter_and_restarts_after_failures(
    looptime: LoopTimeProxy, store: Store
) -> None:
    async with HealthServers().running() as servers:
        healthy, erroring = await servers.answering(200), await servers.answering(503)
        hung = servers.silent()
        for name, port in (("a-ok", healthy), ("b-503", erroring), ("c-hung", hung)):
            add_running_service(store, name, port)
        enqueued: list[tuple[str, float]] = []
        prober = HealthProber(
            store,
            enqueue=lambda name: enqueued.append((name, float(looptime))),
            interval=10.0,
            timeout=1.0,
            failures_before_restart=2,
        )
        # The jitter the prober will draw, round by round (the same generator, replayed).
        replay = random.Random()
        replay.setstate(random.getstate())
        round_starts = [0.0]
        for _ in range(3):
            round_starts.append(round_starts[-1] + 10.0 * (1 + replay.uniform(-0.1, 0.1)))

        probing = asyncio.create_task(prober.run())
        await asyncio.sleep(round_starts[3] + 5.0)  # in the fourth round's pause
        probing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probing

    # Three services share a round, probed together (3 x 50 ms is less than a PROBE_GAP).
    assert servers.arrivals_at(healthy) == exactly(round_starts)
    assert servers.arrivals_at(erroring) == exactly(round_starts)
    # A round is recorded once its slowest probe (the hung one's 1 s timeout) is over; only
    # then are the services that reached the threshold of failures re-queued.
    names = [name for name, _at in enqueued]
    assert names == ["b-503", "c-hung"] * 3
    times = [at for _name, at in enqueued]
    assert times == exactly(start + 1.0 for start in round_starts[1:] for _ in range(2))
    # With nobody restarting them (no reconciler here) the count stops at the threshold
    # that asked for the restart, and every round asks again.
    statuses = store.all_statuses()
    assert {name: (s.health_ok, s.health_failures) for name, s in statuses.items()} == {
        "a-ok": (True, 0),
        "b-503": (False, 2),
        "c-hung": (False, 2),
    }


async def test_probes_of_many_services_are_spread_over_a_quarter_of_the_interval(
    looptime: LoopTimeProxy, store: Store
) -> None:
    async with HealthServers().running() as servers:
        ports = [await servers.answering(200) for _ in range(12)]
        for index, port in enumerate(ports):
            add_running_service(store, f"s{index:02d}", port)
        prober = HealthProber(
            store, enqueue=lambda name: None, interval=4.0, timeout=1.0, failures_before_restart=2
        )
        await prober.probe_all()
    # 12 x 50 ms = 0.6 s (under a quarter of 4 s), in 3 groups of 4 at least 0.25 s apart,
    # in the order of the names.
    assert [servers.arrivals_at(port) for port in ports] == [
        exactly([index // 4 * 0.2]) for index in range(12)
    ]
    assert looptime == 0.4


@pytest.mark.parametrize(
    ("count", "interval", "starts"),
    [
        (0, 30.0, []),
        (1, 30.0, [0.0]),
        # few services: all at once (50 ms a probe is less than one gap)
        (4, 30.0, [0.0] * 4),
        (5, 30.0, [0.0] * 5),
        (6, 30.0, [0.0] * 3 + [0.15] * 3),
        # a short interval bounds the spread to a quarter of it
        (10, 1.0, [0.0] * 10),
        # 500 services, 30 s: 7.5 s in 30 groups of 17 (the last one of 7)
        (500, 30.0, [i // 17 * 0.25 for i in range(500)]),
    ],
)
def test_probes_start_in_groups_a_gap_apart_over_their_spread(
    count: int, interval: float, starts: list[float]
) -> None:
    assert probe_delays(count, interval) == pytest.approx(starts)


async def test_a_service_that_goes_to_rest_while_its_probe_waits_is_not_probed(
    looptime: LoopTimeProxy, store: Store
) -> None:
    """Its connection would wake it (or reach the port the moment the agent holds it for
    a sleep): a service found resting after the probe's spread delay is left alone."""
    async with HealthServers().running() as servers:
        ports = [await servers.answering(200) for _ in range(6)]
        for index, port in enumerate(ports):
            add_running_service(store, f"s{index}", port)
        resting: set[str] = set()
        prober = HealthProber(
            store,
            enqueue=lambda name: None,
            interval=4.0,
            timeout=1.0,
            failures_before_restart=2,
            asleep=lambda name: name in resting,
        )
        round_done = asyncio.create_task(prober.probe_all())
        await asyncio.sleep(0.01)  # s0-s2 probed at 0; s3-s5 wait until 0.15
        resting.add("s5")
        await round_done
        prober.connections.close()
    assert [servers.arrivals_at(port) for port in ports] == [
        *[exactly([0.0])] * 3,
        *[exactly([0.15])] * 2,
        [],
    ]
    statuses = store.all_statuses()
    names = [f"s{index}" for index in range(6)]
    assert [statuses[name].health_ok for name in names] == [True] * 5 + [None]


@pytest.mark.parametrize(
    ("before", "answer", "kinds"),
    [
        (True, 503, ["health_lost"]),
        (False, 200, ["health_recovered"]),
        (None, 503, []),  # a first verdict is not a turn
        (None, 200, []),
        (True, 200, []),
        (False, 503, []),
    ],
)
async def test_a_verdict_that_turns_is_an_event_and_one_that_holds_is_not(
    looptime: LoopTimeProxy, store: Store, before: bool | None, answer: int, kinds: list[str]
) -> None:
    async with HealthServers().running() as servers:
        add_running_service(store, "turning", await servers.answering(answer))
        if before is not None:
            store.update_status("turning", health_ok=before)
        prober = HealthProber(
            store, enqueue=lambda name: None, interval=1.0, timeout=1.0, failures_before_restart=3
        )
        await prober.probe_all()
    turns = [e.kind for e in store.list_events("turning") if e.kind.startswith("health_")]
    assert turns == kinds


# -- waiting for a fresh instance ----------------------------------------------------------

GROWING_PAUSES = [0.0, 0.02, 0.06, 0.14, 0.30, 0.55, 0.80]  # 20 ms doubling, at most 250 ms


async def test_wait_healthy_probes_with_growing_pauses_until_its_deadline(
    looptime: LoopTimeProxy,
) -> None:
    async with HealthServers().running() as servers, aiohttp.ClientSession() as session:
        port = await servers.answering(503)
        assert not await wait_healthy(session, port, deadline=1.0)
        assert looptime == 1.0  # the last pause is cut to end at the deadline
    assert servers.arrivals_at(port) == exactly(GROWING_PAUSES)


async def test_wait_healthy_keeps_the_same_pauses_when_the_port_refuses_connections(
    looptime: LoopTimeProxy,
) -> None:
    async with HealthServers().running() as servers, aiohttp.ClientSession() as session:
        port = servers.refusing()
        attempts = 0

        def count_attempt() -> bool:
            nonlocal attempts
            attempts += 1
            return False

        assert not await wait_healthy(session, port, deadline=1.0, gave_up=count_attempt)
        assert looptime == 1.0
    assert attempts == len(GROWING_PAUSES)


async def test_wait_healthy_returns_at_the_first_healthy_answer(looptime: LoopTimeProxy) -> None:
    async with HealthServers().running() as servers, aiohttp.ClientSession() as session:
        port = await servers.answering(503, 503, 503, 200)
        assert await wait_healthy(session, port, deadline=10.0)
        assert looptime == 0.14
    assert servers.arrivals_at(port) == exactly(GROWING_PAUSES[:4])


async def test_a_hung_instance_is_probed_only_until_the_deadline(looptime: LoopTimeProxy) -> None:
    async with HealthServers().running() as servers, aiohttp.ClientSession() as session:
        port = servers.silent()
        assert not await wait_healthy(session, port, deadline=1.0)
        assert looptime == 1.0  # one probe, whose timeout is what was left of the wait


async def test_wait_healthy_stops_after_the_first_failure_once_the_caller_gave_up(
    looptime: LoopTimeProxy,
) -> None:
    async with HealthServers().running() as servers, aiohttp.ClientSession() as session:
        port = await servers.answering(503)
        assert not await wait_healthy(session, port, deadline=10.0, gave_up=lambda: True)
        assert looptime == 0
    assert servers.arrivals_at(port) == [0.0]
