"""What every part of the specs store shares: the database and the clock.

``Store`` is assembled from one class per job (services, status, events, ...); each of them
derives from ``StorePart``, so that all of them write through the same ``StoreDatabase``
(SQLite's file or the fleet's PostgreSQL, one writer at a time) and stamp rows with the
same ``Clock``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pockestrator.clock import Clock
from pockestrator.database import StoreDatabase, iso

if TYPE_CHECKING:
    from pockestrator.specs.store.changes import ChangeFeed
    from pockestrator.specs.store.secrets import SecretFiles


class StorePart:
    """The attributes the parts of ``Store`` rely on (set by ``Store.__init__``)."""

    _database: StoreDatabase
    _clock: Clock
    _secrets: SecretFiles
    # Woken after every committed change to a service or its status (``changes``).
    changes: ChangeFeed
    node: str

    def _now(self) -> str:
        """The clock's now as stored (never None, unlike ``iso`` of an optional)."""
        stamp = iso(self._clock.now())
        assert stamp is not None
        return stamp
