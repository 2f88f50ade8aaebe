"""PocketBase's own settings, as the spec's ``settings`` declares them, through its API.

- ``render``: pure; the declared settings in PocketBase's keys, what differs, the patch,
  the keyed fingerprint of the desired state, PocketBase's refusals in the spec's words;
- ``client``: the HTTP calls to an instance (sign in, read, update), bounded and timed;
- ``logins``: the agent's own superuser per instance, in root-only files;
- ``controller``: ``InstanceSettings``, observe and apply, and the secrets' values.

The decision (is it due, what to send, is it drift) is ``agent.plan.plan_settings``.
"""

from pockestrator.controllers.pbsettings.client import (
    LoginRefused,
    PocketBaseApi,
    SettingsError,
    SettingsRefused,
    SettingsUnavailable,
)
from pockestrator.controllers.pbsettings.controller import InstanceSettings, SettingsObservation
from pockestrator.controllers.pbsettings.logins import AGENT_EMAIL, AgentLogin, AgentLogins
from pockestrator.controllers.pbsettings.render import (
    DesiredSettings,
    SecretSetting,
    Setting,
    desired_settings,
    differing,
    patch_for,
)

__all__ = [
    "AGENT_EMAIL",
    "AgentLogin",
    "AgentLogins",
    "DesiredSettings",
    "InstanceSettings",
    "LoginRefused",
    "PocketBaseApi",
    "SecretSetting",
    "Setting",
    "SettingsError",
    "SettingsObservation",
    "SettingsRefused",
    "SettingsUnavailable",
    "desired_settings",
    "differing",
    "patch_for",
]
