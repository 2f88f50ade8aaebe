"""The spec's ``settings`` section: what is accepted, and every refusal's field and code.

Each row names the exact dotted ``field`` and the stable ``code`` an operator gets, since
the API, the CLI and the spec folder show them as they are. Secrets: a spec file names
where one is, the API gives its value, and no shape of the API shows it.
"""

from __future__ import annotations

from typing import Any

import pytest

from pockestrator.api.models.requests import ServiceCreateBody, ServicePatchBody
from pockestrator.api.models.services import Service
from pockestrator.specs.errors import ErrorCode, SpecInvalid
from pockestrator.specs.model import ServiceSpec, parse_spec
from pockestrator.specs.pocketbase_settings import (
    Secret,
    TrustedProxy,
    secret_sources,
    spec_file_secret_issues,
)
from pockestrator.specs.yamldir import parse_spec_file

MINIMAL: dict[str, Any] = {"project_name": "app", "port": 8080, "pocketbase_version": "0.40.6"}
SMTP = {"host": "smtp.example.com"}
S3 = {
    "bucket": "files",
    "region": "us-east-1",
    "endpoint": "https://s3.example.com",
    "access_key": "AKIA1",
    "secret": {"file": "/etc/pockestrator/s3"},
}


def parsed(settings: dict[str, Any]) -> ServiceSpec:
    return parse_spec({**MINIMAL, "settings": settings}, "example.com")


def issues(settings: Any) -> list[tuple[str, ErrorCode]]:
    with pytest.raises(SpecInvalid) as caught:
        parse_spec({**MINIMAL, "settings": settings}, "example.com")
    for issue in caught.value.issues:
        assert issue.message
    return [(issue.field, issue.code) for issue in caught.value.issues]


def test_without_settings_only_the_trusted_proxy_default_is_set() -> None:
    spec = parse_spec(MINIMAL, "example.com")
    assert spec.settings.trusted_proxy == TrustedProxy(headers=("X-Forwarded-For",))
    assert spec.settings.app_url is None and spec.settings.smtp is None
    assert secret_sources(spec.settings) == {}


def test_a_full_section_keeps_every_value() -> None:
    spec = parsed(
        {
            "app_name": "Shop \u2603",
            "app_url": "https://shop.example.com:8443/base",
            "trusted_proxy": {"headers": ["X-Real-IP"], "use_leftmost_ip": True},
            "rate_limits": {
                "enabled": True,
                "rules": [
                    {"label": "*:auth", "max_requests": 2, "duration": 3},
                    {"label": "POST /api/batch", "max_requests": "5", "duration": 1},
                    {
                        "label": "users:create",
                        "max_requests": 1,
                        "duration": 60,
                        "audience": "@guest",
                    },
                ],
            },
            "smtp": {**SMTP, "port": "587", "password": {"file": "/etc/pockestrator/smtp"}},
            "s3": S3,
            "logs": {"max_days": 0, "min_level": "-4", "log_ip": False},
            "batch": {"enabled": True, "max_requests": 50, "timeout": 3},
        }
    )
    settings = spec.settings
    assert settings.app_url == "https://shop.example.com:8443/base"
    assert settings.rate_limits is not None and settings.rate_limits.rules is not None
    assert [rule.max_requests for rule in settings.rate_limits.rules] == [2, 5, 1]
    assert settings.smtp is not None and settings.smtp.port == 587 and settings.smtp.enabled
    assert settings.logs is not None and settings.logs.min_level == -4
    assert set(secret_sources(settings)) == {"smtp.password", "s3.secret"}


REFUSALS: list[tuple[str, Any, list[tuple[str, ErrorCode]]]] = [
    ("empty app name", {"app_name": ""}, [("settings.app_name", ErrorCode.INVALID_APP_NAME)]),
    (
        "app name of two lines",
        {"app_name": "a\nb"},
        [("settings.app_name", ErrorCode.INVALID_APP_NAME)],
    ),
    ("app name not text", {"app_name": 5}, [("settings.app_name", ErrorCode.INVALID_APP_NAME)]),
    ("ftp app URL", {"app_url": "ftp://x.com"}, [("settings.app_url", ErrorCode.INVALID_APP_URL)]),
    (
        "app URL with a query",
        {"app_url": "https://x.com/?a=1"},
        [("settings.app_url", ErrorCode.INVALID_APP_URL)],
    ),
    (
        "app URL with a quote",
        {"app_url": 'https://x.com/"><b>'},
        [("settings.app_url", ErrorCode.INVALID_APP_URL)],
    ),
    (
        "app URL with capitals",
        {"app_url": "https://X.com"},
        [("settings.app_url", ErrorCode.INVALID_APP_URL)],
    ),
    (
        "app URL port 65536",
        {"app_url": "https://x.com:65536"},
        [("settings.app_url", ErrorCode.INVALID_APP_URL)],
    ),
    (
        "app URL port with a leading zero",
        {"app_url": "https://x.com:080"},
        [("settings.app_url", ErrorCode.INVALID_APP_URL)],
    ),
    (
        "a header name with a space",
        {"trusted_proxy": {"headers": ["X Forwarded"]}},
        [("settings.trusted_proxy.headers.0", ErrorCode.INVALID_TRUSTED_PROXY)],
    ),
    (
        "eleven headers",
        {"trusted_proxy": {"headers": ["X-A"] * 11}},
        [("settings.trusted_proxy.headers", ErrorCode.INVALID_TRUSTED_PROXY)],
    ),
    (
        "a rate limit label PocketBase would refuse",
        {"rate_limits": {"rules": [{"label": "a b c", "max_requests": 1, "duration": 1}]}},
        [("settings.rate_limits.rules.0.label", ErrorCode.INVALID_RATE_LIMIT)],
    ),
    (
        "no requests allowed",
        {"rate_limits": {"rules": [{"label": "/api/", "max_requests": 0, "duration": 1}]}},
        [("settings.rate_limits.rules.0.max_requests", ErrorCode.INVALID_RATE_LIMIT)],
    ),
    (
        "a duration of a fraction",
        {"rate_limits": {"rules": [{"label": "/api/", "max_requests": 1, "duration": 1.5}]}},
        [("settings.rate_limits.rules.0.duration", ErrorCode.INVALID_RATE_LIMIT)],
    ),
    (
        "an unknown audience",
        {
            "rate_limits": {
                "rules": [
                    {"label": "/api/", "max_requests": 1, "duration": 1, "audience": "@admins"}
                ]
            }
        },
        [("settings.rate_limits.rules.0.audience", ErrorCode.INVALID_VALUE)],
    ),
    (
        "a label given twice",
        {"rate_limits": {"rules": [{"label": "/api/", "max_requests": 1, "duration": 1}] * 2}},
        [("settings.rate_limits", ErrorCode.INVALID_RATE_LIMIT)],
    ),
    (
        "a label for everyone and again for guests",
        {
            "rate_limits": {
                "rules": [
                    {"label": "/api/", "max_requests": 1, "duration": 1},
                    {"label": "/api/", "max_requests": 1, "duration": 1, "audience": "@guest"},
                ]
            }
        },
        [("settings.rate_limits", ErrorCode.INVALID_RATE_LIMIT)],
    ),
    (
        "an enabled limiter with no rules",
        {"rate_limits": {"enabled": True, "rules": []}},
        [("settings.rate_limits", ErrorCode.INVALID_RATE_LIMIT)],
    ),
    (
        "101 rules",
        {
            "rate_limits": {
                "rules": [{"label": f"t{n}", "max_requests": 1, "duration": 1} for n in range(101)]
            }
        },
        [("settings.rate_limits.rules", ErrorCode.INVALID_RATE_LIMIT)],
    ),
    ("smtp without a host", {"smtp": {"port": 25}}, [("settings.smtp", ErrorCode.INVALID_SMTP)]),
    (
        "an smtp host with a capital",
        {"smtp": {"host": "Smtp.example.com"}},
        [("settings.smtp.host", ErrorCode.INVALID_SMTP)],
    ),
    (
        "smtp port 0",
        {"smtp": {**SMTP, "port": 0}},
        [("settings.smtp.port", ErrorCode.INVALID_SMTP)],
    ),
    (
        "a sender address that is not one",
        {"smtp": {**SMTP, "sender_address": "support"}},
        [("settings.smtp.sender_address", ErrorCode.INVALID_SMTP)],
    ),
    (
        "an unknown auth method",
        {"smtp": {**SMTP, "auth_method": "CRAM-MD5"}},
        [("settings.smtp.auth_method", ErrorCode.INVALID_VALUE)],
    ),
    (
        "a misspelt smtp field",
        {"smtp": {**SMTP, "hostname": "x"}},
        [("settings.smtp.hostname", ErrorCode.UNKNOWN_FIELD)],
    ),
    (
        "s3 with only a bucket",
        {"s3": {"bucket": "files"}},
        [("settings.s3", ErrorCode.INVALID_S3)],
    ),
    (
        "an s3 bucket of capitals",
        {"s3": {**S3, "bucket": "Files"}},
        [("settings.s3.bucket", ErrorCode.INVALID_S3)],
    ),
    (
        "an s3 endpoint that is no URL",
        {"s3": {**S3, "endpoint": "s3.example.com"}},
        [("settings.s3.endpoint", ErrorCode.INVALID_S3)],
    ),
    (
        "an access key with a space",
        {"s3": {**S3, "access_key": "AK IA"}},
        [("settings.s3.access_key", ErrorCode.INVALID_S3)],
    ),
    (
        "logs kept -1 days",
        {"logs": {"max_days": -1}},
        [("settings.logs.max_days", ErrorCode.INVALID_LOGS)],
    ),
    (
        "a log level below debug",
        {"logs": {"min_level": -5}},
        [("settings.logs.min_level", ErrorCode.INVALID_LOGS)],
    ),
    (
        "a log level as a word",
        {"logs": {"min_level": "debug"}},
        [("settings.logs.min_level", ErrorCode.INVALID_LOGS)],
    ),
    (
        "a batch timeout of 0",
        {"batch": {"timeout": 0}},
        [("settings.batch.timeout", ErrorCode.INVALID_BATCH)],
    ),
    (
        "a secret from nowhere",
        {"smtp": {**SMTP, "password": {}}},
        [("settings.smtp.password", ErrorCode.INVALID_SECRET)],
    ),
    (
        "a secret from two places",
        {"smtp": {**SMTP, "password": {"file": "/etc/pw", "credential": "pw"}}},
        [("settings.smtp.password", ErrorCode.INVALID_SECRET)],
    ),
    (
        "a secret file by a relative path",
        {"smtp": {**SMTP, "password": {"file": "etc/pw"}}},
        [("settings.smtp.password.file", ErrorCode.INVALID_SECRET)],
    ),
    (
        "a secret file under /proc",
        {"smtp": {**SMTP, "password": {"file": "/proc/self/environ"}}},
        [("settings.smtp.password.file", ErrorCode.INVALID_SECRET)],
    ),
    (
        "a credential that is a path",
        {"smtp": {**SMTP, "password": {"credential": "../pw"}}},
        [("settings.smtp.password.credential", ErrorCode.INVALID_SECRET)],
    ),
    (
        "a secret value of two lines",
        {"smtp": {**SMTP, "password": {"value": "a\nb"}}},
        [("settings.smtp.password.value", ErrorCode.INVALID_SECRET)],
    ),
    (
        "a stored tag that is not one",
        {"s3": {**S3, "secret": {"stored": "../../x"}}},
        [("settings.s3.secret.stored", ErrorCode.INVALID_SECRET)],
    ),
    ("settings as a list", [], [("settings", ErrorCode.INVALID_TYPE)]),
    (
        "problems in two sections at once",
        {"app_name": "", "logs": {"max_days": "x"}},
        [
            ("settings.app_name", ErrorCode.INVALID_APP_NAME),
            ("settings.logs.max_days", ErrorCode.INVALID_LOGS),
        ],
    ),
]


@pytest.mark.parametrize(("case", "settings", "expected"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_each_refusal_names_its_field_and_its_code(
    case: str, settings: Any, expected: list[tuple[str, ErrorCode]]
) -> None:
    assert issues(settings) == expected


def test_a_new_value_given_over_a_stored_one_replaces_it() -> None:
    secret = Secret.model_validate({"stored": "0123456789abcdef", "value": "new"})
    assert (secret.value, secret.stored) == ("new", None)


def test_a_secret_value_never_shows_in_a_specs_repr() -> None:
    spec = parsed({"smtp": {**SMTP, "password": {"value": "hunter2-secret"}}})
    assert "hunter2-secret" not in repr(spec) and "hunter2-secret" not in str(spec)


def test_a_spec_file_names_where_a_secret_is_never_what_it_is() -> None:
    text = (
        "project_name: app\nport: 8080\npocketbase_version: '0.40.6'\n"
        "settings:\n  smtp:\n    host: smtp.example.com\n    password:\n      value: hunter2\n"
    )
    result = parse_spec_file("/specs/app.yaml", text, "example.com")
    assert result.specs == []
    [issue] = result.issues
    assert (issue.field, issue.code, issue.line) == (
        "settings.smtp.password.value",
        ErrorCode.SECRET_NOT_ALLOWED_HERE,
        8,
    )
    assert "hunter2" not in issue.message
    good = text.replace("value: hunter2", "file: /etc/pockestrator/smtp")
    assert parse_spec_file("/specs/app.yaml", good, "example.com").ok


def test_the_agents_stored_tag_is_refused_in_a_spec_file_too() -> None:
    spec = parsed({"s3": {**S3, "secret": {"stored": "0123456789abcdef"}}})
    [issue] = spec_file_secret_issues(spec.settings, "settings.")
    assert (issue.field, issue.code) == (
        "settings.s3.secret.stored",
        ErrorCode.SECRET_NOT_ALLOWED_HERE,
    )


def _secret_shape(model: type[Any], *path: str) -> set[str]:
    schema = model.model_json_schema()
    definitions = schema["$defs"]
    node = schema
    for part in path:
        prop = node["properties"][part]
        ref = next(item["$ref"] for item in prop.get("anyOf", [prop]) if "$ref" in item)
        node = definitions[ref.split("/")[-1]]
    return set(node["properties"])


def test_the_api_takes_a_secrets_value_only_and_shows_none_of_it() -> None:
    for body in (ServiceCreateBody, ServicePatchBody):
        assert _secret_shape(body, "settings", "smtp", "password") == {"value"}
        assert _secret_shape(body, "settings", "s3", "secret") == {"value"}
    assert _secret_shape(Service, "settings", "smtp", "password") == set()
    assert _secret_shape(Service, "settings", "s3", "secret") == set()
