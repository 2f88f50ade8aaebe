"""The OpenAPI document: complete, consistent with the route table, and never stricter
than the server's grammar (the fuzzer holds the server to it, see test_api_fuzz.py)."""

from __future__ import annotations

import re
from typing import Any

import schemathesis
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pockestrator.api.models import (
    CPU_PATTERN,
    EMAIL_PATTERN,
    ENV_NAME_PATTERN,
    MEMORY_PATTERN,
    NAME_PATTERN,
    ORIGIN_PATTERN,
    VERSION_PATTERN,
)
from pockestrator.api.openapi import build_openapi
from pockestrator.api.routing import PREFIX
from pockestrator.api.server import all_operations
from pockestrator.specs import grammar

DOCUMENT = build_openapi(all_operations())


def resolve(reference: str) -> dict[str, Any]:
    assert reference.startswith("#/components/schemas/")
    return dict(DOCUMENT["components"]["schemas"][reference.rsplit("/", 1)[1]])


def all_refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in all_refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in all_refs(value)]
    return []


def test_every_operation_of_the_route_table_is_documented_once() -> None:
    documented = [
        (method.upper(), path) for path, item in DOCUMENT["paths"].items() for method in item
    ]
    assert sorted(documented) == sorted((op.method, op.url) for op in all_operations())
    assert len({op.operation_id for op in all_operations()}) == len(all_operations())
    assert all(path.startswith(PREFIX) for path in DOCUMENT["paths"])


def test_every_reference_endpoint_is_there() -> None:
    paths = DOCUMENT["paths"]
    for method, path in [
        ("get", "/system/info"),
        ("get", "/system/health"),
        ("post", "/services"),
        ("get", "/services"),
        ("get", "/services/{id}"),
        ("delete", "/services/{id}"),
        ("post", "/services/{id}/control"),
        ("get", "/services/{id}/status"),
        ("get", "/services/{id}/logs"),
        ("post", "/validate/service"),
        ("get", "/validate/system"),
    ]:
        assert method in paths[PREFIX + path], (method, path)


def test_only_liveness_and_login_are_public_and_the_rest_document_401() -> None:
    public = set()
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            if operation.get("security") == []:
                public.add((method, path))
            else:
                assert "401" in operation["responses"], (method, path)
                assert "WWW-Authenticate" in operation["responses"]["401"]["headers"]
    assert public == {("get", PREFIX + "/healthz"), ("post", PREFIX + "/auth/login")}
    assert DOCUMENT["security"] == [{"bearerAuth": []}]


def test_every_response_has_a_json_schema_and_every_reference_resolves() -> None:
    for item in DOCUMENT["paths"].values():
        for operation in item.values():
            for status, response in operation["responses"].items():
                assert 200 <= int(status) < 600
                assert "application/json" in response["content"]
    for reference in all_refs(DOCUMENT):
        assert resolve(reference)


def test_response_bodies_are_closed_so_no_undocumented_field_slips_out() -> None:
    for name, schema in DOCUMENT["components"]["schemas"].items():
        if schema.get("type") == "object" and "properties" in schema:
            assert schema.get("additionalProperties") is False, name


def test_the_log_stream_is_documented_as_server_sent_events() -> None:
    logs = DOCUMENT["paths"][PREFIX + "/services/{id}/logs"]["get"]
    assert "text/event-stream" in logs["responses"]["200"]["content"]
    names = {parameter["name"] for parameter in logs["parameters"]}
    assert names == {"id", "lines", "since", "follow"}


def test_schemathesis_loads_every_operation() -> None:
    schema = schemathesis.openapi.from_dict(DOCUMENT)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == len(all_operations())


def matches(pattern: str, value: str) -> bool:
    return re.search(pattern, value) is not None


# What the grammar accepts must match the documented pattern: otherwise the fuzzer's
# "schema-invalid" data would be accepted by the server, and clients would be told lies.


@settings(max_examples=300, deadline=None)
@given(st.from_regex(r"[a-z][a-z0-9-]{0,49}", fullmatch=True))
@example("a" * 50)
@example("a-b")
def test_every_project_name_the_grammar_accepts_matches_the_documented_pattern(name: str) -> None:
    try:
        grammar.check_project_name(name)
    except grammar.GrammarError:
        return
    assert matches(NAME_PATTERN, name)


@settings(max_examples=300, deadline=None)
@given(st.from_regex(r"[0-9]{1,7}\.[0-9]{1,7}\.[0-9]{1,7}(-[0-9A-Za-z.]{1,10})?", fullmatch=True))
@example("999999.0.0-rc.1")
def test_every_version_the_grammar_accepts_matches_the_documented_pattern(version: str) -> None:
    try:
        grammar.check_version(version)
    except grammar.GrammarError:
        assert not matches(VERSION_PATTERN, version)
        return
    assert matches(VERSION_PATTERN, version)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="abcXYZ09._%+-@!#$&'*/=?^`{|}~", min_size=3, max_size=40))
def test_every_email_the_grammar_accepts_matches_the_documented_pattern(email: str) -> None:
    try:
        grammar.check_email(email)
    except grammar.GrammarError:
        return
    assert matches(EMAIL_PATTERN, email)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789KMGTinfty%x", min_size=1, max_size=18))
@example("999999999999999T")
@example("100%")
@example("infinity")
def test_every_memory_limit_the_grammar_accepts_matches_the_documented_pattern(
    value: str,
) -> None:
    try:
        grammar.memory_limit_bytes(value)
    except grammar.GrammarError:
        return
    assert matches(MEMORY_PATTERN, value)


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"[0-9]{1,6}%", fullmatch=True))
@example("10000%")
@example("1%")
def test_every_cpu_quota_the_grammar_accepts_matches_the_documented_pattern(value: str) -> None:
    try:
        grammar.check_cpu_quota(value)
    except grammar.GrammarError:
        return
    assert matches(CPU_PATTERN, value)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="AZaz09_-", min_size=1, max_size=12))
def test_every_env_name_the_grammar_accepts_matches_the_documented_pattern(name: str) -> None:
    try:
        grammar.check_env_name(name)
    except grammar.GrammarError:
        return
    assert matches(ENV_NAME_PATTERN, name)


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"(\*|https?://[a-z0-9.-]{1,20}(:[0-9]{1,5})?)", fullmatch=True))
def test_every_origin_the_grammar_accepts_matches_the_documented_pattern(origin: str) -> None:
    try:
        grammar.check_origin(origin)
    except grammar.GrammarError:
        return
    assert matches(ORIGIN_PATTERN, origin)
