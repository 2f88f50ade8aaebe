"""Each value the OpenAPI document states is what the grammar takes, both ways.

A value the document admits must be taken (or a fuzzer's valid request is refused), and a
value it refuses must be refused (or its invalid one is taken): the document is judged as
a client's validator reads it (jsonschema_rs, Draft 2020-12, formats on), against the
grammar's own check. Where the document is knowingly narrower (a Unicode or A-label domain,
an IPv6 network: IDNA and networks are beyond JSON Schema), the test says so.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any

import jsonschema_rs
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pockestrator.api.log_routes import parse_since
from pockestrator.api.models.requests import SINCE
from pockestrator.api.openapi import build_openapi
from pockestrator.api.routing import PREFIX
from pockestrator.api.server import all_operations
from pockestrator.specs import grammar
from tests.examples import examples

DOCUMENT = build_openapi(all_operations())
SCHEMAS = DOCUMENT["components"]["schemas"]


def non_null(node: dict[str, Any]) -> dict[str, Any]:
    """A property's schema without its null branch (and its reference resolved)."""
    if "$ref" in node:
        return non_null(SCHEMAS[node["$ref"].rsplit("/", 1)[1]])
    options = node.get("anyOf")
    if options is None:
        return node
    kept = [option for option in options if option.get("type") != "null"]
    if len(kept) == len(options):
        return node  # an anyOf of rules, not of null or a value
    return non_null(kept[0]) if len(kept) == 1 else {"anyOf": kept}


def stated(schema: str, *path: str) -> Callable[[Any], bool]:
    """Whether the document admits a value of a property (``items``: of its items)."""
    node: dict[str, Any] = SCHEMAS[schema]
    for step in path:
        node = non_null(node["items"] if step == "items" else node["properties"][step])
    return jsonschema_rs.validator_for(node, validate_formats=True).is_valid


def takes(check: Callable[[str], object]) -> Callable[[str], bool]:
    def verdict(value: str) -> bool:
        try:
            check(value)
        except grammar.GrammarError:
            return False
        return True

    return verdict


def query_parameter(path: str, name: str) -> Callable[[Any], bool]:
    operation = DOCUMENT["paths"][PREFIX + path]["get"]
    (parameter,) = [p for p in operation["parameters"] if p["name"] == name]
    return jsonschema_rs.validator_for(parameter["schema"], validate_formats=True).is_valid


# -- the domain ----------------------------------------------------------------------------

# The body's hostname branch (its others: null and "", the default).
DOMAIN_BODY = jsonschema_rs.validator_for(
    SCHEMAS["ServiceCreateBody"]["properties"]["domain"]["anyOf"][0], validate_formats=True
).is_valid
DOMAIN_TAKEN = takes(grammar.normalize_domain)
A_LABEL_PLACE = re.compile(r"(?:^|\.)..--", re.ASCII)


@settings(max_examples=examples(400), deadline=None)
@given(st.text(alphabet="aZ09.-x", max_size=20))
@example("a.b.")
@example("A.B")
@example("1.2")
@example("1a.2")
@example("ab--c.d")
@example("a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 61 + ".")
@example("a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 62)
def test_an_ascii_domain_is_admitted_exactly_when_it_is_taken(text: str) -> None:
    if DOMAIN_TAKEN(text) and A_LABEL_PLACE.search(text):
        return  # an A-label (xn--...): taken by IDNA, beyond what a pattern can state
    assert DOMAIN_BODY(text) == DOMAIN_TAKEN(text), text


@settings(max_examples=examples(200), deadline=None)
@given(st.from_regex(grammar.HOSTNAME.regex, fullmatch=True))
def test_every_domain_the_pattern_generates_is_taken_unless_the_schema_refuses_it(
    text: str,
) -> None:
    assert DOMAIN_TAKEN(text) or not DOMAIN_BODY(text), text


def test_a_unicode_domain_is_taken_beyond_the_document_and_shown_as_its_a_labels() -> None:
    assert not DOMAIN_BODY("bücher.example") and DOMAIN_TAKEN("bücher.example")
    stored = grammar.normalize_domain("bücher.example")
    assert stored == "xn--bcher-kva.example"
    assert stated("Service", "domain")(stored)


def test_an_empty_or_null_domain_is_admitted_in_bodies_as_the_default() -> None:
    for body in ("ServiceCreateBody", "ServicePatchBody"):
        branches = SCHEMAS[body]["properties"]["domain"]["anyOf"]
        assert {"const": "", "type": "string"} in branches
        assert {"type": "null"} in branches


# -- the project name ----------------------------------------------------------------------

NAME_BODY = stated("ServiceCreateBody", "project_name")
NAME_TAKEN = takes(grammar.check_project_name)


@settings(max_examples=examples(400), deadline=None)
@given(st.text(alphabet="ab09-xn", max_size=12) | st.sampled_from(sorted(grammar.RESERVED_NAMES)))
@example("ab--c")
@example("a--b")
@example("api")
def test_a_project_name_is_admitted_exactly_when_it_is_taken(name: str) -> None:
    assert NAME_BODY(name) == NAME_TAKEN(name), name


# -- resources, flags, env, egress ---------------------------------------------------------

MEMORY_BODY = stated("ResourcesBody", "memory_max")
MEMORY_TAKEN = takes(grammar.memory_limit_bytes)


@settings(max_examples=examples(400), deadline=None)
@given(
    st.builds(
        lambda zeros, number, unit: "0" * zeros + str(number) + unit,
        st.integers(0, 3),
        st.integers(0, 20) | st.integers(0, 10**15) | st.sampled_from([16777216, 8388608]),
        st.sampled_from(["", "K", "M", "G", "T", "%"]),
    )
    | st.text(alphabet="0123456789KMGTinfty%x", max_size=18)
)
@example("16777215")
@example("16M")
@example("15M")
@example("8388607T")
@example("8388608T")
@example("100%")
@example("0%")
@example("infinity")
def test_a_memory_limit_is_admitted_exactly_when_it_is_taken(value: str) -> None:
    assert MEMORY_BODY(value) == MEMORY_TAKEN(value), value


@pytest.mark.parametrize(
    "value", ["1%", "100%", "10000%", "10001%", "0%", "01%", "99999%", "%", "1.5%"]
)
def test_a_cpu_quota_is_admitted_exactly_when_it_is_taken(value: str) -> None:
    assert stated("ResourcesBody", "cpu_quota")(value) == takes(grammar.check_cpu_quota)(value)


@pytest.mark.parametrize(
    "value",
    ["*", "http://a.b", "https://a.b:443", "https://a.b:0", "https://a.b:65535",
     "https://a.b:65536", "https://a.b:080", "ftp://a.b", "http://A.b"],
)  # fmt: skip
def test_an_origin_is_admitted_exactly_when_it_is_taken(value: str) -> None:
    admitted = stated("FlagsBody", "origins", "items")(value)
    assert admitted == takes(grammar.check_origin)(value)


@pytest.mark.parametrize("name", ["GOMEMLIMIT", "LD_PRELOAD", "LD_", "LDX", "_LD_X", "lower"])
def test_an_env_name_is_admitted_exactly_when_it_is_taken(name: str) -> None:
    names = SCHEMAS["ServiceCreateBody"]["properties"]["env"]["propertyNames"]
    admitted = jsonschema_rs.validator_for(names).is_valid(name)
    assert admitted == takes(grammar.check_env_name)(name)


EGRESS_ITEM = stated("ServiceCreateBody", "egress", "items")
EGRESS_TAKEN = takes(grammar.check_egress)


@settings(max_examples=examples(400), deadline=None)
@given(
    st.builds(
        lambda address, prefix: f"{ipaddress.IPv4Address(address)}/{prefix}",
        st.integers(0, 2**32 - 1),
        st.integers(0, 33),
    )
    | st.integers(0, 2**32 - 1).map(lambda a: str(ipaddress.IPv4Address(a)))
    | st.integers(0, 2**128 - 1).map(lambda a: str(ipaddress.IPv6Address(a)))
    | st.text(alphabet="0123456789.:/abf", max_size=20)
)
@example("10.0.0.0/8")
@example("10.0.0.1/8")
@example("010.0.0.1")
@example("any")
@example("0.0.0.0/0")
def test_an_egress_entry_is_admitted_exactly_when_it_is_taken(value: str) -> None:
    if EGRESS_TAKEN(value) and ":" in value and "/" in value:
        return  # an IPv6 network: taken, and left to the description (no schema states it)
    if spelled_otherwise_than_python(value):
        return  # the "ipv6" format admits every spelling; only Python's own one is taken
    assert EGRESS_ITEM(value) == EGRESS_TAKEN(value), value


def spelled_otherwise_than_python(value: str) -> bool:
    """An IPv6 address written otherwise than Python writes it (``::FFFF:1.2.3.4``)."""
    try:
        return str(ipaddress.IPv6Address(value)) != value
    except ValueError:
        return False


def test_the_egress_list_states_any_alone_and_each_entry_once() -> None:
    admits = stated("ServiceCreateBody", "egress")
    assert admits(["10.0.0.0/8", "192.0.2.1"])
    assert not admits(["any", "10.0.0.0/8"])
    assert not admits(["192.0.2.1", "192.0.2.1"])
    assert admits(["any"])


# -- the query ------------------------------------------------------------------------------

SINCE_ADMITTED = query_parameter("/services/{id}/logs", "since")


def since_taken(text: str) -> bool:
    try:
        parse_since(text)
    except ValueError:
        return False
    return True


@settings(max_examples=examples(300), deadline=None)
@given(st.from_regex(SINCE.regex, fullmatch=True))
def test_every_moment_the_since_pattern_admits_is_taken(text: str) -> None:
    assert since_taken(text), text


@settings(max_examples=examples(300), deadline=None)
@given(st.text(alphabet="0123456789-:T Z+.tz", max_size=30))
@example("2025-02-29")
@example("2024-02-29")
@example("1900-02-29T00:00Z")
@example("2000-02-29T00:00Z")
@example("1970-12-31T23:59:59Z")
@example("9999-12-31T23:59:59.999999999-23:59")
@example("2025-07-31+05:00")
def test_since_is_admitted_exactly_when_it_is_taken(text: str) -> None:
    assert SINCE_ADMITTED(text) == since_taken(text), text


@pytest.mark.parametrize(
    ("path", "name", "value", "admitted"),
    [
        ("/services", "limit", 500, True),
        ("/services", "limit", 501, False),
        ("/services", "limit", 0, False),
        ("/services", "offset", 9_999_999_999, True),
        ("/services", "offset", 10_000_000_000, False),
        ("/services", "offset", 0, True),
        ("/services/{id}/events", "before", 0, False),
        ("/services/{id}/events", "before", 1, True),
        ("/services/{id}/events", "before", 10_000_000_000, False),
        ("/services", "domain", "", True),
    ],
)
def test_query_numbers_state_their_bounds(path: str, name: str, value: Any, admitted: bool) -> None:
    assert query_parameter(path, name)(value) is admitted


# -- decimal ranges -------------------------------------------------------------------------


@settings(max_examples=examples(300), deadline=None)
@given(st.integers(1, 10**7), st.integers(0, 10**7), st.integers(0, 2 * 10**7))
def test_a_decimal_range_matches_exactly_the_numbers_in_it(low: int, span: int, n: int) -> None:
    high = low + span
    assert (re.fullmatch(grammar.decimal_range(low, high), str(n)) is not None) == (
        low <= n <= high
    )


@pytest.mark.parametrize(
    ("text", "matched"),
    [("0016", True), ("16", True), ("00016", False), ("15", False), ("0100", True)],
)
def test_a_padded_decimal_range_allows_leading_zeros_within_its_digits(
    text: str, matched: bool
) -> None:
    pattern = grammar.decimal_range(16, 100, digits=4)
    assert (re.fullmatch(pattern, text) is not None) is matched
