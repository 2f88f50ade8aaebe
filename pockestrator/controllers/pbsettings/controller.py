"""``InstanceSettings``: observe and apply one instance's PocketBase settings.

``observe`` signs in as the agent's superuser (a token is kept in memory per instance and
renewed when PocketBase refuses it) and reads ``/api/settings``; no login, or one the
instance refuses, is observed as "not signed in", and ``create_login`` makes a new one
through the first superuser's hardened bootstrap (``ServiceDirs.ensure_superuser``).
``apply`` sends a patch and reads the settings back, which the caller compares with what
it wanted. ``secret_values`` reads each declared secret from where the spec says it is:
a root-only file, a credential of the agent's unit (``$CREDENTIALS_DIRECTORY``), or the
store's root-only copy of a value given through the API. Values are returned to the caller
only, for the patch and the fingerprint; an error names the field, never the value.

What to send is decided elsewhere (``render``, ``agent.plan.plan_settings``).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pockestrator.config import AgentConfig
from pockestrator.controllers.pbsettings import render
from pockestrator.controllers.pbsettings.client import (
    LoginRefused,
    PocketBaseApi,
    SettingsError,
    TokenRefused,
)
from pockestrator.controllers.pbsettings.logins import AgentLogin, AgentLogins
from pockestrator.controllers.pbsettings.render import DesiredSettings
from pockestrator.controllers.servicedirs import ServiceDirs
from pockestrator.controllers.servicedirs.errors import ServiceDirError
from pockestrator.controllers.servicedirs.superuser import read_password_file
from pockestrator.specs.model import ServiceSpec
from pockestrator.specs.store import SecretMissing

LOGINS_FOLDER = "pocketbase-logins"
CALL_TIMEOUT = 10.0
CREDENTIALS_VARIABLE = "CREDENTIALS_DIRECTORY"

ReadStored = Callable[[str, str, str], str]
Answer = TypeVar("Answer")


@dataclass(frozen=True)
class SettingsObservation:
    """What the agent sees of an instance's settings: whether it could sign in, and the
    settings PocketBase answered (without its secrets)."""

    signed_in: bool
    values: Mapping[str, Any] = field(default_factory=dict)


class InstanceSettings:
    """The settings of every instance on this host, through PocketBase's own API."""

    def __init__(self, config: AgentConfig, api: PocketBaseApi, dirs: ServiceDirs) -> None:
        self.logins = AgentLogins(config.database.parent / LOGINS_FOLDER)
        self.api = api
        self.dirs = dirs
        self._tokens: dict[str, str] = {}

    async def _signed_in(
        self, spec: ServiceSpec, login: AgentLogin, call: Callable[[str], Awaitable[Answer]]
    ) -> Answer:
        """``call(token)``, signing in first when there is no token or it was refused."""
        name, port = spec.project_name, spec.port
        token = self._tokens.get(name)
        if token is not None:
            try:
                return await call(token)
            except TokenRefused:
                self._tokens.pop(name, None)
        token = await self.api.sign_in(port, login)
        self._tokens[name] = token
        try:
            return await call(token)
        except TokenRefused as exc:
            raise LoginRefused(f"PocketBase refused the agent's fresh token: {exc}") from None

    async def observe(self, spec: ServiceSpec) -> SettingsObservation:
        """The instance's settings as the agent's superuser reads them."""
        login = self.logins.load(spec.project_name)
        if login is None:
            return SettingsObservation(signed_in=False)
        try:
            values = await self._signed_in(
                spec, login, lambda token: self.api.read(spec.port, token)
            )
        except LoginRefused:
            self._tokens.pop(spec.project_name, None)
            return SettingsObservation(signed_in=False)
        return SettingsObservation(signed_in=True, values=values)

    async def create_login(self, spec: ServiceSpec) -> None:
        """Make the agent's superuser in the instance (or give it a new password)."""
        login = self.logins.new(spec.project_name)
        await self.dirs.ensure_superuser(spec, login.email, login.password)
        self.logins.save(login)
        self._tokens.pop(spec.project_name, None)

    async def apply(self, spec: ServiceSpec, patch: Mapping[str, Any]) -> dict[str, Any]:
        """Send ``patch``; the settings read back afterwards."""
        login = self.logins.load(spec.project_name)
        if login is None:
            raise LoginRefused("the agent has no superuser in this instance")
        await self._signed_in(spec, login, lambda token: self.api.update(spec.port, token, patch))
        return await self._signed_in(spec, login, lambda token: self.api.read(spec.port, token))

    def secret_values(
        self, name: str, desired: DesiredSettings, read_stored: ReadStored
    ) -> dict[str, str]:
        """Each declared secret's value, by field; SettingsError names one that cannot be
        read (never what it holds)."""
        values = {}
        for secret in desired.secrets:
            source = secret.source
            try:
                if source.file is not None:
                    values[secret.field] = read_password_file(Path(source.file))
                elif source.credential is not None:
                    values[secret.field] = read_password_file(_credential(source.credential))
                elif source.stored is not None:
                    values[secret.field] = read_stored(
                        name, secret.field.removeprefix("settings."), source.stored
                    )
                else:
                    raise SettingsError("no value was kept for it")
            except UnicodeDecodeError:
                raise SettingsError(f"{secret.field}: the value is not UTF-8 text") from None
            except (ServiceDirError, SettingsError, SecretMissing, OSError) as exc:
                # Their messages name the file and what is wrong with it, never its content.
                raise SettingsError(f"{secret.field}: {exc}") from None
        return values

    def fingerprint(self, desired: DesiredSettings, secret_values: Mapping[str, str]) -> str:
        return render.fingerprint(desired, secret_values, self.logins.key())

    def forget(self, name: str) -> None:
        """The service is gone: its login and token go too."""
        self.logins.forget(name)
        self._tokens.pop(name, None)


def _credential(name: str) -> Path:
    folder = os.environ.get(CREDENTIALS_VARIABLE)
    if not folder:
        raise SettingsError(
            f"credential {name!r}: the agent has no credentials ({CREDENTIALS_VARIABLE} is "
            f"not set; give its unit LoadCredential={name}:/path/to/file)"
        )
    return Path(folder) / name
