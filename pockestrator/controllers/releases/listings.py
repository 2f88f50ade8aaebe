"""What release sources publish, parsed: checksum files and indexes of versions.

Pure and strict: a ``checksums.txt`` with one odd line is unusable as a whole, because a
checksum file is only worth its exactness; an index entry that is a draft or whose tag
is not a release version is left out. ``ReleaseInfo`` is one published version, and
``sort_releases`` orders them newest first as versions (0.10.0 > 0.9.0 > 0.9.0-rc2).

Neighbours: ``names`` (version spellings), ``github`` and ``pypi`` (which fetch what is
parsed here), ``cache`` (which merges indexes with the cached versions).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pockestrator.controllers.releases.names import version_from_pep440
from pockestrator.specs.grammar import GrammarError, check_version, is_prerelease, version_key

_CHECKSUM_LINE = re.compile(r"([0-9A-Fa-f]{64}) [ *]([^\s/\\]+)")


@dataclass(frozen=True)
class ReleaseInfo:
    """One published version; ``prerelease`` as the source marks it (or its ``-rc`` suffix)."""

    version: str
    prerelease: bool = False


def parse_checksums(text: str) -> dict[str, str]:
    """``checksums.txt`` (``<sha256>  <file>`` per line, as ``sha256sum`` writes) as a dict.

    Strict: a line that does not fit, or a file listed twice with different digests, makes
    the whole file unusable, because a checksum file is only worth its exactness.
    """
    digests: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = _CHECKSUM_LINE.fullmatch(line.rstrip())
        if match is None:
            raise ValueError(f"line {number} is not '<sha256>  <file name>'")
        digest, name = match.group(1).lower(), match.group(2)
        if digests.get(name, digest) != digest:
            raise ValueError(f"'{name}' is listed twice with different digests")
        digests[name] = digest
    return digests


def sort_releases(releases: Iterable[ReleaseInfo]) -> list[ReleaseInfo]:
    """Newest first, compared as versions (0.10.0 > 0.9.0 > 0.9.0-rc2), one per version."""
    unique: dict[str, ReleaseInfo] = {}
    for release in releases:
        known = unique.get(release.version)
        # Marked as a pre-release by any source: keep the mark.
        unique[release.version] = ReleaseInfo(
            release.version, release.prerelease or bool(known and known.prerelease)
        )
    return sorted(unique.values(), key=lambda release: version_key(release.version), reverse=True)


def parse_github_index(payload: Any) -> list[ReleaseInfo]:
    """Releases from a GitHub REST ``/releases`` answer: drafts and odd tags left out."""
    if not isinstance(payload, list):
        raise ValueError("the release index is not a JSON list of releases")
    releases = []
    for item in payload:
        if not isinstance(item, dict) or item.get("draft") is not False:
            continue
        tag = item.get("tag_name")
        if not isinstance(tag, str):
            continue
        try:
            version = check_version(tag.removeprefix("v"))
        except GrammarError:
            continue
        releases.append(
            ReleaseInfo(version, item.get("prerelease") is True or is_prerelease(version))
        )
    return sort_releases(releases)


def parse_pip_index_versions(output: str) -> list[ReleaseInfo]:
    """Versions from ``pip index versions`` output (its ``Available versions:`` line)."""
    for line in output.splitlines():
        label, sep, listed = line.partition(":")
        if sep and label.strip() == "Available versions":
            releases = []
            for item in listed.split(","):
                version = version_from_pep440(item)
                if version is not None:
                    releases.append(ReleaseInfo(version, is_prerelease(version)))
            return sort_releases(releases)
    raise ValueError("pip printed no 'Available versions:' line")
