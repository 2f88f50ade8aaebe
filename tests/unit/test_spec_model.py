"""``parse_spec`` and ``ServiceSpec``: untrusted mappings in, a spec or every problem out.

Each test checks the exact ``field`` and ``code`` of every issue, since API clients and
scripts match on them. The grammars themselves are tried value by value in
``test_spec_grammar.py``; here the question is how a whole document is read: defaults, the
derived domain, wrong types, unknown and misspelt fields, nested paths, several problems at
once, and that nothing but ``SpecInvalid`` ever escapes, whatever the input. The last
group keeps ``docs/spec-reference.md`` honest: its YAML examples must parse and it must
name every field and code.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pockestrator.config import AgentConfig
from pockestrator.specs.errors import ErrorCode, FieldIssue, SpecInvalid
from pockestrator.specs.model import ServiceSpec, parse_spec, unit_name
from pockestrator.specs.pocketbase_settings import (
    S3,
    Batch,
    Logs,
    PocketBaseSettings,
    RateLimitRule,
    RateLimits,
    Secret,
    Smtp,
    TrustedProxy,
)
from pockestrator.specs.service_parts import (
    PlacementOptions,
    PocketBaseFlags,
    ProxyOptions,
    Resources,
    TlsOptions,
    flag_name,
)
from tests.examples import examples, health_checks

DEFAULT_DOMAIN = "example.test"
MINIMAL: dict[str, Any] = {"project_name": "app", "port": 8080, "pocketbase_version": "0.29.0"}
REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "spec-reference.md"
SETTINGS_SECTIONS = (
    PocketBaseSettings,
    TrustedProxy,
    RateLimits,
    RateLimitRule,
    Smtp,
    S3,
    Logs,
    Batch,
    Secret,
)


def spec_with(**changes: Any) -> dict[str, Any]:
    """The minimal valid spec with ``changes`` applied."""
    return {**MINIMAL, **changes}


def parsed(data: Any, default_domain: str = DEFAULT_DOMAIN) -> ServiceSpec:
    return parse_spec(data, default_domain)


def issues_of(data: Any, default_domain: str = DEFAULT_DOMAIN) -> list[tuple[str, ErrorCode]]:
    """``(field, code)`` of every issue ``parse_spec`` reports (the test fails if it accepts)."""
    with pytest.raises(SpecInvalid) as caught:
        parse_spec(data, default_domain)
    for issue in caught.value.issues:
        assert isinstance(issue.code, ErrorCode)
        assert issue.message, f"{issue.field} has no message"
    return [(issue.field, issue.code) for issue in caught.value.issues]


def only_issue(data: Any) -> tuple[str, ErrorCode]:
    issues = issues_of(data)
    assert len(issues) == 1, issues
    return issues[0]


# --- a valid spec -----------------------------------------------------------------------------


class TestAValidSpec:
    def test_a_minimal_spec_gets_every_default(self) -> None:
        spec = parsed(MINIMAL)
        assert spec.project_name == "app"
        assert spec.port == 8080
        assert spec.pocketbase_version == "0.29.0"
        assert spec.domain == "app.example.test"
        assert spec.description == ""
        assert spec.created_by == ""
        assert spec.superuser_email is None
        assert spec.superuser_password_file is None
        assert spec.desired_state == "running"
        assert spec.env == {}
        assert spec.resources == Resources()
        assert spec.resources.memory_max is None and spec.resources.cpu_quota is None
        assert spec.flags == PocketBaseFlags()
        assert spec.flags.as_arguments() == []
        assert spec.extra_dirs == ()

    def test_a_full_spec_keeps_every_value(self) -> None:
        spec = parsed(
            {
                "project_name": "shop",
                "port": 8090,
                "pocketbase_version": "0.23.0-rc12",
                "domain": "Shop.Example.COM",
                "description": "The shop backend \u2603",
                "superuser_email": "admin@example.com",
                "superuser_password_file": "/run/secrets/shop-admin",
                "created_by": "ops@example.com",
                "desired_state": "stopped",
                "env": {"GOMEMLIMIT": "400MiB", "GOMAXPROCS": 2},
                "resources": {"memory_max": "512M", "cpu_quota": "50%"},
                "flags": {"origins": ["https://shop.example.com"], "dev": False},
                "extra_dirs": ["pb_public", "pb_hooks"],
            }
        )
        assert spec.domain == "shop.example.com"
        assert spec.pocketbase_version == "0.23.0-rc12"
        assert spec.superuser_email == "admin@example.com"
        assert spec.superuser_password_file == "/run/secrets/shop-admin"
        assert spec.desired_state == "stopped"
        assert spec.env == {"GOMEMLIMIT": "400MiB", "GOMAXPROCS": "2"}
        assert spec.resources == Resources(memory_max="512M", cpu_quota="50%")
        assert spec.flags.origins == ("https://shop.example.com",)
        assert spec.extra_dirs == ("pb_hooks", "pb_public")

    def test_the_unit_is_named_after_the_project(self) -> None:
        assert parsed(MINIMAL).unit_name == "app-pocketbase.service"
        assert unit_name("my-app") == "my-app-pocketbase.service"

    def test_a_spec_cannot_be_changed_after_parsing(self) -> None:
        spec = parsed(MINIMAL)
        with pytest.raises(ValidationError):
            spec.port = 9000  # type: ignore[misc]

    def test_a_port_given_as_digits_becomes_a_number(self) -> None:
        assert parsed(spec_with(port="8080")).port == 8080

    @pytest.mark.parametrize("port", [1024, 65535])
    def test_the_ends_of_the_port_range_are_allowed(self, port: int) -> None:
        assert parsed(spec_with(port=port)).port == port

    def test_extra_dirs_are_deduplicated_and_sorted(self) -> None:
        spec = parsed(spec_with(extra_dirs=["pb_public", "pb_hooks", "pb_public"]))
        assert spec.extra_dirs == ("pb_hooks", "pb_public")

    def test_a_dumped_spec_parses_back_to_the_same_spec(self) -> None:
        spec = parsed(
            spec_with(
                env={"A": "1"},
                flags={"origins": ["*"], "query_timeout": 30},
                resources={"memory_max": "1G"},
                extra_dirs=["pb_migrations"],
            )
        )
        assert parsed(spec.model_dump(mode="json")) == spec
        assert ServiceSpec.model_validate_json(spec.model_dump_json()) == spec


class TestTheDefaultDomain:
    @pytest.mark.parametrize("omitted", [{}, {"domain": None}, {"domain": ""}])
    def test_an_omitted_domain_is_the_name_under_the_default_domain(
        self, omitted: dict[str, Any]
    ) -> None:
        assert parsed({**MINIMAL, **omitted}).domain == "app.example.test"

    def test_the_default_domain_is_normalised_like_any_domain(self) -> None:
        assert parsed(MINIMAL, default_domain="Example.TEST.").domain == "app.example.test"

    def test_a_given_domain_wins_over_the_default(self) -> None:
        assert parsed(spec_with(domain="api.shop.example")).domain == "api.shop.example"

    def test_a_bad_name_is_reported_alone_without_a_derived_domain_issue(self) -> None:
        assert issues_of(spec_with(project_name="Bad Name")) == [
            ("project_name", ErrorCode.INVALID_CHARACTERS)
        ]

    def test_a_missing_name_is_reported_alone_without_a_missing_domain(self) -> None:
        data = {"port": 8080, "pocketbase_version": "0.29.0"}
        assert issues_of(data) == [("project_name", ErrorCode.FIELD_REQUIRED)]

    def test_a_bad_given_domain_is_reported_on_domain(self) -> None:
        assert only_issue(spec_with(domain="{evil}.com")) == ("domain", ErrorCode.INVALID_DOMAIN)

    @pytest.mark.parametrize(
        ("default_domain", "code"),
        [
            pytest.param(".".join(["d" * 60] * 17), ErrorCode.DOMAIN_TOO_LONG, id="too-long"),
            pytest.param("bad domain", ErrorCode.INVALID_DOMAIN, id="invalid"),
        ],
    )
    def test_a_derived_domain_that_is_invalid_is_reported_on_domain(
        self, default_domain: str, code: ErrorCode
    ) -> None:
        assert issues_of(MINIMAL, default_domain=default_domain) == [("domain", code)]

    def test_the_derived_domain_issue_names_default_domain_and_comes_with_the_others(
        self,
    ) -> None:
        with pytest.raises(SpecInvalid) as caught:
            parsed(spec_with(port=80, domain=None), default_domain="bad domain")
        issues = {issue.field: issue for issue in caught.value.issues}
        assert set(issues) == {"port", "domain"}
        assert issues["domain"].code is ErrorCode.INVALID_DOMAIN
        assert "default_domain" in issues["domain"].message
        assert "'app.bad domain'" in issues["domain"].message

    def test_a_derived_domain_is_quoted_short_and_on_one_line_in_its_message(self) -> None:
        with pytest.raises(SpecInvalid) as caught:
            parsed(MINIMAL, default_domain="x\n" + "d" * 2000)
        [issue] = caught.value.issues
        assert "\n" not in issue.message
        assert len(issue.message) < 400


class TestTheAgentsDefaultDomain:
    @pytest.mark.parametrize(
        ("configured", "stored"),
        [
            ("localhost", "localhost"),
            ("Example.COM.", "example.com"),
            ("b\u00fccher.example", "xn--bcher-kva.example"),
        ],
    )
    def test_a_default_domain_is_stored_normalised(self, configured: str, stored: str) -> None:
        assert AgentConfig(default_domain=configured).default_domain == stored

    def test_every_name_fits_under_the_longest_allowed_default_domain(self) -> None:
        longest = ".".join(["d" * 50] * 3 + ["d" * 49])
        assert len(longest) == 202
        config = AgentConfig(default_domain=longest)
        assert len(parsed(spec_with(project_name="a" * 50), config.default_domain).domain) == 253

    @pytest.mark.parametrize(
        ("configured", "words"),
        [
            ("", "empty"),
            (".", "empty"),
            ("bad domain", "spaces"),
            ("{$HOST}", "not a valid hostname"),
            (".example.com", "empty label"),
            (".".join(["d" * 50] * 4), "at most 202"),
            ("d" * 2000, "253"),
        ],
        ids=["empty", "dot", "space", "placeholder", "leading-dot", "203", "2000"],
    )
    def test_the_agent_refuses_a_default_domain_that_cannot_make_hostnames(
        self, configured: str, words: str
    ) -> None:
        with pytest.raises(ValidationError) as caught:
            AgentConfig(default_domain=configured)
        [error] = caught.value.errors()
        assert error["loc"] == ("default_domain",)
        assert words in error["msg"]


# --- the shape of the document ----------------------------------------------------------------


class TestTheShapeOfTheDocument:
    @pytest.mark.parametrize(
        "document",
        [None, [], [MINIMAL], "project_name: app", 8080, True, 1.5],
        ids=["null", "empty-list", "list-of-specs", "text", "number", "boolean", "float"],
    )
    def test_a_document_that_is_not_a_mapping_is_refused_as_a_whole(self, document: Any) -> None:
        assert issues_of(document) == [("<spec>", ErrorCode.NOT_A_MAPPING)]

    @pytest.mark.parametrize(
        "field", ["project_name", "port", "pocketbase_version"], ids=lambda name: name
    )
    def test_each_required_field_is_reported_when_missing(self, field: str) -> None:
        data = {key: value for key, value in MINIMAL.items() if key != field}
        assert issues_of(data) == [(field, ErrorCode.FIELD_REQUIRED)]

    def test_an_empty_mapping_reports_every_required_field(self) -> None:
        assert sorted(issues_of({})) == [
            ("pocketbase_version", ErrorCode.FIELD_REQUIRED),
            ("port", ErrorCode.FIELD_REQUIRED),
            ("project_name", ErrorCode.FIELD_REQUIRED),
        ]

    def test_an_unknown_field_is_named_in_its_issue(self) -> None:
        with pytest.raises(SpecInvalid) as caught:
            parsed(spec_with(replicas=3))
        [issue] = caught.value.issues
        assert (issue.field, issue.code) == ("replicas", ErrorCode.UNKNOWN_FIELD)
        assert "replicas" in issue.message

    @pytest.mark.parametrize(
        "misspelt",
        [
            pytest.param("project_name ", id="trailing-space"),
            pytest.param("Project_Name", id="capitals"),
            pytest.param("project-name", id="hyphen"),
            pytest.param("projectName", id="camel-case"),
            pytest.param("pr\u043eject_name", id="cyrillic-o"),
            pytest.param("project_name\n", id="newline"),
        ],
    )
    def test_a_misspelt_field_is_unknown_and_the_real_one_is_missing(self, misspelt: str) -> None:
        data = {misspelt: "app", "port": 8080, "pocketbase_version": "0.29.0"}
        assert sorted(issues_of(data)) == sorted(
            [(misspelt, ErrorCode.UNKNOWN_FIELD), ("project_name", ErrorCode.FIELD_REQUIRED)]
        )

    def test_a_key_that_is_not_text_is_a_wrong_type(self) -> None:
        assert issues_of({**MINIMAL, 1: "x"}) == [("1", ErrorCode.INVALID_TYPE)]

    def test_every_problem_of_a_document_is_reported_at_once(self) -> None:
        data = {
            "project_name": "Admin!",
            "port": 80,
            "pocketbase_version": "latest",
            "domain": "a b.com",
            "env": {"bad-name": "x", "GOOD": "line\nbreak"},
            "resources": {"memory_max": "lots", "cpu_quota": "all"},
            "flags": {"http": "0.0.0.0:80", "origins": ["*", "evil"]},
            "superuser_email": "nobody",
            "superuser_password_file": "relative/path",
            "description": "two\nlines",
            "desired_state": "paused",
            "extra_dirs": ["pb_data"],
            "replicas": 3,
        }
        assert sorted(issues_of(data)) == sorted(
            [
                ("project_name", ErrorCode.INVALID_CHARACTERS),
                ("port", ErrorCode.PORT_OUT_OF_RANGE),
                ("pocketbase_version", ErrorCode.INVALID_VERSION),
                ("domain", ErrorCode.INVALID_DOMAIN),
                ("env.bad-name", ErrorCode.INVALID_ENV_NAME),
                ("env.GOOD", ErrorCode.INVALID_ENV_VALUE),
                ("resources.memory_max", ErrorCode.INVALID_MEMORY_LIMIT),
                ("resources.cpu_quota", ErrorCode.INVALID_CPU_QUOTA),
                ("flags.http", ErrorCode.FLAG_NOT_ALLOWED),
                ("flags.origins.1", ErrorCode.INVALID_FLAG_VALUE),
                ("superuser_email", ErrorCode.INVALID_EMAIL),
                ("superuser_password_file", ErrorCode.INVALID_PATH),
                ("description", ErrorCode.INVALID_CHARACTERS),
                ("desired_state", ErrorCode.INVALID_VALUE),
                ("extra_dirs.0", ErrorCode.INVALID_VALUE),
                ("replicas", ErrorCode.UNKNOWN_FIELD),
            ]
        )


# --- project_name, port, pocketbase_version, domain through the model -------------------------


class TestProjectNameField:
    @pytest.mark.parametrize(
        ("name", "code"),
        [
            ("", ErrorCode.FIELD_REQUIRED),
            ("a" * 51, ErrorCode.NAME_TOO_LONG),
            ("../etc", ErrorCode.INVALID_CHARACTERS),
            ("app\nx", ErrorCode.INVALID_CHARACTERS),
            ("\u0430pp", ErrorCode.INVALID_CHARACTERS),
            ("1app", ErrorCode.NAME_MUST_START_WITH_LETTER),
            ("app-", ErrorCode.NAME_ENDS_WITH_HYPHEN),
            ("pockestrator", ErrorCode.RESERVED_NAME),
        ],
        ids=["empty", "long", "traversal", "newline", "cyrillic", "digit", "hyphen", "reserved"],
    )
    def test_each_name_rule_is_reported_on_project_name_with_its_code(
        self, name: str, code: ErrorCode
    ) -> None:
        assert only_issue(spec_with(project_name=name)) == ("project_name", code)

    @pytest.mark.parametrize("value", [5, True, ["app"], {"name": "app"}, 1.5], ids=repr)
    def test_a_name_that_is_not_text_is_a_wrong_type(self, value: Any) -> None:
        assert only_issue(spec_with(project_name=value)) == ("project_name", ErrorCode.INVALID_TYPE)

    def test_a_null_name_is_a_missing_name(self) -> None:
        assert only_issue(spec_with(project_name=None)) == (
            "project_name",
            ErrorCode.FIELD_REQUIRED,
        )

    def test_a_name_written_as_yaml_null_is_a_missing_name(self) -> None:
        document = yaml.safe_load("project_name:\nport: 8080\npocketbase_version: 0.29.0\n")
        assert only_issue(document) == ("project_name", ErrorCode.FIELD_REQUIRED)


class TestPortField:
    @pytest.mark.parametrize("port", [1023, 0, -1, 65536, 99999, 10**30], ids=repr)
    def test_a_port_outside_1024_to_65535_is_out_of_range(self, port: int) -> None:
        assert only_issue(spec_with(port=port)) == ("port", ErrorCode.PORT_OUT_OF_RANGE)

    @pytest.mark.parametrize(
        "port",
        [
            pytest.param(True, id="true"),
            pytest.param(False, id="false"),
            pytest.param("80x", id="digits-and-letters"),
            pytest.param(8080.5, id="fraction"),
            pytest.param(8080.0, id="whole-float"),
            pytest.param(math.inf, id="infinity"),
            pytest.param(math.nan, id="nan"),
            pytest.param([8080], id="list"),
            pytest.param({"port": 8080}, id="mapping"),
            pytest.param(None, id="null"),
            pytest.param("", id="empty-text"),
            pytest.param(" 8080", id="leading-space"),
            pytest.param("8080\n", id="trailing-newline"),
            pytest.param("+8080", id="plus-sign"),
            pytest.param("0x1F90", id="hexadecimal"),
            pytest.param("8_080", id="underscore"),
            pytest.param("\uff18\uff10\uff18\uff10", id="fullwidth-digits"),
            pytest.param("\u0668\u0660\u0668\u0660", id="arabic-indic-digits"),
        ],
    )
    def test_a_port_that_is_not_a_whole_number_is_a_wrong_type(self, port: Any) -> None:
        assert only_issue(spec_with(port=port)) == ("port", ErrorCode.INVALID_TYPE)

    def test_a_long_port_written_as_text_is_out_of_range(self) -> None:
        assert only_issue(spec_with(port="123456")) == ("port", ErrorCode.PORT_OUT_OF_RANGE)

    @pytest.mark.parametrize("digits", [10, 4301, 1_000_000], ids=repr)
    def test_any_number_of_digits_is_a_number_out_of_range_without_a_crash(
        self, digits: int
    ) -> None:
        assert only_issue(spec_with(port="9" * digits)) == ("port", ErrorCode.PORT_OUT_OF_RANGE)

    @pytest.mark.parametrize(("text", "port"), [("08080", 8080), ("0" * 1000 + "8080", 8080)])
    def test_leading_zeros_in_a_port_written_as_text_do_not_count(
        self, text: str, port: int
    ) -> None:
        assert parsed(spec_with(port=text)).port == port


class TestVersionAndDomainFields:
    def test_a_malformed_version_is_reported_on_pocketbase_version(self) -> None:
        assert only_issue(spec_with(pocketbase_version="v0.29.0")) == (
            "pocketbase_version",
            ErrorCode.INVALID_VERSION,
        )

    @pytest.mark.parametrize("value", [0.29, 1, None, ["0.29.0"]], ids=repr)
    def test_a_version_that_is_not_text_is_a_wrong_type(self, value: Any) -> None:
        assert only_issue(spec_with(pocketbase_version=value)) == (
            "pocketbase_version",
            ErrorCode.INVALID_TYPE,
        )

    @pytest.mark.parametrize("value", [["a.com"], {"name": "a.com"}, 5, True], ids=repr)
    def test_a_domain_that_is_not_text_is_a_wrong_type(self, value: Any) -> None:
        assert only_issue(spec_with(domain=value)) == ("domain", ErrorCode.INVALID_TYPE)

    def test_a_domain_over_a_thousand_characters_is_too_long(self) -> None:
        assert only_issue(spec_with(domain="a" * 5000)) == ("domain", ErrorCode.DOMAIN_TOO_LONG)


# --- env --------------------------------------------------------------------------------------


class TestEnvField:
    def test_numbers_and_booleans_become_the_text_the_environment_holds(self) -> None:
        spec = parsed(spec_with(env={"N": 2, "F": 0.5, "T": True, "OFF": False, "BIG": 10**20}))
        assert spec.env == {
            "N": "2",
            "F": "0.5",
            "T": "true",
            "OFF": "false",
            "BIG": "100000000000000000000",
        }

    def test_numbers_written_in_yaml_become_strings(self) -> None:
        document = yaml.safe_load(
            "project_name: app\n"
            "port: 8080\n"
            "pocketbase_version: 0.29.0\n"
            "env:\n"
            "  GOMAXPROCS: 2\n"
            "  RATIO: 0.5\n"
            "  DEBUG: true\n"
            '  UMASK: "0022"\n'
            '  EMPTY: ""\n'
        )
        assert parsed(document).env == {
            "GOMAXPROCS": "2",
            "RATIO": "0.5",
            "DEBUG": "true",
            "UMASK": "0022",
            "EMPTY": "",
        }

    @pytest.mark.parametrize(
        ("name", "field"),
        [("lower", "env.lower"), ("A-B", "env.A-B"), ("A=B", "env.A=B"), ("", "env.")],
        ids=["lowercase", "hyphen", "equals", "empty"],
    )
    def test_a_bad_name_is_reported_on_its_own_key(self, name: str, field: str) -> None:
        assert only_issue(spec_with(env={name: "x"})) == (field, ErrorCode.INVALID_ENV_NAME)

    @pytest.mark.parametrize(
        "value",
        ["a\nb", "a\rb", "a\x00b", "\x1b[1m", "x" * 4097],
        ids=["newline", "carriage-return", "nul", "escape", "long"],
    )
    def test_a_bad_value_is_reported_on_its_key(self, value: str) -> None:
        assert only_issue(spec_with(env={"KEY": value})) == ("env.KEY", ErrorCode.INVALID_ENV_VALUE)

    @pytest.mark.parametrize("value", [None, ["x"], {"x": 1}], ids=repr)
    def test_a_value_that_is_not_text_or_a_number_is_a_wrong_type(self, value: Any) -> None:
        assert only_issue(spec_with(env={"KEY": value})) == ("env.KEY", ErrorCode.INVALID_TYPE)

    @pytest.mark.parametrize("env", [["A=B"], "A=B", 5], ids=repr)
    def test_env_that_is_not_a_mapping_is_a_wrong_type(self, env: Any) -> None:
        assert only_issue(spec_with(env=env)) == ("env", ErrorCode.INVALID_TYPE)

    def test_a_number_too_long_to_write_out_is_refused_not_a_crash(self) -> None:
        [(field, _code)] = issues_of(spec_with(env={"BIG": 10**5000}))
        assert field == "env.BIG"

    def test_a_number_too_long_to_write_out_is_an_invalid_env_value(self) -> None:
        assert only_issue(spec_with(env={"BIG": 10**5000})) == (
            "env.BIG",
            ErrorCode.INVALID_ENV_VALUE,
        )

    def test_numbers_of_up_to_4096_characters_are_written_out(self) -> None:
        assert parsed(spec_with(env={"N": 10**4095})).env["N"] == "1" + "0" * 4095
        for number in (10**4096, -(10**4095), 10**4200):
            assert only_issue(spec_with(env={"N": number})) == (
                "env.N",
                ErrorCode.INVALID_ENV_VALUE,
            )

    @pytest.mark.parametrize("name", ["LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT"])
    def test_the_dynamic_loaders_variables_are_reserved_names(self, name: str) -> None:
        assert only_issue(spec_with(env={name: "/tmp/x.so"})) == (
            f"env.{name}",
            ErrorCode.RESERVED_ENV_NAME,
        )

    @pytest.mark.parametrize(
        "value", ["a\x85b", "a\u2028b", "x\u202etxt.exe"], ids=["nel", "ls", "rlo"]
    )
    def test_unicode_line_breaks_and_bidi_overrides_are_invalid_values(self, value: str) -> None:
        assert only_issue(spec_with(env={"KEY": value})) == ("env.KEY", ErrorCode.INVALID_ENV_VALUE)

    def test_a_hundred_variables_pass_and_more_are_too_many(self) -> None:
        hundred = {f"V{number}": "x" for number in range(100)}
        assert len(parsed(spec_with(env=hundred)).env) == 100
        more = {**hundred, "V100": "x"}
        [(field, code)] = issues_of(spec_with(env=more))
        assert (field, code) == ("env", ErrorCode.VALUE_TOO_LONG)


# --- resources --------------------------------------------------------------------------------


class TestResourcesField:
    @pytest.mark.parametrize(
        ("resources", "issue"),
        [
            ({"memory_max": "15M"}, ("resources.memory_max", ErrorCode.INVALID_MEMORY_LIMIT)),
            ({"memory_max": "512MB"}, ("resources.memory_max", ErrorCode.INVALID_MEMORY_LIMIT)),
            ({"memory_max": "1G\nx"}, ("resources.memory_max", ErrorCode.INVALID_MEMORY_LIMIT)),
            ({"cpu_quota": "0%"}, ("resources.cpu_quota", ErrorCode.INVALID_CPU_QUOTA)),
            ({"cpu_quota": "50"}, ("resources.cpu_quota", ErrorCode.INVALID_CPU_QUOTA)),
            ({"memory_max": 512}, ("resources.memory_max", ErrorCode.INVALID_TYPE)),
            ({"memory_max": ["1G"]}, ("resources.memory_max", ErrorCode.INVALID_TYPE)),
            ({"cpu_quota": 0.5}, ("resources.cpu_quota", ErrorCode.INVALID_TYPE)),
            ({"memory": "1G"}, ("resources.memory", ErrorCode.UNKNOWN_FIELD)),
            ({"MemoryMax": "1G"}, ("resources.MemoryMax", ErrorCode.UNKNOWN_FIELD)),
        ],
        ids=[
            "below-floor",
            "two-letter-suffix",
            "newline",
            "zero-cpu",
            "cpu-without-percent",
            "memory-as-number",
            "memory-as-list",
            "cpu-as-float",
            "unknown-key",
            "systemd-spelling",
        ],
    )
    def test_each_resource_problem_is_reported_on_its_key(
        self, resources: dict[str, Any], issue: tuple[str, ErrorCode]
    ) -> None:
        assert only_issue(spec_with(resources=resources)) == issue

    def test_limits_in_systemd_syntax_are_kept_as_written(self) -> None:
        spec = parsed(spec_with(resources={"memory_max": "infinity", "cpu_quota": "150%"}))
        assert spec.resources == Resources(memory_max="infinity", cpu_quota="150%")

    @pytest.mark.parametrize(
        ("section", "value"),
        [("resources", "512M"), ("resources", None), ("flags", "dev"), ("flags", ["dev"])],
        ids=["resources-text", "resources-null", "flags-text", "flags-list"],
    )
    def test_a_section_that_is_not_a_mapping_is_a_wrong_type(
        self, section: str, value: Any
    ) -> None:
        assert only_issue(spec_with(**{section: value})) == (section, ErrorCode.INVALID_TYPE)

    @pytest.mark.parametrize("section", ["resources", "flags"])
    def test_an_empty_section_means_the_defaults(self, section: str) -> None:
        assert getattr(parsed(spec_with(**{section: {}})), section) == getattr(
            parsed(MINIMAL), section
        )


# --- flags ------------------------------------------------------------------------------------


class TestFlagsField:
    def test_allowed_flags_become_pocketbase_arguments_in_a_fixed_order(self) -> None:
        spec = parsed(
            spec_with(
                flags={
                    "index_fallback": False,
                    "hooks_pool": 25,
                    "hooks_watch": True,
                    "query_timeout": 30,
                    "dev": True,
                    "encryption_env": "PB_ENCRYPTION_KEY",
                    "origins": ["https://a.example.com", "http://localhost:5173"],
                }
            )
        )
        assert spec.flags.as_arguments() == [
            "--origins=https://a.example.com,http://localhost:5173",
            "--encryptionEnv=PB_ENCRYPTION_KEY",
            "--dev=true",
            "--queryTimeout=30",
            "--hooksWatch=true",
            "--hooksPool=25",
            "--indexFallback=false",
        ]

    def test_a_flags_name_is_its_field_in_camel_case(self) -> None:
        assert flag_name("dev") == "--dev"
        assert flag_name("query_timeout") == "--queryTimeout"
        assert flag_name("a_b_c") == "--aBC"

    @pytest.mark.parametrize(
        "flag",
        ["http", "https", "dir", "hooksDir", "publicDir", "automigrate", "encryptionEnv", "x"],
    )
    def test_a_flag_outside_the_allow_list_is_not_allowed_and_the_list_is_named(
        self, flag: str
    ) -> None:
        with pytest.raises(SpecInvalid) as caught:
            parsed(spec_with(flags={flag: "value"}))
        [issue] = caught.value.issues
        assert (issue.field, issue.code) == (f"flags.{flag}", ErrorCode.FLAG_NOT_ALLOWED)
        assert all(name in issue.message for name in PocketBaseFlags.model_fields)

    @pytest.mark.parametrize(
        ("origins", "field"),
        [
            (["evil"], "flags.origins.0"),
            (["*", "https://a.com,https://b.com"], "flags.origins.1"),
            (["https://a.com\n--dir=/"], "flags.origins.0"),
            (["https://a.com/"], "flags.origins.0"),
        ],
        ids=["word", "comma", "newline", "path"],
    )
    def test_a_bad_origin_is_an_invalid_flag_value_at_its_position(
        self, origins: list[str], field: str
    ) -> None:
        assert only_issue(spec_with(flags={"origins": origins})) == (
            field,
            ErrorCode.INVALID_FLAG_VALUE,
        )

    @pytest.mark.parametrize(
        ("flags", "issue"),
        [
            ({"origins": "https://a.com"}, ("flags.origins", ErrorCode.INVALID_FLAG_VALUE)),
            ({"query_timeout": "soon"}, ("flags.query_timeout", ErrorCode.INVALID_FLAG_VALUE)),
            ({"hooks_pool": 2.5}, ("flags.hooks_pool", ErrorCode.INVALID_FLAG_VALUE)),
            ({"dev": "maybe"}, ("flags.dev", ErrorCode.INVALID_FLAG_VALUE)),
            ({"hooks_watch": [True]}, ("flags.hooks_watch", ErrorCode.INVALID_FLAG_VALUE)),
            ({"origins": [5]}, ("flags.origins.0", ErrorCode.INVALID_TYPE)),
        ],
        ids=["origins-text", "timeout-word", "pool-fraction", "dev-word", "list", "origin-number"],
    )
    def test_a_flag_value_of_the_wrong_kind_is_reported_on_the_flag(
        self, flags: dict[str, Any], issue: tuple[str, ErrorCode]
    ) -> None:
        assert only_issue(spec_with(flags=flags)) == issue

    def test_a_bad_encryption_variable_name_is_an_invalid_env_name(self) -> None:
        assert only_issue(spec_with(flags={"encryption_env": "lower"})) == (
            "flags.encryption_env",
            ErrorCode.INVALID_ENV_NAME,
        )

    def test_an_empty_list_of_origins_is_an_invalid_flag_value(self) -> None:
        with pytest.raises(SpecInvalid) as caught:
            parsed(spec_with(flags={"origins": []}))
        [issue] = caught.value.issues
        assert (issue.field, issue.code) == ("flags.origins", ErrorCode.INVALID_FLAG_VALUE)
        assert "at least one" in issue.message

    def test_fifty_origins_pass_and_more_are_too_many(self) -> None:
        fifty = [f"https://site{number}.example.com" for number in range(50)]
        assert len(parsed(spec_with(flags={"origins": fifty})).flags.origins or ()) == 50
        more = [*fifty, "https://one-more.example.com"]
        assert only_issue(spec_with(flags={"origins": more})) == (
            "flags.origins",
            ErrorCode.VALUE_TOO_LONG,
        )

    def test_a_null_origins_flag_is_left_out(self) -> None:
        assert parsed(spec_with(flags={"origins": None})).flags.as_arguments() == []

    @pytest.mark.parametrize(
        ("flags", "arguments"),
        [
            ({"query_timeout": 1}, ["--queryTimeout=1"]),
            ({"query_timeout": 3600}, ["--queryTimeout=3600"]),
            ({"query_timeout": "60"}, ["--queryTimeout=60"]),
            ({"hooks_pool": 1000}, ["--hooksPool=1000"]),
        ],
        ids=["timeout-1", "timeout-3600", "timeout-text", "pool-1000"],
    )
    def test_numeric_flags_at_their_bounds_or_written_as_digits_pass(
        self, flags: dict[str, Any], arguments: list[str]
    ) -> None:
        assert parsed(spec_with(flags=flags)).flags.as_arguments() == arguments

    @pytest.mark.parametrize(
        "value",
        [30.0, "3e1", " 30", None, "9" * 100_000],
        ids=["float", "e", "space", "null", "huge"],
    )
    def test_a_numeric_flag_that_is_not_a_whole_number_in_range_is_refused(
        self, value: Any
    ) -> None:
        if value is None:
            assert parsed(spec_with(flags={"query_timeout": value})).flags.query_timeout is None
            return
        assert only_issue(spec_with(flags={"query_timeout": value})) == (
            "flags.query_timeout",
            ErrorCode.INVALID_FLAG_VALUE,
        )

    def test_the_loader_variables_are_reserved_for_the_encryption_flag_too(self) -> None:
        assert only_issue(spec_with(flags={"encryption_env": "LD_PRELOAD"})) == (
            "flags.encryption_env",
            ErrorCode.RESERVED_ENV_NAME,
        )

    @pytest.mark.parametrize(
        "flags",
        [{"query_timeout": 0}, {"query_timeout": 3601}, {"hooks_pool": 0}, {"hooks_pool": 1001}],
        ids=["timeout-0", "timeout-3601", "pool-0", "pool-1001"],
    )
    def test_a_numeric_flag_out_of_its_bounds_is_an_invalid_flag_value(
        self, flags: dict[str, int]
    ) -> None:
        [field] = flags
        assert only_issue(spec_with(flags=flags)) == (
            f"flags.{field}",
            ErrorCode.INVALID_FLAG_VALUE,
        )

    @pytest.mark.parametrize("flag", ["query_timeout", "hooks_pool"])
    def test_a_boolean_for_a_numeric_flag_is_an_invalid_flag_value(self, flag: str) -> None:
        assert only_issue(spec_with(flags={flag: True})) == (
            f"flags.{flag}",
            ErrorCode.INVALID_FLAG_VALUE,
        )


# --- superuser --------------------------------------------------------------------------------


class TestSuperuserFields:
    def test_a_bad_email_is_reported_on_superuser_email(self) -> None:
        assert only_issue(spec_with(superuser_email="admin@localhost\n")) == (
            "superuser_email",
            ErrorCode.INVALID_EMAIL,
        )

    @pytest.mark.parametrize("value", [5, ["a@b.co"], {"a": "b"}], ids=repr)
    def test_an_email_that_is_not_text_is_a_wrong_type(self, value: Any) -> None:
        assert only_issue(spec_with(superuser_email=value)) == (
            "superuser_email",
            ErrorCode.INVALID_TYPE,
        )

    @pytest.mark.parametrize(
        "path", ["/run/secrets/pw", "/etc/pockestrator/app.pw", "/a b/pw with spaces", "/x..y"]
    )
    def test_an_absolute_plain_path_is_accepted_as_the_password_file(self, path: str) -> None:
        assert parsed(spec_with(superuser_password_file=path)).superuser_password_file == path

    @pytest.mark.parametrize(
        "path",
        [
            pytest.param("pw", id="bare-name"),
            pytest.param("relative/pw", id="relative"),
            pytest.param("./pw", id="dot-relative"),
            pytest.param("~/pw", id="home"),
            pytest.param("", id="empty"),
            pytest.param("..", id="parent"),
            pytest.param("/etc/../etc/shadow", id="parent-inside"),
            pytest.param("/run/secrets/..", id="parent-at-end"),
            pytest.param("/run/./secrets/pw", id="dot-inside"),
            pytest.param("/run/secrets/pw\n", id="trailing-newline"),
            pytest.param("/run/secrets/\x00pw", id="nul"),
            pytest.param("/run/\x1b[2Jpw", id="escape"),
            pytest.param("/" + "a" * 5000, id="very-long"),
        ],
    )
    def test_a_relative_traversing_or_control_path_is_an_invalid_path(self, path: str) -> None:
        assert only_issue(spec_with(superuser_password_file=path)) == (
            "superuser_password_file",
            ErrorCode.INVALID_PATH,
        )

    @pytest.mark.parametrize("value", [5, ["/run/secrets/pw"], {"path": "/x"}], ids=repr)
    def test_a_password_file_that_is_not_text_is_a_wrong_type(self, value: Any) -> None:
        assert only_issue(spec_with(superuser_password_file=value)) == (
            "superuser_password_file",
            ErrorCode.INVALID_TYPE,
        )

    @pytest.mark.parametrize("path", ["/run/a\x85b", "/run/a\x9bb"], ids=["nel", "csi"])
    def test_a_path_with_a_c1_control_character_is_an_invalid_path(self, path: str) -> None:
        assert only_issue(spec_with(superuser_password_file=path)) == (
            "superuser_password_file",
            ErrorCode.INVALID_PATH,
        )

    @pytest.mark.parametrize(
        "path",
        [
            pytest.param("/run/a\u2028b", id="line-separator"),
            pytest.param("/run/secrets/\u202ewp.txt", id="right-to-left-override"),
            pytest.param("/run/\u2066pw\u2069", id="isolate"),
        ],
    )
    def test_a_path_with_a_line_separator_or_bidi_override_is_an_invalid_path(
        self, path: str
    ) -> None:
        assert only_issue(spec_with(superuser_password_file=path)) == (
            "superuser_password_file",
            ErrorCode.INVALID_PATH,
        )

    @pytest.mark.parametrize(
        ("path", "words"),
        [
            ("/proc/self/environ", "/proc"),
            ("/proc", "/proc"),
            ("/sys/kernel/notes", "/sys"),
            ("/dev/stdin", "/dev"),
            ("//dev/zero", "/dev"),
            ("/run/secrets/", "name a file"),
            ("/", "name a file"),
        ],
    )
    def test_kernel_and_device_files_and_folders_are_not_password_files(
        self, path: str, words: str
    ) -> None:
        with pytest.raises(SpecInvalid) as caught:
            parsed(spec_with(superuser_password_file=path))
        [issue] = caught.value.issues
        assert (issue.field, issue.code) == ("superuser_password_file", ErrorCode.INVALID_PATH)
        assert words in issue.message

    @pytest.mark.parametrize("path", ["/procfs/pw", "/run/proc/pw", "/srv/dev/pw", "/devices"])
    def test_names_that_only_start_like_proc_sys_or_dev_are_fine(self, path: str) -> None:
        assert parsed(spec_with(superuser_password_file=path)).superuser_password_file == path


# --- description, created_by, desired_state, extra_dirs ---------------------------------------


class TestOneLineTextFields:
    @pytest.mark.parametrize(
        ("field", "limit"), [("description", 500), ("created_by", 254)], ids=["description", "by"]
    )
    def test_text_up_to_the_limit_passes_and_one_more_character_is_too_long(
        self, field: str, limit: int
    ) -> None:
        assert getattr(parsed(spec_with(**{field: "x" * limit})), field) == "x" * limit
        assert only_issue(spec_with(**{field: "x" * (limit + 1)})) == (
            field,
            ErrorCode.VALUE_TOO_LONG,
        )

    @pytest.mark.parametrize("field", ["description", "created_by"])
    @pytest.mark.parametrize(
        "text", ["two\nlines", "cr\rhere", "nul\x00", "\x1b[31mred"], ids=["lf", "cr", "nul", "esc"]
    )
    def test_control_characters_are_invalid_characters(self, field: str, text: str) -> None:
        assert only_issue(spec_with(**{field: text})) == (field, ErrorCode.INVALID_CHARACTERS)

    @pytest.mark.parametrize("field", ["description", "created_by"])
    @pytest.mark.parametrize("value", [5, ["x"], {"x": 1}, None], ids=repr)
    def test_text_fields_that_are_not_text_are_a_wrong_type(self, field: str, value: Any) -> None:
        assert only_issue(spec_with(**{field: value})) == (field, ErrorCode.INVALID_TYPE)

    def test_very_long_text_is_refused_by_length(self) -> None:
        assert only_issue(spec_with(description="x\n" * 500_000)) == (
            "description",
            ErrorCode.VALUE_TOO_LONG,
        )

    @pytest.mark.parametrize("field", ["description", "created_by"])
    @pytest.mark.parametrize("text", ["a\x85b", "a\u2028b", "a\u2029b"], ids=["nel", "ls", "ps"])
    def test_unicode_line_breaks_are_invalid_characters(self, field: str, text: str) -> None:
        assert only_issue(spec_with(**{field: text})) == (field, ErrorCode.INVALID_CHARACTERS)

    @pytest.mark.parametrize("field", ["description", "created_by"])
    @pytest.mark.parametrize("text", ["admin\u202emoc.live", "\u2067x\u2069"], ids=["rlo", "rli"])
    def test_bidi_overrides_that_disguise_text_are_invalid_characters(
        self, field: str, text: str
    ) -> None:
        assert only_issue(spec_with(**{field: text})) == (field, ErrorCode.INVALID_CHARACTERS)

    def test_right_to_left_text_is_fine(self) -> None:
        text = "\u05de\u05e2\u05e8\u05db\u05ea \u200fCRM"
        assert parsed(spec_with(description=text)).description == text


class TestDesiredStateAndExtraDirs:
    @pytest.mark.parametrize("state", ["running", "stopped"])
    def test_running_and_stopped_are_the_desired_states(self, state: str) -> None:
        assert parsed(spec_with(desired_state=state)).desired_state == state

    @pytest.mark.parametrize("state", ["paused", "Running", "", "running\n", 1])
    def test_any_other_desired_state_is_an_invalid_value(self, state: Any) -> None:
        assert only_issue(spec_with(desired_state=state)) == (
            "desired_state",
            ErrorCode.INVALID_VALUE,
        )

    @pytest.mark.parametrize(
        ("dirs", "field"),
        [
            (["../etc"], "extra_dirs.0"),
            (["pb_hooks", "pb_data"], "extra_dirs.1"),
            (["/etc"], "extra_dirs.0"),
            (["PB_HOOKS"], "extra_dirs.0"),
        ],
        ids=["traversal", "pb-data", "absolute", "uppercase"],
    )
    def test_a_folder_outside_the_optional_three_is_an_invalid_value(
        self, dirs: list[str], field: str
    ) -> None:
        assert only_issue(spec_with(extra_dirs=dirs)) == (field, ErrorCode.INVALID_VALUE)

    @pytest.mark.parametrize("dirs", ["pb_hooks", {"pb_hooks": True}, 1], ids=repr)
    def test_extra_dirs_that_are_not_a_list_are_a_wrong_type(self, dirs: Any) -> None:
        assert only_issue(spec_with(extra_dirs=dirs)) == ("extra_dirs", ErrorCode.INVALID_TYPE)


class TestProxyAndTlsFields:
    def test_without_them_the_proxy_keeps_its_defaults_and_tls_is_the_agents(self) -> None:
        spec = parsed(MINIMAL)
        assert spec.proxy == ProxyOptions(
            max_body_size="10MB", aliases=(), redirect_aliases=False, hold_requests=10
        )
        assert spec.tls == TlsOptions(mode=None, hsts=True)
        assert spec.allow_downgrade is False

    @pytest.mark.parametrize(
        ("given", "kept"),
        [("50MB", "50MB"), ("1GiB", "1GiB"), ("1KB", "1KB"), (12_000_000, "12000000")],
    )
    def test_a_body_size_is_kept_as_caddy_reads_it(self, given: Any, kept: str) -> None:
        assert parsed(spec_with(proxy={"max_body_size": given})).proxy.max_body_size == kept

    @pytest.mark.parametrize(
        "size",
        ["10 MB", "10mb", "10M", "0MB", "999B", "1025MiB", "2GB", "-1", "1.5MB", "", True, 0, 1.5],
        ids=repr,
    )
    def test_a_bad_or_out_of_bounds_body_size_names_the_field(self, size: Any) -> None:
        assert only_issue(spec_with(proxy={"max_body_size": size})) == (
            "proxy.max_body_size",
            ErrorCode.INVALID_BODY_SIZE,
        )

    def test_aliases_are_normalised_like_the_domain(self) -> None:
        spec = parsed(spec_with(proxy={"aliases": ["WWW.App.Example.TEST.", "b\u00fccher.test"]}))
        assert spec.proxy.aliases == ("www.app.example.test", "xn--bcher-kva.test")

    @pytest.mark.parametrize(
        ("aliases", "issue"),
        [
            (["ok.example.test", "bad..test"], ("proxy.aliases.1", ErrorCode.INVALID_DOMAIN)),
            (["intranet"], ("proxy.aliases.0", ErrorCode.INVALID_DOMAIN)),
            (["a.test", "A.test"], ("proxy.aliases", ErrorCode.INVALID_ALIAS)),
            (["app.example.test"], ("proxy.aliases", ErrorCode.INVALID_ALIAS)),
            ([f"a{n}.test" for n in range(21)], ("proxy.aliases", ErrorCode.INVALID_ALIAS)),
            ("www.example.test", ("proxy.aliases", ErrorCode.INVALID_TYPE)),
        ],
        ids=["bad-label", "single-label", "twice", "own-domain", "too-many", "not-a-list"],
    )
    def test_a_bad_alias_names_its_position_or_the_list(
        self, aliases: Any, issue: tuple[str, ErrorCode]
    ) -> None:
        assert only_issue(spec_with(proxy={"aliases": aliases})) == issue

    def test_the_derived_domain_cannot_be_an_alias_either(self) -> None:
        assert only_issue(spec_with(proxy={"aliases": ["app.example.test"]})) == (
            "proxy.aliases",
            ErrorCode.INVALID_ALIAS,
        )

    @pytest.mark.parametrize("seconds", [-1, 121, "ten", True, 2.5], ids=repr)
    def test_hold_requests_is_whole_seconds_up_to_two_minutes(self, seconds: Any) -> None:
        assert only_issue(spec_with(proxy={"hold_requests": seconds})) == (
            "proxy.hold_requests",
            ErrorCode.INVALID_HOLD_REQUESTS,
        )

    @pytest.mark.parametrize("mode", ["on", "AUTO", "", "acme", 1, True], ids=repr)
    def test_a_tls_mode_outside_the_three_names_the_field(self, mode: Any) -> None:
        assert only_issue(spec_with(tls={"mode": mode})) == ("tls.mode", ErrorCode.INVALID_TLS_MODE)

    @pytest.mark.parametrize(
        ("data", "issue"),
        [
            ({"proxy": {"max_size": "10MB"}}, ("proxy.max_size", ErrorCode.UNKNOWN_FIELD)),
            ({"tls": {"email": "a@b.test"}}, ("tls.email", ErrorCode.UNKNOWN_FIELD)),
            ({"proxy": "10MB"}, ("proxy", ErrorCode.INVALID_TYPE)),
            ({"tls": "internal"}, ("tls", ErrorCode.INVALID_TYPE)),
            (
                {"proxy": {"redirect_aliases": "maybe"}},
                ("proxy.redirect_aliases", ErrorCode.INVALID_TYPE),
            ),
            ({"allow_downgrade": "please"}, ("allow_downgrade", ErrorCode.INVALID_TYPE)),
        ],
        ids=["unknown-proxy-key", "unknown-tls-key", "proxy-text", "tls-text", "bool", "downgrade"],
    )
    def test_the_sections_are_strict_like_every_other(
        self, data: dict[str, Any], issue: tuple[str, ErrorCode]
    ) -> None:
        assert only_issue(spec_with(**data)) == issue

    def test_every_problem_of_both_sections_is_reported_at_once(self) -> None:
        issues = issues_of(
            spec_with(
                proxy={"max_body_size": "huge", "hold_requests": -5, "aliases": ["x"]},
                tls={"mode": "sometimes"},
            )
        )
        assert sorted(issues) == [
            ("proxy.aliases.0", ErrorCode.INVALID_DOMAIN),
            ("proxy.hold_requests", ErrorCode.INVALID_HOLD_REQUESTS),
            ("proxy.max_body_size", ErrorCode.INVALID_BODY_SIZE),
            ("tls.mode", ErrorCode.INVALID_TLS_MODE),
        ]


# --- issues -----------------------------------------------------------------------------------


class TestTheShapeOfAnIssue:
    def test_an_issue_reads_as_file_line_field_message_and_code(self) -> None:
        issue = FieldIssue(
            "port",
            "port must be between 1024 and 65535",
            ErrorCode.PORT_OUT_OF_RANGE,
            "specs/a.yaml",
            3,
        )
        assert str(issue) == (
            "specs/a.yaml:3: port: port must be between 1024 and 65535 [PORT_OUT_OF_RANGE]"
        )
        assert str(FieldIssue("port", "bad", ErrorCode.INVALID_TYPE)) == "port: bad [INVALID_TYPE]"

    def test_an_issue_as_a_dict_has_a_text_code_and_no_empty_location(self) -> None:
        issue = FieldIssue("port", "bad", ErrorCode.INVALID_TYPE)
        assert issue.as_dict() == {"field": "port", "message": "bad", "code": "INVALID_TYPE"}
        located = FieldIssue("port", "bad", ErrorCode.INVALID_TYPE, "a.yaml", 2).as_dict()
        assert located["file"] == "a.yaml" and located["line"] == 2

    def test_the_error_message_lists_every_issue(self) -> None:
        with pytest.raises(SpecInvalid) as caught:
            parsed({"project_name": "1x", "port": 1})
        text = str(caught.value)
        assert "NAME_MUST_START_WITH_LETTER" in text
        assert "PORT_OUT_OF_RANGE" in text
        assert "FIELD_REQUIRED" in text


# --- properties -------------------------------------------------------------------------------

NAME_GRAMMAR = re.compile(r"[a-z][a-z0-9-]*", re.ASCII)
DOMAIN_CHARACTERS = re.compile(r"[a-z0-9.-]+", re.ASCII)
ENV_NAME_GRAMMAR = re.compile(r"[A-Z_][A-Z0-9_]*", re.ASCII)
# Unicode controls, line and paragraph separators, bidirectional overrides and isolates.
UNSAFE_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=40),
    st.text(alphabet="a-.{}$#,\n\r\x00\u0430\uff41Z_=/ 09", max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
hostile_text = st.text(
    alphabet="az09-._{}$#,'\"\n\r\t\x00\x85\x9b\u2028\u202e\u2066\u0430\uff41AZ=/ "
)
env_names = st.one_of(st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True), st.text(max_size=8))
# Per field: values near its grammar, so that both sides of every rule are reached.
near_values: dict[str, st.SearchStrategy[Any]] = {
    "project_name": st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True) | hostile_text,
    "port": st.integers(0, 70_000) | st.from_regex(r"[0-9]{1,6}", fullmatch=True),
    "pocketbase_version": st.from_regex(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9](-[a-z0-9.]{1,5})?"),
    "domain": st.from_regex(r"[a-zA-Z0-9.-]{1,30}", fullmatch=True) | hostile_text,
    "description": st.text(max_size=40) | hostile_text,
    "created_by": st.text(max_size=40) | hostile_text,
    "superuser_email": st.emails() | hostile_text,
    "superuser_password_file": st.from_regex(r"/[a-z./]{0,12}", fullmatch=True) | hostile_text,
    "desired_state": st.sampled_from(["running", "stopped", "paused"]),
    "env": st.dictionaries(env_names, st.text(max_size=20) | json_scalars, max_size=4),
    "resources": st.fixed_dictionaries(
        {},
        optional={
            "memory_max": st.from_regex(r"[0-9]{1,5}[KMGT%]?", fullmatch=True) | hostile_text,
            "cpu_quota": st.from_regex(r"[0-9]{1,5}%?", fullmatch=True) | hostile_text,
        },
    ),
    "flags": st.dictionaries(
        st.sampled_from([*PocketBaseFlags.model_fields, "http", "dir"]), json_values, max_size=3
    ),
    "extra_dirs": st.lists(st.sampled_from(["pb_hooks", "pb_public", "pb_data", "../x"])),
}
field_names = st.sampled_from([*ServiceSpec.model_fields, "unknown", "projectName"])


@st.composite
def spec_like_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A valid spec with some fields replaced, by near-grammar or by arbitrary values."""
    document: dict[str, Any] = dict(MINIMAL)
    for _ in range(draw(st.integers(1, 3))):
        name = draw(field_names)
        near = near_values.get(name)
        use_near = near is not None and draw(st.integers(0, 3)) > 0
        document[name] = draw(near if use_near and near is not None else json_values)
    if draw(st.integers(0, 9)) == 0:
        document.pop(draw(st.sampled_from(sorted(MINIMAL))), None)
    return document


def assert_within_grammar(spec: ServiceSpec) -> None:
    assert NAME_GRAMMAR.fullmatch(spec.project_name) and len(spec.project_name) <= 50
    assert DOMAIN_CHARACTERS.fullmatch(spec.domain) and len(spec.domain) <= 253
    assert "." in spec.domain
    assert 1024 <= spec.port <= 65535
    for name, value in spec.env.items():
        assert ENV_NAME_GRAMMAR.fullmatch(name)
        assert not UNSAFE_CHARACTERS.search(value)
    for text in (spec.description, spec.created_by, spec.superuser_password_file or ""):
        assert not UNSAFE_CHARACTERS.search(text)


class TestParsingArbitraryInput:
    @settings(max_examples=examples(300), suppress_health_check=health_checks())
    @given(
        name=st.from_regex(r"[a-z][a-z0-9-]{0,55}", fullmatch=True) | st.text() | hostile_text,
        domain=st.none()
        | st.from_regex(r"[a-zA-Z0-9.-]{1,70}", fullmatch=True)
        | st.text()
        | hostile_text,
        value=st.text() | hostile_text,
    )
    def test_an_accepted_name_domain_and_env_value_never_leave_their_grammar(
        self, name: str, domain: str | None, value: str
    ) -> None:
        try:
            spec = parsed(spec_with(project_name=name, domain=domain, env={"KEY": value}))
        except SpecInvalid as exc:
            assert exc.issues
            assert {issue.field for issue in exc.issues} <= {"project_name", "domain", "env.KEY"}
            return
        assert_within_grammar(spec)
        assert spec.project_name == name
        if domain is None:
            assert spec.domain == f"{name}.{DEFAULT_DOMAIN}"

    @settings(max_examples=examples(300), suppress_health_check=health_checks(HealthCheck.too_slow))
    @given(st.one_of(json_values, spec_like_documents()))
    def test_parse_spec_returns_a_spec_or_raises_spec_invalid_with_located_issues(
        self, document: Any
    ) -> None:
        try:
            spec = parsed(document)
        except SpecInvalid as exc:
            assert exc.issues, "a refusal must say what is wrong"
            for issue in exc.issues:
                assert isinstance(issue.code, ErrorCode)
                assert issue.field and issue.message
            return
        assert_within_grammar(spec)
        assert parsed(spec.model_dump(mode="json")) == spec


# --- the reference document -------------------------------------------------------------------

# The codes the spec reference documents: every field and spec-file code of this model.
REFERENCE_CODES = [
    "FIELD_REQUIRED",
    "UNKNOWN_FIELD",
    "INVALID_TYPE",
    "INVALID_VALUE",
    "VALUE_TOO_LONG",
    "INVALID_CHARACTERS",
    "NAME_TOO_LONG",
    "NAME_MUST_START_WITH_LETTER",
    "NAME_ENDS_WITH_HYPHEN",
    "RESERVED_NAME",
    "DUPLICATE_PROJECT_NAME",
    "PROJECT_NAME_EXISTS",
    "PORT_OUT_OF_RANGE",
    "PORT_RESERVED",
    "PORT_IN_USE",
    "INVALID_DOMAIN",
    "DOMAIN_TOO_LONG",
    "DOMAIN_IN_USE",
    "INVALID_VERSION",
    "VERSION_NOT_FOUND",
    "VERSION_NOT_LATEST",
    "VERSION_CHECK_UNAVAILABLE",
    "INVALID_ENV_NAME",
    "RESERVED_ENV_NAME",
    "INVALID_ENV_VALUE",
    "INVALID_MEMORY_LIMIT",
    "INVALID_CPU_QUOTA",
    "FLAG_NOT_ALLOWED",
    "INVALID_FLAG_VALUE",
    "INVALID_EMAIL",
    "INVALID_PATH",
    "INVALID_BODY_SIZE",
    "INVALID_ALIAS",
    "INVALID_HOLD_REQUESTS",
    "INVALID_TLS_MODE",
    "VERSION_DOWNGRADE",
    "YAML_SYNTAX",
    "DUPLICATE_KEY",
    "NOT_A_MAPPING",
    "FILE_UNREADABLE",
    "OWNED_BY_FILE",
    "OWNED_BY_OTHER_SOURCE",
    "DELETION_PENDING",
    "INVALID_APP_NAME",
    "INVALID_APP_URL",
    "INVALID_TRUSTED_PROXY",
    "INVALID_RATE_LIMIT",
    "INVALID_SMTP",
    "INVALID_S3",
    "INVALID_LOGS",
    "INVALID_BATCH",
    "INVALID_SECRET",
    "SECRET_NOT_ALLOWED_HERE",
]
YAML_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.MULTILINE | re.DOTALL)


class TestTheSpecReference:
    def test_every_yaml_example_in_the_reference_is_a_valid_spec(self) -> None:
        blocks = YAML_BLOCK.findall(REFERENCE.read_text(encoding="utf-8"))
        assert len(blocks) >= 10, "the reference shows an example for every field"
        count = 0
        for block in blocks:
            for document in yaml.safe_load_all(block):
                if document is None:
                    continue
                assert_within_grammar(parsed(document, default_domain="example.com"))
                count += 1
        assert count > len(blocks), "the full example holds several documents"

    def test_the_reference_names_every_field(self) -> None:
        text = REFERENCE.read_text(encoding="utf-8")
        for model in (
            ServiceSpec,
            Resources,
            PocketBaseFlags,
            ProxyOptions,
            TlsOptions,
            PlacementOptions,
            *SETTINGS_SECTIONS,
        ):
            for name in model.model_fields:
                assert f"`{name}`" in text, f"{model.__name__}.{name} is not documented"

    def test_the_reference_table_of_flags_names_the_flag_each_field_sets(self) -> None:
        rows = re.findall(
            r"^\| `([a-z_]+)` \| `(--[A-Za-z]+)` \|", REFERENCE.read_text(encoding="utf-8"), re.M
        )
        assert rows == [(field, flag_name(field)) for field in PocketBaseFlags.model_fields]

    @pytest.mark.parametrize("code", REFERENCE_CODES)
    def test_the_reference_explains_every_code(self, code: str) -> None:
        assert ErrorCode(code).value == code
        assert f"`{code}`" in REFERENCE.read_text(encoding="utf-8")
