"""``python -m tests.faults [--points 100] [--seed N]``: the kill -9 run, figures to JSON.

One sandbox (private systemd, journald, Caddy) with a release mirror of two PocketBase
versions; the agent runs as a unit of it. Prints a line per kill point and writes the
summary (docs/reliability.md reports it) to ``test-artifacts/faults.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

from pockestrator.agent.sandbox import Sandbox
from tests.benchmarks.bench import BENCH_BASE, machine_description
from tests.faults.killpoints import run_kill_points
from tests.testbed.mirror import OLDER_VERSION, ReleaseMirror, installed_version, pocketbase_binary

SESSIONS_LOCK = ".sessions.lock"  # tests/conftest.py's


async def run(points: int, seed: int) -> dict[str, Any]:
    BENCH_BASE.mkdir(parents=True, exist_ok=True)
    # Held shared for the whole run, as every pytest session holds it: a session that
    # finds the lock free ends every test bed under the folder as a crashed run's.
    with (BENCH_BASE / SESSIONS_LOCK).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)
        return await _run(points, seed)


async def _run(points: int, seed: int) -> dict[str, Any]:
    versions = (OLDER_VERSION, installed_version())
    mirror = ReleaseMirror()
    for version in versions:
        mirror.add_release(version, pocketbase_binary(version))
    await mirror.start()
    BENCH_BASE.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="faults-", dir=BENCH_BASE))
    sandbox = Sandbox(root)
    await sandbox.start()
    try:
        config = mirror.agent_config(
            sandbox,
            health_interval=1.0,
            health_failures_before_restart=2,
            upgrade_health_deadline=8.0,
        )
        figures = await run_kill_points(sandbox, config, versions, points=points, seed=seed)
    finally:
        await sandbox.stop()
        leftovers = sandbox.leftover_pids()
        shutil.rmtree(root, ignore_errors=True)
        await mirror.stop()
    summary = {"machine": machine_description(), "seed": seed, **figures.summary()}
    summary["leftover_processes"] = leftovers
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--seed", type=int, default=None, help="default: a random one, printed")
    parser.add_argument("--output", type=Path, default=Path("test-artifacts/faults.json"))
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    print(f"kill -9 run: {args.points} points, seed {seed}", flush=True)
    summary = asyncio.run(run(args.points, seed))
    text = json.dumps(summary, indent=2)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text + "\n")
    print(f"written to {args.output}")
    clean = (
        summary["converged"] == summary["kill_points"]
        and not summary["lost"]
        and not summary["final_problems"]
        and not summary["leftover_processes"]
    )
    raise SystemExit(0 if clean else 1)


if __name__ == "__main__":
    main()
