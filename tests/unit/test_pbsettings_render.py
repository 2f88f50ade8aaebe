"""The spec's ``settings`` in PocketBase's terms (``controllers.pbsettings.render``).

Which keys a spec declares and with what values, which of them PocketBase does not have,
the patch that sends some of them, the keyed fingerprint of the whole, and PocketBase's
refusals read back into the spec's field names. Pure functions, table rows.
"""

from __future__ import annotations

from typing import Any

import pytest

from pockestrator.controllers.pbsettings.render import (
    Setting,
    clean,
    desired_settings,
    differing,
    field_of,
    fingerprint,
    patch_for,
    pocketbase_name,
    refusal,
)
from pockestrator.specs.pocketbase_settings import PocketBaseSettings

URL = "http://app.localhost:8080"
KEY = b"k" * 32

FULL: dict[str, Any] = {
    "app_name": "Shop",
    "app_url": "https://shop.example.com",
    "trusted_proxy": {"headers": ["X-Real-IP"], "use_leftmost_ip": True},
    "rate_limits": {
        "enabled": True,
        "rules": [{"label": "*:auth", "max_requests": 2, "duration": 3, "audience": "@guest"}],
    },
    "smtp": {
        "host": "smtp.example.com",
        "port": 465,
        "username": "shop",
        "password": {"file": "/etc/pockestrator/smtp"},
        "tls": True,
        "auth_method": "LOGIN",
        "local_name": "shop.example.com",
        "sender_name": "Shop",
        "sender_address": "shop@example.com",
    },
    "s3": {
        "bucket": "files",
        "region": "eu-west-1",
        "endpoint": "https://s3.example.com",
        "access_key": "AKIA123",
        "secret": {"credential": "s3-secret"},
        "force_path_style": True,
    },
    "logs": {"max_days": 7, "min_level": -4, "log_ip": False},
    "batch": {"enabled": True, "max_requests": 10, "timeout": 5},
}


def wanted(settings: dict[str, Any]) -> Any:
    return desired_settings(PocketBaseSettings.model_validate(settings), URL)


def test_a_spec_without_settings_declares_the_app_url_and_the_trusted_proxy_only() -> None:
    assert wanted({}).values == (
        Setting("settings.app_url", ("meta", "appURL"), URL),
        Setting("settings.trusted_proxy.headers", ("trustedProxy", "headers"), ["X-Forwarded-For"]),
        Setting("settings.trusted_proxy.use_leftmost_ip", ("trustedProxy", "useLeftmostIP"), False),
    )
    assert wanted({}).secrets == ()


def test_every_declared_field_has_its_pocketbase_key_and_value() -> None:
    keys = {setting.field: (setting.key, setting.value) for setting in wanted(FULL).values}
    assert keys == {
        "settings.app_name": (("meta", "appName"), "Shop"),
        "settings.app_url": (("meta", "appURL"), "https://shop.example.com"),
        "settings.trusted_proxy.headers": (("trustedProxy", "headers"), ["X-Real-IP"]),
        "settings.trusted_proxy.use_leftmost_ip": (("trustedProxy", "useLeftmostIP"), True),
        "settings.rate_limits.enabled": (("rateLimits", "enabled"), True),
        "settings.rate_limits.rules": (
            ("rateLimits", "rules"),
            [{"label": "*:auth", "audience": "@guest", "duration": 3, "maxRequests": 2}],
        ),
        "settings.smtp.enabled": (("smtp", "enabled"), True),
        "settings.smtp.host": (("smtp", "host"), "smtp.example.com"),
        "settings.smtp.port": (("smtp", "port"), 465),
        "settings.smtp.username": (("smtp", "username"), "shop"),
        "settings.smtp.tls": (("smtp", "tls"), True),
        "settings.smtp.auth_method": (("smtp", "authMethod"), "LOGIN"),
        "settings.smtp.local_name": (("smtp", "localName"), "shop.example.com"),
        "settings.smtp.sender_name": (("meta", "senderName"), "Shop"),
        "settings.smtp.sender_address": (("meta", "senderAddress"), "shop@example.com"),
        "settings.s3.enabled": (("s3", "enabled"), True),
        "settings.s3.bucket": (("s3", "bucket"), "files"),
        "settings.s3.region": (("s3", "region"), "eu-west-1"),
        "settings.s3.endpoint": (("s3", "endpoint"), "https://s3.example.com"),
        "settings.s3.access_key": (("s3", "accessKey"), "AKIA123"),
        "settings.s3.force_path_style": (("s3", "forcePathStyle"), True),
        "settings.logs.max_days": (("logs", "maxDays"), 7),
        "settings.logs.min_level": (("logs", "minLevel"), -4),
        "settings.logs.log_ip": (("logs", "logIP"), False),
        "settings.batch.enabled": (("batch", "enabled"), True),
        "settings.batch.max_requests": (("batch", "maxRequests"), 10),
        "settings.batch.timeout": (("batch", "timeout"), 5),
    }
    assert [(s.field, s.key) for s in wanted(FULL).secrets] == [
        ("settings.smtp.password", ("smtp", "password")),
        ("settings.s3.secret", ("s3", "secret")),
    ]


def test_a_section_declares_only_the_fields_it_names() -> None:
    fields = wanted({"logs": {"max_days": 3}, "rate_limits": {"enabled": False}}).fields
    assert fields == (
        "settings.app_url",
        "settings.trusted_proxy.headers",
        "settings.trusted_proxy.use_leftmost_ip",
        "settings.rate_limits.enabled",
        "settings.logs.max_days",
    )


def converged(settings: dict[str, Any]) -> dict[str, Any]:
    """What PocketBase would answer once ``settings`` is applied (and more besides)."""
    answer: dict[str, Any] = {"smtp": {"password": ""}, "extra": {"kept": 1}}
    for setting in wanted(settings).values:
        node = answer
        for part in setting.key[:-1]:
            node = node.setdefault(part, {})
        node[setting.key[-1]] = setting.value
    return answer


DIFFERING: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("nothing", {}, ()),
    ("a value", {"meta": {"appName": "Acme"}}, ("settings.app_name",)),
    ("true for 1", {"batch": {"enabled": 1}}, ("settings.batch.enabled",)),
    ("0 for false", {"logs": {"logIP": 0}}, ("settings.logs.log_ip",)),
    (
        "a key that is missing",
        {"batch": {}},
        tuple(f"settings.batch.{field}" for field in ("enabled", "max_requests", "timeout")),
    ),
    ("a rule's order", {"rateLimits": {"rules": []}}, ("settings.rate_limits.rules",)),
    ("rules that are not a list", {"rateLimits": {"rules": "x"}}, ("settings.rate_limits.rules",)),
    (
        "a rule's audience",
        {
            "rateLimits": {
                "rules": [{"label": "*:auth", "audience": "", "duration": 3, "maxRequests": 2}]
            }
        },
        ("settings.rate_limits.rules",),
    ),
    (
        "a newer PocketBase's own key in a rule is not a difference",
        {
            "rateLimits": {
                "rules": [
                    {
                        "label": "*:auth",
                        "audience": "@guest",
                        "duration": 3,
                        "maxRequests": 2,
                        "burst": 9,
                    }
                ]
            }
        },
        (),
    ),
    (
        "a header list",
        {"trustedProxy": {"headers": ["X-Real-IP", "X"]}},
        ("settings.trusted_proxy.headers",),
    ),
]


@pytest.mark.parametrize(("case", "change", "expected"), DIFFERING, ids=[r[0] for r in DIFFERING])
def test_what_differs_from_the_declared_settings(
    case: str, change: dict[str, Any], expected: tuple[str, ...]
) -> None:
    observed = converged(FULL)
    for section, values in change.items():
        observed[section] = values if not values else {**observed.get(section, {}), **values}
    assert differing(wanted(FULL), observed) == expected


def test_the_whole_patch_holds_every_declared_value_and_secret() -> None:
    secrets = {"settings.smtp.password": "pw", "settings.s3.secret": "sk"}
    desired = wanted(FULL)
    body = patch_for(desired, desired.fields, secrets)
    assert body["meta"] == {
        "appName": "Shop",
        "appURL": "https://shop.example.com",
        "senderName": "Shop",
        "senderAddress": "shop@example.com",
    }
    assert body["smtp"]["password"] == "pw" and body["s3"]["secret"] == "sk"
    assert body["logs"] == {"maxDays": 7, "minLevel": -4, "logIP": False}
    assert "superuserIPs" not in body and "backups" not in body


def test_repairing_a_section_sends_its_secret_with_it_and_no_other() -> None:
    secrets = {"settings.smtp.password": "pw", "settings.s3.secret": "sk"}
    body = patch_for(wanted(FULL), ("settings.smtp.host",), secrets)
    assert body == {"smtp": {"host": "smtp.example.com", "password": "pw"}}
    body = patch_for(wanted(FULL), ("settings.app_name",), secrets)
    assert body == {"meta": {"appName": "Shop"}}


def test_the_fingerprint_changes_with_any_value_or_secret_and_with_the_key() -> None:
    desired = wanted(FULL)
    secrets = {"settings.smtp.password": "pw", "settings.s3.secret": "sk"}
    base = fingerprint(desired, secrets, KEY)
    assert base == fingerprint(wanted(FULL), dict(secrets), KEY)
    assert base != fingerprint(desired, {**secrets, "settings.s3.secret": "sk2"}, KEY)
    assert base != fingerprint(wanted({**FULL, "app_name": "Shop2"}), secrets, KEY)
    assert base != fingerprint(desired, secrets, b"j" * 32)
    assert "pw" not in base and len(base) == 64


FIELDS = [
    (("meta", "appURL"), "settings.app_url"),
    (("meta", "appName"), "settings.app_name"),
    (("meta", "senderAddress"), "settings.smtp.sender_address"),
    (("smtp", "host"), "settings.smtp.host"),
    (("smtp", "password"), "settings.smtp.password"),
    (("s3", "secret"), "settings.s3.secret"),
    (("rateLimits", "rules", "0", "label"), "settings.rate_limits.rules.0.label"),
    (("backups", "cron"), "backups.cron"),
]


@pytest.mark.parametrize(("key", "field"), FIELDS)
def test_pocketbase_keys_are_named_as_the_spec_names_them(key: tuple[str, ...], field: str) -> None:
    assert field_of(key) == field


@pytest.mark.parametrize(
    ("field", "name"),
    [
        ("host", "host"),
        ("auth_method", "authMethod"),
        ("force_path_style", "forcePathStyle"),
        ("use_leftmost_ip", "useLeftmostIP"),
        ("log_ip", "logIP"),
        ("app_url", "appURL"),
        ("trusted_proxy", "trustedProxy"),
    ],
)
def test_a_spec_name_becomes_pocketbases_camel_case_with_its_acronyms_in_capitals(
    field: str, name: str
) -> None:
    assert pocketbase_name(field) == name


def test_a_refusal_names_each_field_pocketbase_refused() -> None:
    answer = {
        "status": 400,
        "message": "An error occurred while saving the new settings.",
        "data": {
            "meta": {"appURL": {"code": "validation_is_url", "message": "Must be a valid URL."}},
            "rateLimits": {"rules": {"1": {"label": {"code": "x", "message": "Bad label."}}}},
        },
    }
    assert refusal(answer) == (
        "settings.app_url: Must be a valid URL.; settings.rate_limits.rules.1.label: Bad label."
    )


def test_a_refusal_without_fields_gives_pocketbases_message_or_says_there_was_none() -> None:
    assert refusal({"message": "Something.", "data": {}}) == "Something."
    assert refusal(["not", "a", "mapping"]) == "no reason given"


def test_what_an_instance_says_reaches_a_status_line_as_one_bounded_line() -> None:
    assert clean("a\nb\x1b[31m\u202ec") == "a b [31m c"
    assert len(clean("x" * 1000)) == 400 and clean("x" * 1000).endswith("...")
    hostile = {"data": {"meta": {"appURL": {"code": "c", "message": "line\r\nInjected: 1"}}}}
    assert "\n" not in refusal(hostile) and "\r" not in refusal(hostile)
