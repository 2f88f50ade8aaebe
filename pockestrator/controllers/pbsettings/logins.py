"""The agent's own superuser in each instance: its password, kept where only root reads it.

To read and write an instance's settings the agent signs in to PocketBase's API as a
superuser of its own (``AGENT_EMAIL``), one per instance with a password of its own,
made by the agent and created in the instance through the hardened bootstrap of the first
superuser (a transient unit in the instance's box, ``servicedirs.superuser``). The
password lives in ``<folder>/<name>.json`` (0600 in a 0700 folder beside the agent's
database) and nowhere else: never in the store, an event, a log line or an answer of the
API; its ``repr`` hides it. A login the instance refuses (the operator deleted that
superuser or changed its password in the admin UI, or old data came back) is forgotten,
and the agent makes a new one.

The same folder holds the agent's fingerprint key (``key``): random bytes that make the
status's hash of the desired settings (secrets included) reveal nothing without it.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from pockestrator.files import write_atomic
from pockestrator.specs.grammar import check_project_name

# The e-mail of the agent's superuser in every instance: .invalid never delivers mail.
AGENT_EMAIL = "pockestrator-agent@pockestrator.invalid"
PASSWORD_BYTES = 32
KEY_FILE = ".fingerprint.key"
KEY_BYTES = 32
LOGIN_READ_MAX = 4096
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(frozen=True)
class AgentLogin:
    """The agent's superuser in one instance."""

    name: str
    email: str
    password: str = field(repr=False)


def _read(path: Path) -> bytes | None:
    try:
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        return None
    try:
        return os.read(fd, LOGIN_READ_MAX)
    finally:
        os.close(fd)


class AgentLogins:
    """The root-only folder of the agent's logins, one file per instance."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._key: bytes | None = None

    def _ensure_folder(self) -> None:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.folder.chmod(0o700)

    def _path(self, name: str) -> Path:
        return self.folder / f"{check_project_name(name)}.json"

    def load(self, name: str) -> AgentLogin | None:
        """The login the agent made for ``name``, or None (none yet, or unreadable)."""
        raw = _read(self._path(name))
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            return AgentLogin(name, str(data["email"]), str(data["password"]))
        except (ValueError, KeyError, TypeError):
            return None  # a broken file is no login: a new one replaces it

    def new(self, name: str) -> AgentLogin:
        """A fresh login for ``name`` (not saved: ``save`` it once the instance has it)."""
        return AgentLogin(name, AGENT_EMAIL, secrets.token_urlsafe(PASSWORD_BYTES))

    def save(self, login: AgentLogin) -> None:
        self._ensure_folder()
        text = json.dumps({"email": login.email, "password": login.password})
        write_atomic(self._path(login.name), text, mode=0o600)

    def forget(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)

    def key(self) -> bytes:
        """The agent's fingerprint key, made once."""
        if self._key is None:
            path = self.folder / KEY_FILE
            raw = _read(path)
            if raw is None or len(raw) != KEY_BYTES:
                self._ensure_folder()
                raw = secrets.token_bytes(KEY_BYTES)
                write_atomic(path, raw, mode=0o600)
            self._key = raw
        return self._key
