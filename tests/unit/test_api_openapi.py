"""The OpenAPI document: complete, consistent with the route table, and never stricter
than the server's grammar (the fuzzer holds the server to it, see test_api_fuzz.py)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import jsonschema_rs
import pytest
import schemathesis
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pockestrator.api.log_routes import sse_event
from pockestrator.api.models.problems import ErrorResponse
from pockestrator.api.models.requests import LoginBody
from pockestrator.api.models.system import Liveness
from pockestrator.api.openapi import build_openapi
from pockestrator.api.routing import PREFIX, Operation
from pockestrator.api.server import all_operations
from pockestrator.journal import LogEntry
from pockestrator.specs import grammar
from tests.examples import examples

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


async def _never(request: Any) -> Any:
    raise AssertionError("not called")


def test_the_errors_the_server_adds_around_a_handler_follow_from_the_operation() -> None:
    private_with_body = Operation(
        "POST", "/x", _never, "x", "s", {201: Liveness}, "t", body=LoginBody, errors=(409,)
    )
    public_without_body = Operation(
        "GET", "/y", _never, "y", "s", {200: Liveness}, "t", public=True
    )
    assert private_with_body.answers() == {
        201: Liveness,
        **dict.fromkeys((400, 401, 403, 409, 413, 415), ErrorResponse),
    }
    assert public_without_body.answers() == {200: Liveness, 400: ErrorResponse, 403: ErrorResponse}


def test_a_path_with_parameters_answers_404_and_one_without_does_not() -> None:
    one = Operation("GET", "/things/{thing_id}", _never, "one", "s", {200: Liveness}, "t")
    every = Operation("GET", "/things", _never, "every", "s", {200: Liveness}, "t")
    assert one.answers()[404] is ErrorResponse
    assert 404 not in every.answers()


def test_every_route_with_a_path_parameter_documents_404() -> None:
    for path, item in DOCUMENT["paths"].items():
        for operation in item.values():
            assert ("404" in operation["responses"]) == ("{" in path), (path, operation)


def test_a_status_the_operation_documents_itself_keeps_its_own_model() -> None:
    both = (Liveness, ErrorResponse)
    operation = Operation("GET", "/z", _never, "z", "s", {200: Liveness, 400: both}, "t")
    assert operation.answers()[400] == both


def test_every_response_has_a_json_schema_and_every_reference_resolves() -> None:
    for item in DOCUMENT["paths"].values():
        for operation in item.values():
            for status, response in operation["responses"].items():
                assert 200 <= int(status) < 600
                content = response["content"]
                files = [
                    media
                    for media, body in content.items()
                    if body["schema"].get("format") == "binary"
                ]
                assert "application/json" in content or files == list(content)
    for reference in all_refs(DOCUMENT):
        assert resolve(reference)


def test_response_bodies_are_closed_so_no_undocumented_field_slips_out() -> None:
    for name, schema in DOCUMENT["components"]["schemas"].items():
        if schema.get("type") == "object" and "properties" in schema:
            assert schema.get("additionalProperties") is False, name


def test_a_backup_download_is_documented_as_a_tar_file() -> None:
    download = DOCUMENT["paths"][PREFIX + "/services/{id}/backups/{backup_id}/download"]["get"]
    assert download["responses"]["200"]["content"] == {
        "application/x-tar": {"schema": {"type": "string", "format": "binary"}}
    }
    assert "application/json" in download["responses"]["404"]["content"]


def test_the_log_stream_is_documented_as_server_sent_events() -> None:
    logs = DOCUMENT["paths"][PREFIX + "/services/{id}/logs"]["get"]
    assert "text/event-stream" in logs["responses"]["200"]["content"]
    names = {parameter["name"] for parameter in logs["parameters"]}
    assert names == {"id", "lines", "since", "until", "follow"}


def sse_fields(raw: bytes) -> dict[str, Any]:
    """One server-sent event's fields as a client parses them (one line each here)."""
    fields: dict[str, Any] = {}
    for line in raw.decode().strip("\n").split("\n"):
        name, _, value = line.partition(": ")
        fields[name] = int(value) if name == "retry" else value
    return fields


def with_components(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "$defs": DOCUMENT["components"]["schemas"]}


def local_refs(node: Any) -> Any:
    """The document's ``#/components/schemas/X`` references as ``#/$defs/X``."""
    if isinstance(node, dict):
        return {
            key: value.replace("#/components/schemas/", "#/$defs/")
            if key == "$ref" and isinstance(value, str)
            else local_refs(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [local_refs(value) for value in node]
    return node


@pytest.mark.parametrize("cursor", ["s=abc;i=1f", None])
def test_each_log_event_the_stream_sends_is_one_the_document_describes(cursor: str | None) -> None:
    logs = DOCUMENT["paths"][PREFIX + "/services/{id}/logs"]["get"]
    event = local_refs(logs["responses"]["200"]["content"]["text/event-stream"]["schema"])
    entry = LogEntry(datetime(2025, 7, 31, 19, 30, tzinfo=UTC), "INFO", "up", "app", cursor, 42)
    fields = sse_fields(sse_event(entry))
    assert jsonschema_rs.validator_for(with_components(event)).is_valid(fields)
    data = with_components(event["properties"]["data"]["contentSchema"])
    assert jsonschema_rs.validator_for(data).is_valid(json.loads(fields["data"]))
    for wrong in ({**fields, "event": "other"}, {"event": "log"}, {**fields, "extra": "x"}):
        assert not jsonschema_rs.validator_for(with_components(event)).is_valid(wrong)


def test_a_created_service_links_to_what_can_be_done_with_it_by_its_id() -> None:
    ids = {
        operation["operationId"]
        for item in DOCUMENT["paths"].values()
        for operation in item.values()
    }
    create = DOCUMENT["paths"][PREFIX + "/services"]["post"]["responses"]["201"]
    links = create["links"]
    assert {link["operationId"] for link in links.values()} >= {
        "getService",
        "updateService",
        "deleteService",
    }
    for link in links.values():
        assert link["operationId"] in ids
        assert link["parameters"] == {"id": "$response.body#/id"}
    token = DOCUMENT["paths"][PREFIX + "/tokens"]["post"]["responses"]["201"]["links"]
    assert [link["operationId"] for link in token.values()] == ["revokeToken"]


def test_logout_states_that_it_takes_a_dashboard_session_only() -> None:
    logout = DOCUMENT["paths"][PREFIX + "/auth/logout"]["post"]
    assert logout["security"] == [{"sessionAuth": []}]
    assert "sessionAuth" in DOCUMENT["components"]["securitySchemes"]


def test_schemathesis_loads_every_operation() -> None:
    schema = schemathesis.openapi.from_dict(DOCUMENT)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == len(all_operations())


def documented(schema: str, *path: str) -> dict[str, Any]:
    """The schema of a property of a component (``"env", "additionalProperties"``), with a
    nullable one's non-null branch."""
    node: dict[str, Any] = DOCUMENT["components"]["schemas"][schema]
    for step in path:
        node = node["properties"][step] if "properties" in node else node[step]
        branches = [b for b in node.get("anyOf", [node]) if b.get("type") != "null"]
        node = resolve(branches[0]["$ref"]) if "$ref" in branches[0] else branches[0]
    return node


# Where each pattern of the grammar is documented: in every body and view that has it.
DOCUMENTED_PATTERNS = [
    (schema, path, pattern)
    for schema in ("ServiceCreateBody", "ServicePatchBody", "Service")
    for path, pattern in [
        (("project_name",), grammar.PROJECT_NAME),
        (("pocketbase_version",), grammar.VERSION),
        (("superuser_email",), grammar.EMAIL),
        (("description",), grammar.ONE_LINE),
        (("env", "propertyNames"), grammar.ENV_NAME),
        (("env", "additionalProperties"), grammar.ONE_LINE),
        (("resources", "memory_max"), grammar.memory_limit_stated()),
        (("resources", "cpu_quota"), grammar.CPU_QUOTA_STATED),
        (("flags", "origins", "items"), grammar.ORIGIN_STATED),
        (("flags", "encryption_env"), grammar.ENV_NAME),
    ]
] + [
    ("ServiceCreateBody", ("created_by",), grammar.ONE_LINE),
    ("Service", ("created_by",), grammar.ONE_LINE),
    ("TokenCreateBody", ("name",), grammar.NO_ASCII_CONTROLS),
]


@pytest.mark.parametrize(("schema", "path", "pattern"), DOCUMENTED_PATTERNS)
def test_the_document_states_the_grammars_own_pattern(
    schema: str, path: tuple[str, ...], pattern: grammar.Pattern
) -> None:
    assert documented(schema, *path)["pattern"] == pattern.json


def test_a_documented_pattern_is_the_grammars_text_anchored_whole() -> None:
    assert grammar.CPU_QUOTA.json == "^(?:([1-9][0-9]{0,4})%)$"
    assert re.search(grammar.MEMORY_LIMIT.json, "512M") is not None
    # The alternatives are anchored together: neither end may carry anything else.
    assert re.search(grammar.MEMORY_LIMIT.json, "x512M") is None
    assert re.search(grammar.MEMORY_LIMIT.json, "infinityx") is None


def matches(pattern: grammar.Pattern, value: str) -> bool:
    """As JSON Schema reads the documented pattern (fullmatch: in Python, unlike ECMA-262,
    ``$`` also matches before a final newline)."""
    return re.fullmatch(pattern.json, value) is not None


# What the grammar accepts must match the documented pattern: otherwise the fuzzer's
# "schema-invalid" data would be accepted by the server, and clients would be told lies.


@settings(max_examples=examples(300), deadline=None)
@given(st.from_regex(r"[a-z][a-z0-9-]{0,49}", fullmatch=True))
@example("a" * 50)
@example("a-b")
def test_every_project_name_the_grammar_accepts_matches_the_documented_pattern(name: str) -> None:
    try:
        grammar.check_project_name(name)
    except grammar.GrammarError:
        return
    assert matches(grammar.PROJECT_NAME, name)


@settings(max_examples=examples(300), deadline=None)
@given(st.from_regex(r"[0-9]{1,7}\.[0-9]{1,7}\.[0-9]{1,7}(-[0-9A-Za-z.]{1,10})?", fullmatch=True))
@example("999999.0.0-rc.1")
def test_every_version_the_grammar_accepts_matches_the_documented_pattern(version: str) -> None:
    try:
        grammar.check_version(version)
    except grammar.GrammarError:
        assert not matches(grammar.VERSION, version)
        return
    assert matches(grammar.VERSION, version)


@settings(max_examples=examples(300), deadline=None)
@given(st.text(alphabet="abcXYZ09._%+-@!#$&'*/=?^`{|}~", min_size=3, max_size=40))
def test_every_email_the_grammar_accepts_matches_the_documented_pattern(email: str) -> None:
    try:
        grammar.check_email(email)
    except grammar.GrammarError:
        return
    assert matches(grammar.EMAIL, email)


@settings(max_examples=examples(300), deadline=None)
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
    assert matches(grammar.MEMORY_LIMIT, value)


@settings(max_examples=examples(200), deadline=None)
@given(st.from_regex(r"[0-9]{1,6}%", fullmatch=True))
@example("10000%")
@example("1%")
def test_every_cpu_quota_the_grammar_accepts_matches_the_documented_pattern(value: str) -> None:
    try:
        grammar.check_cpu_quota(value)
    except grammar.GrammarError:
        return
    assert matches(grammar.CPU_QUOTA, value)


@settings(max_examples=examples(200), deadline=None)
@given(st.text(alphabet="AZaz09_-", min_size=1, max_size=12))
def test_every_env_name_the_grammar_accepts_matches_the_documented_pattern(name: str) -> None:
    try:
        grammar.check_env_name(name)
    except grammar.GrammarError:
        return
    assert matches(grammar.ENV_NAME, name)


@settings(max_examples=examples(200), deadline=None)
@given(st.from_regex(r"(\*|https?://[a-z0-9.-]{1,20}(:[0-9]{1,5})?)", fullmatch=True))
def test_every_origin_the_grammar_accepts_matches_the_documented_pattern(origin: str) -> None:
    try:
        grammar.check_origin(origin)
    except grammar.GrammarError:
        return
    assert matches(grammar.ORIGIN, origin)


ONE_LINE_ALPHABET = st.sampled_from(
    [
        *"ab ",
        *"\x00\n\x1f\x7f\x85\x9f\xa0",  # C0, DEL, C1, and a no-break space that is fine
        *"\u2028\u2029",  # line and paragraph separators
        *"\u200e\u202a\u202e\u2066\u2069\u206a",  # a direction mark, bidi controls, a neighbour
        "\U0001f600",
    ]
)


@settings(max_examples=examples(300), deadline=None)
@given(st.text(alphabet=ONE_LINE_ALPHABET, max_size=12))
@example("\u200f")
def test_the_one_line_pattern_says_exactly_what_text_and_env_checks_refuse(text: str) -> None:
    try:
        grammar.check_free_text(text, 500)
        grammar.check_env_value(text)
    except grammar.GrammarError:
        assert not matches(grammar.ONE_LINE, text)
        return
    assert matches(grammar.ONE_LINE, text)
