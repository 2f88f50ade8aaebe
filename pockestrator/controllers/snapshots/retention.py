"""Which snapshots to keep: ``keep: {last, daily, weekly, monthly}`` (pure).

The rules are the ones restic and Borg users know. Scheduled (and safety and upgrade)
snapshots are kept when any rule keeps them: the newest ``last``; the newest of each of the
newest ``daily`` days that have one; likewise ISO weeks and months. Days, weeks and months
are UTC. Two snapshots are always kept whatever the rules say: the newest one, and the
newest one that passed verification (the way back must exist). Manual snapshots and
imports are the operator's: never pruned, counted by no rule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from pockestrator.controllers.snapshots.manifest import Kind
from pockestrator.specs.backups import KeepPolicy

PRUNED_KINDS: frozenset[Kind] = frozenset({"scheduled", "safety", "upgrade"})


@dataclass(frozen=True)
class Candidate:
    """What retention needs to know of a snapshot."""

    snapshot_id: str
    kind: Kind
    created_at: datetime
    verified: bool = False


def _newest_per(
    candidates: Sequence[Candidate], count: int, bucket: Callable[[datetime], object]
) -> set[str]:
    kept: set[str] = set()
    seen: set[object] = set()
    for candidate in candidates:  # newest first
        if len(seen) >= count:
            break
        key = bucket(candidate.created_at.astimezone(UTC))
        if key not in seen:
            seen.add(key)
            kept.add(candidate.snapshot_id)
    return kept


def to_prune(candidates: Iterable[Candidate], keep: KeepPolicy) -> list[str]:
    """The ids to delete, oldest first; everything else is kept."""
    ordered = sorted(candidates, key=lambda c: (c.created_at, c.snapshot_id), reverse=True)
    pruned = [c for c in ordered if c.kind in PRUNED_KINDS]
    if not ordered:
        return []
    kept = {c.snapshot_id for c in pruned[: keep.last]}
    kept |= _newest_per(pruned, keep.daily, lambda at: at.date())
    kept |= _newest_per(pruned, keep.weekly, lambda at: at.isocalendar()[:2])
    kept |= _newest_per(pruned, keep.monthly, lambda at: (at.year, at.month))
    kept.add(ordered[0].snapshot_id)
    verified = next((c for c in ordered if c.verified), None)
    if verified is not None:
        kept.add(verified.snapshot_id)
    return [c.snapshot_id for c in reversed(pruned) if c.snapshot_id not in kept]
