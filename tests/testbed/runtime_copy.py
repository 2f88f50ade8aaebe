"""What a hardened unit runs, copied to a folder ``PrivateTmp=`` cannot hide.

The packaged unit has ``PrivateTmp=yes``: inside it /tmp and /var/tmp are empty. A clone
of this repository under /tmp (as CI may make one) has its virtual environment, its
source and the Caddy binary there, so an agent started from them fails with
ExecMainStatus=203 (the interpreter is not found). ``install_runtime`` lays out what the
package lays out on a host instead, in a folder of the test bed: a virtual environment
with this checkout's ``pockestrator`` and its runtime dependencies (copied from the
running environment, nothing fetched), and a copy of Caddy. The same is done wherever the
clone is, so every run tests the same thing.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement

PACKAGE = "pockestrator"
SOURCE = Path(__file__).resolve().parents[2] / PACKAGE


@dataclass(frozen=True)
class Runtime:
    python: Path
    caddy: Path


def runtime_distributions(name: str = PACKAGE) -> list[importlib.metadata.Distribution]:
    """The installed distributions ``name`` needs to run (no extras), itself excluded."""
    found: dict[str, importlib.metadata.Distribution] = {}
    pending = [name]
    while pending:
        distribution = importlib.metadata.distribution(pending.pop())
        for text in distribution.requires or []:
            requirement = Requirement(text)
            if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
                continue
            key = requirement.name.lower().replace("_", "-")
            if key not in found:
                found[key] = importlib.metadata.distribution(requirement.name)
                pending.append(requirement.name)
    return [found[key] for key in sorted(found)]


def _copy_distribution(distribution: importlib.metadata.Distribution, site: Path) -> None:
    """The distribution's files that live in site-packages (not scripts, not caches)."""
    source_site = Path(str(distribution.locate_file(""))).resolve()
    for file in distribution.files or []:
        source = Path(str(distribution.locate_file(file))).resolve()
        if "__pycache__" in source.parts or not source.is_file():
            continue
        if not source.is_relative_to(source_site):
            continue  # a console script in bin/, not needed to import the package
        target = site / source.relative_to(source_site)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def install_runtime(root: Path, caddy: Path) -> Runtime:
    """A virtual environment under ``root`` that runs ``python -m pockestrator``."""
    environment = root / "venv"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(environment)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = environment / "lib" / version / "site-packages"
    for distribution in runtime_distributions():
        _copy_distribution(distribution, site)
    shutil.copytree(SOURCE, site / PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
    binaries = root / "bin"
    binaries.mkdir()
    shutil.copy2(caddy, binaries / "caddy")
    return Runtime(python=environment / "bin" / "python", caddy=binaries / "caddy")
