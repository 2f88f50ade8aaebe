"""Secrets the API was given in a spec (the SMTP password, the S3 secret), kept beside the
database in root-only files, never in one of its rows.

A spec written through the API may hold a secret's ``value``. Before its row is written,
``SecretFiles.keep`` puts each value in ``<folder>/<service>/<path>.<tag>`` (0600, in 0700
folders) and replaces it in the spec by ``stored: <tag>``, a random tag naming that
version: the row, the events and every answer of the API carry only the tag. A new value
is a new tag, so the spec changes and the reconciler applies it again. ``read`` takes the
service's name and the secret's place in the settings, never a path from the spec, so no
spec can point at another service's secret. Files no spec refers to any more are removed
(``prune``), and a service's folder goes with its deletion (``forget``).

Neighbours: ``specs.pocketbase_settings`` (``Secret``), ``services`` (which calls these
around each write), the reconciler (which reads the value when it applies the settings).
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

from pockestrator.files import write_atomic
from pockestrator.specs.model import ServiceSpec
from pockestrator.specs.pocketbase_settings import Secret, secret_sources, with_secrets

SECRET_READ_MAX = 64 * 1024


class SecretMissing(Exception):
    """A stored secret the spec names is not there (its folder was removed by hand)."""


class SecretFiles:
    """The root-only folder of secret values, one sub-folder per service."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, name: str, path: str, tag: str) -> Path:
        # ``name`` is a project name and ``path`` one of secret_sources' keys; the tag is
        # 16 hex digits (the spec's type): none of them can hold a '/'.
        return self.folder / name / f"{path}.{tag}"

    def keep(self, spec: ServiceSpec) -> tuple[ServiceSpec, list[Path]]:
        """``spec`` with each secret ``value`` written to a file and replaced by its tag;
        and the files written (for the caller to remove should its write fail)."""
        kept: dict[str, Secret] = {}
        written: list[Path] = []
        for path, secret in secret_sources(spec.settings).items():
            if secret.value is None:
                continue
            tag = secrets.token_hex(8)
            target = self._path(spec.project_name, path, tag)
            for folder in (self.folder, target.parent):
                folder.mkdir(mode=0o700, exist_ok=True)
                folder.chmod(0o700)
            write_atomic(target, secret.value, mode=0o600)
            written.append(target)
            kept[path] = Secret(stored=tag)
        if not kept:
            return spec, written
        settings = with_secrets(spec.settings, kept)
        return spec.model_copy(update={"settings": settings}), written

    def read(self, name: str, path: str, tag: str) -> str:
        """The value stored for ``name``'s secret at ``path`` under ``tag``."""
        target = self._path(name, path, tag)
        try:
            fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise SecretMissing(
                f"the stored value of settings.{path} is missing from {target.parent}; "
                "give it again through the API"
            ) from None
        try:
            return os.read(fd, SECRET_READ_MAX).decode("utf-8")
        finally:
            os.close(fd)

    def prune(self, spec: ServiceSpec) -> None:
        """Remove the files of ``spec``'s service that ``spec`` no longer names."""
        wanted = {
            f"{path}.{secret.stored}"
            for path, secret in secret_sources(spec.settings).items()
            if secret.stored is not None
        }
        folder = self.folder / spec.project_name
        if not folder.is_dir():
            return
        for entry in folder.iterdir():
            if entry.name not in wanted:
                entry.unlink(missing_ok=True)

    def forget(self, name: str) -> None:
        """Remove every secret kept for ``name`` (the service is gone)."""
        shutil.rmtree(self.folder / name, ignore_errors=True)
