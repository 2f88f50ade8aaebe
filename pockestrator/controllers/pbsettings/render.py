"""The spec's ``settings`` in PocketBase's terms, and how they compare with what it has.

``desired_settings`` is pure: from the spec's ``settings`` (and the service's public URL,
the default ``app_url``) it lists every *declared* setting as a ``Setting``: the spec's
field (``settings.smtp.host``, what events and errors name), PocketBase's key
(``smtp.host`` in ``/api/settings``) and the value. Undeclared fields are not listed, so
they are never sent and never compared: what the spec does not say stays PocketBase's, or
the operator's in the admin UI. Secrets are listed apart (``SecretSetting``), by where
they come from, since PocketBase never shows them: they are sent, never compared.

``differing`` names the settings whose observed value is not the desired one;
``patch_for`` builds the body of ``PATCH /api/settings`` for some of them (with the
secrets of their sections, so that repairing a section never leaves its password behind);
``fingerprint`` is a keyed hash of everything desired, secrets included, which the status
keeps to tell a change of the spec (apply it) from a change made by hand (drift), and
which reveals nothing of the secrets without the agent's key. ``refusal`` reads
PocketBase's 400 answer back into the spec's field names.

Neighbours: ``client`` (the HTTP calls), ``controller`` (observe and apply),
``agent.plan.plan_settings`` (the decision).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pockestrator.specs.grammar import has_bidi_controls, has_control_characters
from pockestrator.specs.pocketbase_settings import PocketBaseSettings, Secret

REFUSAL_MAX = 400

# The smtp fields PocketBase keeps in its ``meta`` section.
_SENDER = ("sender_name", "sender_address")
# The spec's plain fields under ``settings``, section by section (rate limit rules are
# written out by ``_rules``); PocketBase's key for each is ``_key``'s.
_SECTIONS: dict[str, tuple[str, ...]] = {
    "trusted_proxy": ("headers", "use_leftmost_ip"),
    "rate_limits": ("enabled", "rules"),
    "smtp": ("enabled", "host", "port", "username", "tls", "auth_method", "local_name", *_SENDER),
    "s3": ("enabled", "bucket", "region", "endpoint", "access_key", "force_path_style"),
    "logs": ("max_days", "min_level", "log_ip"),
    "batch": ("enabled", "max_requests", "timeout"),
}
_SECRETS: dict[str, str] = {"smtp": "password", "s3": "secret"}
# The fields PocketBase keeps in another section than the spec's.
_ELSEWHERE = {f"smtp.{field}": "meta" for field in _SENDER}
# The words PocketBase writes in capitals inside its camelCase names.
_ACRONYMS = frozenset({"ip", "url"})
_RULE_FIELDS = ("label", "audience", "duration", "max_requests")


def pocketbase_name(field: str) -> str:
    """PocketBase's camelCase for a spec's snake_case name: ``use_leftmost_ip`` ->
    ``useLeftmostIP``."""
    first, *rest = field.split("_")
    return first + "".join(word.upper() if word in _ACRONYMS else word.title() for word in rest)


def _key(section: str, field: str) -> tuple[str, str]:
    """PocketBase's key for ``settings.<section>.<field>``: ``smtp.auth_method`` ->
    ``smtp.authMethod``, ``smtp.sender_name`` -> ``meta.senderName``."""
    where = _ELSEWHERE.get(f"{section}.{field}") or pocketbase_name(section)
    return (where, pocketbase_name(field))


_RULE_KEYS = tuple(pocketbase_name(field) for field in _RULE_FIELDS)
_MISSING = object()


@dataclass(frozen=True)
class _Declared:
    """What a setting and a secret both are: the spec's field and PocketBase's key."""

    field: str
    key: tuple[str, ...]

    @property
    def section(self) -> str:
        return self.field.split(".")[1]


@dataclass(frozen=True)
class Setting(_Declared):
    """One declared setting: the spec's field, PocketBase's key, the value (JSON)."""

    value: Any


@dataclass(frozen=True)
class SecretSetting(_Declared):
    """A declared secret: where it goes and where its value comes from."""

    source: Secret


@dataclass(frozen=True)
class DesiredSettings:
    """Everything the spec declares for PocketBase, defaults included."""

    values: tuple[Setting, ...]
    secrets: tuple[SecretSetting, ...] = ()

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(setting.field for setting in self.values) + tuple(
            secret.field for secret in self.secrets
        )


def _rules(rules: Sequence[Any]) -> list[dict[str, Any]]:
    return [
        {key: getattr(rule, field) for field, key in zip(_RULE_FIELDS, _RULE_KEYS, strict=True)}
        for rule in rules
    ]


def _json(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    return value


def desired_settings(settings: PocketBaseSettings, app_url: str) -> DesiredSettings:
    """The declared settings of a spec; ``app_url`` is the default ``settings.app_url``."""
    values = [
        Setting("settings.app_url", ("meta", "appURL"), settings.app_url or app_url),
    ]
    if settings.app_name is not None:
        values.insert(0, Setting("settings.app_name", ("meta", "appName"), settings.app_name))
    secrets = []
    for section, fields in _SECTIONS.items():
        model = getattr(settings, section)
        if model is None:
            continue
        for field in fields:
            value = getattr(model, field)
            if value is None:
                continue
            value = _rules(value) if field == "rules" else _json(value)
            values.append(Setting(f"settings.{section}.{field}", _key(section, field), value))
        if section in _SECRETS:
            field = _SECRETS[section]
            source = getattr(model, field)
            if source is not None:
                key = _key(section, field)
                secrets.append(SecretSetting(f"settings.{section}.{field}", key, source))
    return DesiredSettings(tuple(values), tuple(secrets))


def _observed_at(observed: Mapping[str, Any], key: tuple[str, ...]) -> Any:
    value: Any = observed
    for part in key:
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _same(setting: Setting, observed: Any) -> bool:
    if setting.key == ("rateLimits", "rules"):
        # Compare the keys we set; a newer PocketBase may add its own to each rule.
        if not isinstance(observed, list) or not all(isinstance(r, Mapping) for r in observed):
            return False
        kept = [{key: rule.get(key) for key in _RULE_KEYS} for rule in observed]
        return bool(kept == setting.value)
    if isinstance(setting.value, bool) or isinstance(observed, bool):
        return observed is setting.value
    return bool(observed == setting.value)


def differing(desired: DesiredSettings, observed: Mapping[str, Any]) -> tuple[str, ...]:
    """The fields of ``desired`` whose value PocketBase does not have (secrets aside)."""
    return tuple(
        setting.field
        for setting in desired.values
        if not _same(setting, _observed_at(observed, setting.key))
    )


def patch_for(
    desired: DesiredSettings, fields: Sequence[str] | None, secret_values: Mapping[str, str]
) -> dict[str, Any]:
    """The body of ``PATCH /api/settings`` for ``fields`` (None: every declared setting).

    The secrets of each section that is written go with it (PocketBase keeps a secret it
    is not sent, but one changed by hand cannot be seen, so a repair sends it again).
    """
    chosen = [s for s in desired.values if fields is None or s.field in fields]
    sections = {setting.section for setting in chosen}
    body: dict[str, Any] = {}
    for setting in chosen:
        _put(body, setting.key, setting.value)
    for secret in desired.secrets:
        if fields is None or secret.field in fields or secret.section in sections:
            _put(body, secret.key, secret_values[secret.field])
    return body


def _put(body: dict[str, Any], key: tuple[str, ...], value: Any) -> None:
    for part in key[:-1]:
        body = body.setdefault(part, {})
    body[key[-1]] = value


def fingerprint(desired: DesiredSettings, secret_values: Mapping[str, str], key: bytes) -> str:
    """A keyed hash (HMAC-SHA256) of every desired setting and secret value."""
    payload = json.dumps(
        {
            "values": [[setting.field, setting.value] for setting in desired.values],
            "secrets": {field: secret_values[field] for field in sorted(secret_values)},
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()


def field_of(key: Sequence[str]) -> str:
    """The spec's field for one of PocketBase's keys (``meta.appURL`` -> ``settings.app_url``);
    PocketBase's own dotted key when no declared field matches it."""
    key = tuple(str(part) for part in key)
    if key[:2] == ("meta", "appURL"):
        return "settings.app_url"
    if key[:2] == ("meta", "appName"):
        return "settings.app_name"
    for section, fields in (*_SECTIONS.items(), *((s, (f,)) for s, f in _SECRETS.items())):
        for field in fields:
            pb_key = _key(section, field)
            if key[: len(pb_key)] == pb_key:
                rest = ".".join(key[len(pb_key) :])
                return f"settings.{section}.{field}" + (f".{rest}" if rest else "")
    return ".".join(key)


def clean(text: str, limit: int = REFUSAL_MAX) -> str:
    """An instance's words made safe for a status line: one line, printable, bounded."""
    kept = "".join(
        " " if has_control_characters(char) or has_bidi_controls(char) else char for char in text
    )
    return kept if len(kept) <= limit else kept[: limit - 3] + "..."


def refusal(answer: Any) -> str:
    """PocketBase's 400 answer to a PATCH, as "field: message" for each field it names."""
    problems: list[str] = []

    def walk(node: Any, path: tuple[str, ...]) -> None:
        if len(problems) >= 10 or not isinstance(node, Mapping):
            return
        if isinstance(node.get("message"), str) and "code" in node:
            problems.append(f"{field_of(path)}: {node['message']}")
            return
        for key, child in node.items():
            walk(child, (*path, str(key)))

    if isinstance(answer, Mapping):
        walk(answer.get("data"), ())
        if not problems and isinstance(answer.get("message"), str):
            problems.append(answer["message"])
    return clean("; ".join(problems) or "no reason given")
