"""``pockestrator move NAME --to NODE [--from-backup]``: ask for the move through any
node's API, then follow its record until it has finished (or ``--no-wait``).

The record is read again once a second: the move's steps run on two other agents, so the
answering agent has no reconcile of its own to wait for. Each state the record passes
through is printed once on stderr. Exit 0 when it is ``done``, 1 when it failed or rolled
back (the record's error says why).
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

from pockestrator.client.arguments import Commands, add_command

if TYPE_CHECKING:
    from pockestrator.client.commands import Console
    from pockestrator.client.http import ApiClient

FOLLOW_SECONDS = 1.0


def add_move_command(commands: Commands, client: argparse.ArgumentParser) -> None:
    move = add_command(
        commands,
        "move",
        client,
        "move a service to another node of the fleet",
        description="Through the service's off-site backup target: a snapshot, restored and "
        "health-checked on the target node, then the source stops, a final snapshot, the "
        "switch, and the source's copy archived. --from-backup when the source node is lost.",
        name="NAME",
    )
    move.add_argument("--to", required=True, metavar="NODE", help="the node it moves to")
    move.add_argument(
        "--from-backup",
        action="store_true",
        help="the source is lost: restore the newest off-site snapshot, with the replica's "
        "newest data.db when it replicates (data since is lost)",
    )
    move.add_argument(
        "--no-wait", dest="wait", action="store_false", help="answer once the move is recorded"
    )
    move.add_argument(
        "--timeout", type=float, default=1800.0, metavar="SECONDS", help="how long to follow it"
    )


def move(
    client: ApiClient,
    console: Console,
    name: str,
    to: str,
    *,
    from_backup: bool,
    wait: bool,
    timeout: float,
) -> int:
    from pockestrator.client.http import service_path  # not at parse time: it loads pydantic

    body = {"to": to, "from_backup": from_backup}
    record: dict[str, Any] = client.call("POST", service_path(name, "moves"), body=body).body
    seen = {str(record.get("state"))}
    console.note(f"{name}: move {record.get('id')} to {to} {record.get('state')}")
    deadline = time.monotonic() + timeout
    while wait and not record.get("finished") and time.monotonic() < deadline:
        time.sleep(FOLLOW_SECONDS)
        record = client.call("GET", service_path(name, f"moves/{record.get('id')}")).body
        state = str(record.get("state"))
        if state not in seen:
            seen.add(state)
            console.note(f"{name}: {state}")
    console.show(record, lambda: _text(name, record))
    if not record.get("finished"):
        return 0 if not wait else 1
    return 0 if record.get("state") == "done" else 1


def _text(name: str, record: dict[str, Any]) -> str:
    where = f"{record.get('source')} -> {record.get('target')}"
    state = record.get("state")
    if state == "done":
        return f"{name}: moved {where} (from snapshot {record.get('final_snapshot')})"
    if record.get("error"):
        return f"{name}: move {where} {state}: {record.get('error')}"
    return f"{name}: move {where} {state}"
