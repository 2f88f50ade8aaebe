"""``python -m tests.conformance [--examples 200]``: schemathesis against a live agent.

Boots a sandbox with the agent as deployed (``tests.testbed.live_agent``), makes two real
services for the operations on one service to find, and runs schemathesis' CLI on the
agent's own OpenAPI document: every phase (examples, coverage, fuzzing, and the stateful
phase, which follows the document's links from a created service to its reads, changes and
deletion), ``--checks all`` with ``positive_data_acceptance`` replaced by the rule of
``tests.conformance.refusals``. The hooks (``tests.conformance.hooks``) give the
credentials and keep most generated versions real. Reports go to
``test-artifacts/conformance/``; the exit status is schemathesis' own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import time
from datetime import timedelta
from pathlib import Path

import aiohttp

from pockestrator.accounts.passwords import create_admin
from pockestrator.accounts.store import AccountStore
from pockestrator.agent.sandbox import free_port
from tests.conformance.summary import summarize
from tests.testbed.live_agent import LiveAgent, live_agent

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ADMIN_EMAIL = "fuzzer@pockestrator.test"
TARGETS = ("fuzzed", "patched")
SESSIONS = 2000
SESSION_TTL = timedelta(hours=6)


async def prepare(live: LiveAgent, output: Path) -> dict[str, object]:
    """An admin for sessions, the services to fuzz on; the run's facts for the hooks."""
    password = secrets.token_urlsafe(18)
    accounts = AccountStore(live.config.database)
    try:
        admin = create_admin(accounts, ADMIN_EMAIL, password)
        # Sessions for the logout operation, made here: a login per logout would meet the
        # login throttle, which the fuzzer's own failed logins set off (a 429 is right).
        sessions = [accounts.create_session(admin.id, SESSION_TTL)[0] for _ in range(SESSIONS)]
    finally:
        accounts.close()
    sessions_file = output / "sessions.json"
    sessions_file.touch(mode=0o600)
    sessions_file.write_text(json.dumps(sessions))
    headers = {"Authorization": f"Bearer {live.token}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        for name in TARGETS:
            body = {
                "project_name": name,
                "port": free_port(),
                "pocketbase_version": live.versions[1],
            }
            async with session.post(live.api + "/services?wait=true", json=body) as reply:
                if reply.status != 201:
                    raise RuntimeError(f"cannot create {name}: {reply.status} {await reply.text()}")
    return {
        "api": live.api,
        "token": live.token,
        "token_id": live.token_id,
        "admin_email": ADMIN_EMAIL,
        "admin_password": password,
        "sessions_file": str(sessions_file),
        "versions": list(live.versions),
    }


# A log stream never ends: it is read this long (its first events), any other answer may
# take up to the request timeout (a create or control waits for its reconcile, a minute
# at most).
STREAM_SECONDS = 2.0


def write_config(path: Path, args: argparse.Namespace) -> Path:
    """schemathesis.toml: the timeouts per operation, which the command line cannot say."""
    path.write_text(
        "# Written by python -m tests.conformance.\n"
        f"request-timeout = {args.request_timeout}\n"
        + "".join(
            "\n[[operations]]\n"
            f'include-operation-id = "{operation_id}"\n'
            f"request-timeout = {STREAM_SECONDS}\n"
            for operation_id in ("getServiceLogs", "listEvents", "listServiceEvents")
        )
    )
    return path


def schemathesis_command(live: LiveAgent, args: argparse.Namespace, config: Path) -> list[str]:
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "--config-file",
        str(config),
        "run",
        live.api + "/openapi.json",
        "--checks",
        "all",
        "--exclude-checks",
        "positive_data_acceptance",
        "--max-examples",
        str(args.examples),
        "--workers",
        str(args.workers),
        "--report",
        "junit,ndjson",
        "--report-dir",
        str(args.output),
    ]
    if args.seed is not None:
        command += ["--seed", str(args.seed)]
    if args.phases:
        command += ["--phases", args.phases]
    return command


async def run(args: argparse.Namespace) -> int:
    async with live_agent("conformance") as live:
        facts = await prepare(live, args.output)
        config = write_config(args.output / "schemathesis.toml", args)
        command = schemathesis_command(live, args, config)
        environment = {
            **os.environ,
            "SCHEMATHESIS_HOOKS": "tests.conformance.hooks",
            "POCKESTRATOR_CONFORMANCE": json.dumps(facts),
            "PYTHONPATH": str(PROJECT_ROOT),
        }
        shown = [part if "Bearer" not in part else "<token>" for part in command]
        print("running:", " ".join(shown), flush=True)
        started = time.monotonic()
        # Its cache goes beside the reports, not into the work tree.
        process = await asyncio.create_subprocess_exec(*command, env=environment, cwd=args.output)
        status = await process.wait()
        print(f"schemathesis exited {status} after {time.monotonic() - started:.0f} s", flush=True)
        reports = sorted(args.output.glob("ndjson-*.ndjson"), key=lambda p: p.stat().st_mtime)
        if reports:
            print("\n".join(summarize(reports[-1]).lines()), flush=True)
        return status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=200, help="per operation and phase")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--request-timeout", type=float, default=75.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--phases", default="", help="e.g. fuzzing,stateful (default: all)")
    parser.add_argument("--output", type=Path, default=PROJECT_ROOT / "test-artifacts/conformance")
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
