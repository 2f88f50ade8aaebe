"""Litestream's errors, reported: a replica that stops shipping is an event, not unseen.

Litestream keeps running when it cannot replicate: it logs ``level=ERROR`` and retries.
Some failures an instance can cause leave nothing else to see. When the instance deletes
its ``data.db-wal``, PocketBase goes on writing into the deleted file (its descriptor is
still open), Litestream logs one "sync error", makes a new, empty WAL and from then on
ships nothing, silently, while the unit stays active. So the agent reads each replicating
service's Litestream unit's journal, at every reconcile of the service and at least every
``CHECK_SECONDS``, and turns the error lines that came since the last read into one
``replication_failed`` event (how many, and the first one's text).

The lines are matched by the unit journald attributes them to (a field no process can
forge, ``journal``), so an instance cannot log errors in Litestream's name, nor hide one.
What is reported is Litestream's own text, cut short, with the target's secret taken out
should it ever appear in it.

Neighbours: ``agent.backups`` (which calls it), ``journal``,
``controllers.snapshots.litestream`` (the unit).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

from pockestrator.journal import JournalError, JournalQuery, JournalReader, LogEntry

log = structlog.get_logger("pockestrator.replication")

CHECK_SECONDS = 30.0
MESSAGE_MAX = 300
LINES = 500
_ERROR = re.compile(r"(?:^|\s)level=(?:ERROR|error)(?:\s|$)")


def litestream_errors(entries: list[LogEntry]) -> list[str]:
    """The messages of ``entries`` that are Litestream's errors (its ``level=ERROR``)."""
    return [entry.message for entry in entries if _ERROR.search(entry.message)]


def error_report(messages: list[str], secret: str | None) -> tuple[str, dict[str, object]]:
    """The event's message and details for ``messages`` (pure; the secret never in them)."""
    first = messages[0]
    if secret:
        first = first.replace(secret, "[secret]")
    first = first[:MESSAGE_MAX]
    text = f"litestream reported {len(messages)} error(s); the first: {first}"
    return text, {"errors": len(messages), "first_error": first}


@dataclass
class ReplicaErrors:
    """Each service's Litestream errors since the last read (see the module)."""

    reader: JournalReader
    _cursors: dict[str, str] = field(default_factory=dict)
    _since: dict[str, datetime] = field(default_factory=dict)

    async def new_errors(self, service: str, unit: str, now: datetime) -> list[str]:
        """The error lines of ``unit`` logged since the last call for ``service`` (on the
        first call, since a little before ``now``: replication has just been started)."""
        since = self._since.setdefault(service, now - timedelta(seconds=CHECK_SECONDS))
        cursor = self._cursors.get(service)
        query = JournalQuery(
            project_name=service,
            unit=unit,
            lines=LINES,
            since=None if cursor else since,
            after_cursor=cursor,
        )
        try:
            entries = await self.reader.read(query)
        except JournalError as exc:  # no journal to read: nothing known, said once per check
            log.warning("litestream's journal unreadable", service=service, error=str(exc))
            return []
        for entry in reversed(entries):
            if entry.cursor is not None:
                self._cursors[service] = entry.cursor
                break
        return litestream_errors(entries)

    def forget(self, service: str) -> None:
        self._cursors.pop(service, None)
        self._since.pop(service, None)
