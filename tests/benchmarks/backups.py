"""Backups under load: our online snapshot against PocketBase's own backup, same data, same run.

``python -m tests.benchmarks.backups [--megabytes 500] [--rate 200]``

One service, run by the agent as deployed (its own process, a unit of the sandbox's
manager), with a ``notes`` collection filled to the size asked for (rows of 4 KiB written
straight into ``data.db`` while the instance is stopped, so the fill takes seconds, not
hours). Then writers insert records through PocketBase's API at a fixed rate for the
whole run, open loop: each request has its scheduled time, and its latency is counted
from then, so a stall shows as the latency of every request it held back (no coordinated
omission). Windows, in order:

- baseline: writers alone;
- ours: ``POST /services/{id}/backups`` (an online snapshot), its time and the writers'
  latency while it runs;
- PocketBase: ``POST /api/backups`` (its ZIP), the same;
- restore: the writers stopped, ``POST .../restore`` of our snapshot, its time (it takes
  a safety snapshot first, stops, swaps, starts and waits for health).

With ``--rounds N`` the first three windows run N times in turn. Each round is a
comparison of its own: its ratio is our max stall over PocketBase's in that round, beside
that round's writers-alone max and the load average when it began, and the headline ratio
is the median of the rounds' ratios, so that a burst of another process on a shared
machine decides at most one round. The floor of the comparison is PocketBase's own backup
on the same data in the same run. Each of our windows is annotated with its worst writes
and the snapshot phase each ended in (the phases' seconds come from the agent's
``snapshot taken`` log line).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sqlite3
import statistics
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from pockestrator.accounts.store import AccountStore
from pockestrator.agent.sandbox import Sandbox, free_port
from pockestrator.controllers.releases import seed_from_installed
from pockestrator.controllers.servicedirs import ServiceFolders
from tests.benchmarks.bench import Report, in_sandbox, machine_description
from tests.testbed.agent_unit import AgentUnit
from tests.testbed.mirror import installed_version
from tests.testbed.waiting import wait_until

ROW_BYTES = 4096
SETTLE_SECONDS = 3.0


@dataclass
class Writers:
    """Inserts at ``rate`` per second, open loop; every request's (scheduled, latency)."""

    session: aiohttp.ClientSession
    url: str
    rate: float
    samples: list[tuple[float, float]] = field(default_factory=list)
    errors: int = 0
    _task: asyncio.Task[None] | None = None
    _pending: set[asyncio.Task[None]] = field(default_factory=set)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.gather(*self._pending, return_exceptions=True)

    async def _run(self) -> None:
        started = time.perf_counter()
        count = 0
        while True:
            scheduled = started + count / self.rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self._one(scheduled, count))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
            count += 1

    async def _one(self, scheduled: float, number: int) -> None:
        body = {"title": f"w{number}", "body": "x" * 200}
        try:
            async with self.session.post(self.url, json=body) as response:
                await response.read()
                ok = response.status == 200
        except aiohttp.ClientError:
            ok = False
        if not ok:
            self.errors += 1
        self.samples.append((scheduled, time.perf_counter() - scheduled))

    async def drained(self, timeout: float = 120.0) -> bool:
        """Until the backlog a stall left is answered: the next window must not inherit it
        (open loop, a stall's queued inserts are late in whatever window they finish).
        False when it was not answered in ``timeout`` (the instance cannot keep up)."""
        deadline = time.perf_counter() + timeout
        while len(self._pending) > max(2, self.rate * 0.05):
            if time.perf_counter() > deadline:
                return False
            await asyncio.sleep(0.1)
        return True

    def window(self, start: float, end: float) -> list[float]:
        return [latency for at, latency in self.samples if start <= at <= end]


@dataclass(frozen=True)
class Round:
    """One round's writer maxima (ms) and the load average (1 min) when it began."""

    load: float
    alone: float
    ours: float
    theirs: float
    # False when the writers' backlog was not answered within the round (the instance could
    # not keep up with the rate at that load): no comparison, left out of the medians.
    kept: bool = True

    @property
    def ratio(self) -> float:
        """Our max stall over PocketBase's, this round [target <= 0.1]."""
        return self.ours / self.theirs if self.theirs > 0 else float("nan")

    @property
    def over_alone(self) -> float:
        """The same less what the writers saw alone this round (0 when ours was below it)."""
        return max(0.0, self.ours - self.alone) / max(self.theirs - self.alone, 1e-9)

    def describe(self, number: int) -> str:
        return (
            f"round {number}: load {self.load:.1f}, writers alone max {self.alone:.1f} ms, "
            f"ours {self.ours:.1f} ms, PocketBase's {self.theirs:.1f} ms, ratio {self.ratio:.3f}"
            f" (over alone {self.over_alone:.3f})"
            + ("" if self.kept else "; left out: the writers' backlog was not answered")
        )


def round_ratios(rounds: list[Round]) -> dict[str, float]:
    """The headline figures over the rounds: medians of each kept round's own ratios (NaN
    when no round was kept)."""
    kept = [r for r in rounds if r.kept]

    def median(values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")

    return {
        "max stall ratio ours/pocketbase [<=0.1]": median([r.ratio for r in kept]),
        "max stall over baseline ratio ours/pocketbase": median([r.over_alone for r in kept]),
        "rounds at or under the target (0.1)": sum(r.ratio <= 0.1 for r in kept),
        "rounds left out (backlog not answered)": len(rounds) - len(kept),
        "load average (1 min) at the rounds' start, median": statistics.median(
            r.load for r in rounds
        ),
    }


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def fill(database: Path, megabytes: int) -> int:
    """Rows of ``ROW_BYTES`` into ``notes`` until ``data.db`` holds about ``megabytes``."""
    rows = megabytes * 1024 * 1024 // (ROW_BYTES + 64)
    owner = database.stat()
    with sqlite3.connect(database) as db:
        db.executemany(
            "INSERT INTO notes (id, title, body) VALUES (?, ?, ?)",
            (
                (secrets.token_hex(8)[:15], f"fill {n}", os.urandom(ROW_BYTES // 2).hex())
                for n in range(rows)
            ),
        )
    db.close()
    for path in database.parent.iterdir():
        os.chown(path, owner.st_uid, owner.st_gid)
    # The fill's hundreds of dirty megabytes on their way to the disk now, not 30 s later
    # in the middle of a measured window (the kernel's dirty expiry).
    os.sync()
    return rows


def snapshot_phases(line: dict[str, Any], clock_offset: float) -> list[tuple[str, float, float]]:
    """The snapshot's phases (its log line's ``*_seconds``, in order, ending at the line's
    time) as (name, start, end) on this process's ``perf_counter``."""
    ended = datetime.fromisoformat(line["timestamp"]).timestamp() - clock_offset
    names = [key.removesuffix("_seconds") for key in line if key.endswith("_seconds")]
    phases = []
    for name in reversed(names):
        began = ended - float(line[f"{name}_seconds"])
        phases.append((name, began, ended))
        ended = began
    return list(reversed(phases))


def phase_at(phases: list[tuple[str, float, float]], moment: float) -> str:
    for name, began, ended in phases:
        if began <= moment <= ended:
            return name
    return "outside"


async def api_call(
    session: aiohttp.ClientSession, method: str, url: str, token: str, body: Any = None
) -> tuple[int, Any]:
    async with session.request(
        method,
        url,
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=aiohttp.ClientTimeout(total=3600),
    ) as response:
        return response.status, await response.json(content_type=None)


async def run(
    megabytes: int = 500, rate: float = 200.0, window: float = 5.0, rounds: int = 1
) -> Report:
    report = Report(machine=machine_description())
    version = installed_version()
    print(
        f"machine: {report.machine}; {megabytes} MB, {rate:g} inserts/s, {rounds} round(s)",
        flush=True,
    )

    async def body(sandbox: Sandbox) -> None:
        config = sandbox.agent_config(listen_port=free_port(), health_interval=10.0)
        seed_from_installed(config.release_cache_dir)
        unit = AgentUnit(sandbox, config, watchdog_seconds=60)
        await unit.start()
        accounts = AccountStore(config.database)
        token, _record = accounts.create_token("backup benchmark")
        accounts.close()
        api = f"http://{config.listen_host}:{config.listen_port}/api/pockestrator"
        connector = aiohttp.TCPConnector(limit=400)
        async with aiohttp.ClientSession(connector=connector) as session:
            port = free_port()
            status, created = await api_call(
                session,
                "POST",
                f"{api}/services?wait=true",
                token,
                {
                    "project_name": "heavy",
                    "port": port,
                    "pocketbase_version": version,
                    "superuser_email": "admin@heavy.example",
                },
            )
            assert status == 201, created
            pocketbase = f"http://127.0.0.1:{port}"
            status, signed = await api_call(
                session,
                "POST",
                f"{pocketbase}/api/collections/_superusers/auth-with-password",
                "",
                {"identity": "admin@heavy.example", "password": created["superuser_password"]},
            )
            superuser = {"Authorization": signed["token"]}
            async with session.post(
                f"{pocketbase}/api/collections",
                json={
                    "name": "notes",
                    "type": "base",
                    "fields": [
                        {"name": "title", "type": "text"},
                        {"name": "body", "type": "text", "max": 100000},
                    ],
                    "createRule": "",
                },
                headers=superuser,
            ) as response:
                assert response.status == 200, await response.text()

            await api_call(
                session, "POST", f"{api}/services/heavy/control", token, {"action": "stop"}
            )
            database = ServiceFolders(config).private_path("heavy") / "pb_data" / "data.db"
            started = time.perf_counter()
            rows = await asyncio.to_thread(fill, database, megabytes)
            report.add("fill: seconds (setup, not a figure)", time.perf_counter() - started)
            report.add("data.db MB", database.stat().st_size / 1024 / 1024)
            report.add("rows", rows)
            await api_call(
                session, "POST", f"{api}/services/heavy/control", token, {"action": "start"}
            )

            async def up() -> bool:
                try:
                    async with session.get(f"{pocketbase}/api/health") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            assert await wait_until(up, 60, interval=0.1)
            status, signed = await api_call(
                session,
                "POST",
                f"{pocketbase}/api/collections/_superusers/auth-with-password",
                "",
                {"identity": "admin@heavy.example", "password": created["superuser_password"]},
            )
            superuser = {"Authorization": signed["token"]}

            clock_offset = time.time() - time.perf_counter()  # journal time -> perf_counter
            writers = Writers(session, f"{pocketbase}/api/collections/notes/records", rate)
            writers.start()
            await asyncio.sleep(SETTLE_SECONDS)
            windows: dict[str, list[tuple[float, float]]] = {
                "baseline": [],
                "ours": [],
                "pocketbase": [],
            }
            loads: list[float] = []
            kept: list[bool] = []
            for round_number in range(rounds):
                loads.append(os.getloadavg()[0])
                kept.append(True)
                base_start = time.perf_counter()
                await asyncio.sleep(window)
                windows["baseline"].append((base_start, time.perf_counter()))
                # A stall of the writers alone (another process's burst) is answered before
                # our window opens, as after each backup: no window inherits a backlog.
                if not await writers.drained():
                    report.notes.append(f"round {round_number + 1}: backlog not drained")
                    kept[-1] = False

                ours_start = time.perf_counter()
                status, taken = await api_call(
                    session, "POST", f"{api}/services/heavy/backups", token
                )
                windows["ours"].append((ours_start, time.perf_counter()))
                assert status == 201, taken
                backup_id = taken["backup"]["id"]
                if not await writers.drained():
                    report.notes.append(f"round {round_number + 1}: backlog not drained")
                    kept[-1] = False
                await asyncio.sleep(SETTLE_SECONDS)

                theirs_start = time.perf_counter()
                async with session.post(
                    f"{pocketbase}/api/backups",
                    json={"name": f"bench{round_number}.zip"},
                    headers=superuser,
                    timeout=aiohttp.ClientTimeout(total=3600),
                ) as response:
                    assert response.status == 204, await response.text()
                windows["pocketbase"].append((theirs_start, time.perf_counter()))
                if not await writers.drained():
                    report.notes.append(f"round {round_number + 1}: backlog not drained")
                    kept[-1] = False
                await asyncio.sleep(SETTLE_SECONDS)
            await writers.stop()

            for label, spans in windows.items():
                each = [writers.window(start, end) for start, end in spans]
                if label != "baseline":
                    seconds = [end - start for start, end in spans]
                    report.add(f"{label}: backup seconds", statistics.median(seconds))
                report.add(f"{label}: writes in window", statistics.median(map(len, each)))
                for name, share in (("p50", 0.5), ("p99", 0.99)):
                    values = [percentile(latencies, share) * 1000 for latencies in each]
                    report.add(f"{label}: writer {name} ms", statistics.median(values))
                maxima = [max(latencies, default=float("nan")) * 1000 for latencies in each]
                report.notes.append(
                    f"{label}: writer max ms per round: "
                    + ", ".join(f"{value:.1f}" for value in maxima)
                )
                report.add(f"{label}: writer max ms", statistics.median(maxima))
                report.add(f"{label}: writer max ms, worst of {rounds}", max(maxima))
            taken_lines = [
                json.loads(line)
                for line in unit.journal().splitlines()
                if '"snapshot taken"' in line
            ]
            for number, (ours_start, ours_end) in enumerate(windows["ours"]):
                line = taken_lines[number] if number < len(taken_lines) else None
                phases = snapshot_phases(line, clock_offset) if line else []
                worst = sorted(
                    (latency, at) for at, latency in writers.samples if ours_start <= at <= ours_end
                )[-3:]
                report.notes.append(
                    f"ours #{number + 1}: worst writes (ms, s into the window, phase at the "
                    "write's end): "
                    + ", ".join(
                        f"{latency * 1000:.0f} at {at - ours_start:.2f} "
                        f"({phase_at(phases, at + latency)})"
                        for latency, at in reversed(worst)
                    )
                    + "; phases "
                    + ", ".join(
                        f"{name} {a - ours_start:.2f}-{b - ours_start:.2f}" for name, a, b in phases
                    )
                )
            per_round = [
                Round(
                    load=load,
                    alone=_window_max(writers, alone),
                    ours=_window_max(writers, ours),
                    theirs=_window_max(writers, theirs),
                    kept=round_kept,
                )
                for load, round_kept, alone, ours, theirs in zip(
                    loads,
                    kept,
                    windows["baseline"],
                    windows["ours"],
                    windows["pocketbase"],
                    strict=True,
                )
            ]
            report.notes.extend(r.describe(n) for n, r in enumerate(per_round, 1))
            for key, value in round_ratios(per_round).items():
                report.add(key, value)
            report.add("writer errors", writers.errors)
            report.add("snapshot MB", taken["backup"]["size_bytes"] / 1024 / 1024)
            zipped = database.parent / "backups" / "bench0.zip"
            if zipped.exists():
                report.add("pocketbase zip MB", zipped.stat().st_size / 1024 / 1024)

            restore_start = time.perf_counter()
            status, restored = await api_call(
                session, "POST", f"{api}/services/heavy/backups/{backup_id}/restore", token
            )
            assert status == 200, restored
            report.add("restore seconds (safety snapshot + swap + start + health)",
                       time.perf_counter() - restore_start)  # fmt: skip
            report.notes.append(
                "latencies are counted from each insert's scheduled time (open loop); "
                f"windows: baseline {window:g} s, then each backup while it runs; "
                f"{rounds} round(s), medians over them"
            )
        await unit.stop()

    await in_sandbox(body)
    return report


def _window_max(writers: Writers, span: tuple[float, float]) -> float:
    return max(writers.window(*span), default=float("nan")) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=500)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--window", type=float, default=5.0)
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="baseline, ours and PocketBase's this many times in turn; figures are medians",
    )
    parser.add_argument(
        "--output", type=Path, default=Path("test-artifacts/benchmarks-backups.json")
    )
    args = parser.parse_args()
    report = asyncio.run(run(args.megabytes, args.rate, args.window, args.rounds))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report.as_json() + "\n")
    print(json.dumps(report.figures, indent=2))
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
