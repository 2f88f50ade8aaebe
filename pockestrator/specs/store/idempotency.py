"""Idempotency keys: the first answer of a creating write, kept for its retries.

A client that sends ``Idempotency-Key`` with a create (a service, a token, a backup, a
deploy) and retries after a timeout must get the first answer again, not a 409 and a lost
one-time password. This part keeps, per key, the hash of the request that claimed it and
the answer once there is one, sealed by the caller (``api.idempotency``): the store holds
only a lookup hash, a body hash and ciphertext. A row lives for the window it was given;
expired rows are removed by the next claim, and an expired one is never answered.

Invariants (each tested in tests/unit/test_idempotency.py):
1. one key has at most one row: the first claim wins, a concurrent second one sees
   ``pending`` until the first finishes or is released;
2. a claim of a finished key with the same body hash answers its stored answer; with
   another body hash, ``mismatch`` (and the stored answer is not returned);
3. after the window the key is free again: its old answer is gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from pockestrator.database import iso
from pockestrator.specs.store.base import StorePart

ClaimState = Literal["new", "pending", "mismatch", "replay"]


@dataclass(frozen=True)
class IdempotencyClaim:
    state: ClaimState
    status: int | None = None
    sealed: bytes | None = None


class IdempotencyKeys(StorePart):
    def claim_idempotency(
        self, lookup: str, body_hash: str, window_seconds: float
    ) -> IdempotencyClaim:
        """Take ``lookup`` for a new request, or say what it already holds."""
        now = self._clock.now()
        now_text = self._now()
        expires = iso(now + timedelta(seconds=window_seconds))
        with self._database.write() as db:
            db.execute("DELETE FROM idempotency_keys WHERE expires_at <= ?", (now_text,))
            row = db.execute(
                "SELECT body_hash, status, sealed FROM idempotency_keys WHERE lookup = ?",
                (lookup,),
            ).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO idempotency_keys (lookup, body_hash, created_at, expires_at)"
                    " VALUES (?, ?, ?, ?)",
                    (lookup, body_hash, now_text, expires),
                )
                return IdempotencyClaim("new")
        if row["body_hash"] != body_hash:
            return IdempotencyClaim("mismatch")
        if row["status"] is None:
            return IdempotencyClaim("pending")
        return IdempotencyClaim("replay", int(row["status"]), bytes(row["sealed"]))

    def finish_idempotency(self, lookup: str, status: int, sealed: bytes) -> None:
        """The answer to a claimed key, sealed; it is what every retry gets back."""
        with self._database.write() as db:
            db.execute(
                "UPDATE idempotency_keys SET status = ?, sealed = ? WHERE lookup = ?",
                (status, sealed, lookup),
            )

    def release_idempotency(self, lookup: str) -> None:
        """Free a claimed key whose request did not succeed: a retry runs it anew."""
        with self._database.write() as db:
            db.execute(
                "DELETE FROM idempotency_keys WHERE lookup = ? AND status IS NULL", (lookup,)
            )
