"""What a snapshot holds, written beside it: the manifest (pure).

Every snapshot folder has ``manifest.json``: which service and PocketBase version it is of,
why and when it was taken, and every file with its size and SHA-256. It is written last,
into a folder that only becomes a snapshot when it is renamed into place, so a listed
snapshot is always whole, and the hashes let a copy anywhere (another disk, S3) be checked
file by file. The manifest is also read back from places an operator (or an upload) may have
touched, so reading it is strict: unknown keys, paths that leave the folder and sizes or
hashes that are not what they claim are refused (``ManifestError``).

Neighbours: ``folder`` writes and lists snapshots; ``take`` fills them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pockestrator.files import HashedFile
from pockestrator.specs import grammar
from pockestrator.specs.copying import copied
from pockestrator.specs.grammar import GrammarError

MANIFEST_NAME = "manifest.json"
FORMAT = 1
# What a snapshot is for: on a schedule, asked for, the one taken before a restore or an
# upgrade (kept so that the way back exists), brought in from elsewhere (an import), or
# made with data.db as a replica had it at a chosen second (a point-in-time restore).
Kind = Literal["scheduled", "manual", "safety", "upgrade", "import", "replica"]
# Paths inside a snapshot: relative, no empty, "." or ".." part, no control character.
_PATH_PART = re.compile(r"[^/\x00-\x1f\x7f]{1,255}")
_SHA256 = re.compile(r"[0-9a-f]{64}", re.ASCII)
MANIFEST_MAX_BYTES = 32 * 1024 * 1024


class ManifestError(ValueError):
    """A manifest that is not one of ours, or that lies about its files."""


def check_snapshot_id(value: str) -> str:
    try:
        return grammar.check_snapshot_id(value)
    except GrammarError as exc:
        raise ManifestError(exc.message) from None


def check_member_path(value: str) -> str:
    """A file's path inside a snapshot: ``pb_data/storage/x/y.png``, never ``../x``."""
    parts = value.split("/")
    if len(value) > 4096 or not all(
        _PATH_PART.fullmatch(part) and part not in (".", "..") for part in parts
    ):
        raise ManifestError(f"{value[:80]!r} is not a path inside a snapshot")
    return value


class _FileModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    path: str
    size: int = Field(ge=0)
    sha256: str

    @field_validator("path")
    @classmethod
    def _inside(cls, value: str) -> str:
        return check_member_path(value)

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not _SHA256.fullmatch(value):
            raise ValueError("not a SHA-256 in lowercase hex")
        return value


class _ManifestModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[1]
    service: str
    snapshot_id: str
    kind: Kind
    created_at: datetime
    pocketbase_version: str | None
    files: list[_FileModel]

    @field_validator("snapshot_id")
    @classmethod
    def _id(cls, value: str) -> str:
        return check_snapshot_id(value)


@dataclass(frozen=True)
class Manifest:
    """One snapshot's description; ``files`` sorted by path, each once."""

    service: str
    snapshot_id: str
    kind: Kind
    created_at: datetime
    pocketbase_version: str | None
    files: tuple[HashedFile, ...]

    @property
    def size(self) -> int:
        return sum(entry.size for entry in self.files)

    def file(self, path: str) -> HashedFile | None:
        return next((entry for entry in self.files if entry.path == path), None)

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": FORMAT,
                "service": self.service,
                "snapshot_id": self.snapshot_id,
                "kind": self.kind,
                "created_at": self.created_at.isoformat(),
                "pocketbase_version": self.pocketbase_version,
                "files": [{"path": e.path, "size": e.size, "sha256": e.sha256} for e in self.files],
            },
            indent=1,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        if len(text) > MANIFEST_MAX_BYTES:
            raise ManifestError("the manifest is larger than any snapshot's")
        try:
            model = _ManifestModel.model_validate_json(text)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "manifest"
            raise ManifestError(f"{where}: {first['msg']}") from None
        files = tuple(HashedFile(f.path, f.size, f.sha256) for f in model.files)
        paths = [entry.path for entry in files]
        if paths != sorted(set(paths)):
            raise ManifestError("files must be sorted by path, each once")
        if model.created_at.tzinfo is None:
            raise ManifestError("created_at must say its time zone")
        return copied(cls, model, files=files)


def build_manifest(
    service: str,
    snapshot_id: str,
    kind: Kind,
    created_at: datetime,
    pocketbase_version: str | None,
    files: list[HashedFile],
) -> Manifest:
    """A manifest with its files in the one order every reader expects."""
    ordered = tuple(sorted(files, key=lambda entry: entry.path))
    for entry in ordered:
        check_member_path(entry.path)
    if len({entry.path for entry in ordered}) != len(ordered):
        raise ManifestError("a file is listed twice")
    return Manifest(
        service, check_snapshot_id(snapshot_id), kind, created_at, pocketbase_version, ordered
    )
