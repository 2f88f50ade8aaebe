"""A spec file's text, however hostile, becomes specs or issues that name a field and a
code: it never raises (the watcher would die with it) and never takes the parser long.

Hypothesis writes the text three ways: any Unicode, YAML-shaped token soup (anchors,
aliases, tags, flow brackets, keys a spec has), and real YAML of random nested data; the
tables hold the shapes a fuzzer finds slowly (alias bombs, recursive aliases, deep
nesting, values PyYAML's constructors choke on).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pockestrator.specs.errors import ErrorCode
from pockestrator.specs.yamldir import (
    MAX_DOCUMENT_DEPTH,
    MAX_DOCUMENT_NODES,
    ParsedFile,
    parse_spec_file,
)

GOOD = 'project_name: shop\nport: 9100\npocketbase_version: "0.29.0"\n'
TOKENS = [
    "project_name", "port", "pocketbase_version", "env", "flags", "resources", "egress",
    ": ", ":", "- ", "? ", "---\n", "...\n", "\n", "  ", "\t", "[", "]", "{", "}", ",",
    "&a ", "&b ", "*a", "*b", "<<: ", "!!int ", "!!str ", "!!float ", "!!timestamp ",
    "!!binary ", "!!set ", "!!omap ", "!!python/object:os.system ", "!custom ", "%YAML 1.1\n",
    "'", '"', "#", "|", ">", "9100", "0x1F", "1e400", "2001-02-30", "~", "null", "yes",
    "shop", "\\u0000", "é", "\u202e", "\x85",
]  # fmt: skip


def yaml_soup() -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(TOKENS), max_size=60).map("".join)


def nested_data() -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(st.text(max_size=12) | st.integers(), inner, max_size=4)
        ),
        max_leaves=30,
    )


def dumped(data: Any) -> str:
    return yaml.safe_dump(data, allow_unicode=True)


def assert_reported(parsed: ParsedFile) -> None:
    """Every issue names a field and a code of the public enum, and where it is."""
    for issue in parsed.issues:
        assert issue.field, issue
        assert isinstance(issue.code, ErrorCode), issue
        assert issue.file == "fuzz.yaml", issue
        assert issue.message and len(issue.message) <= 400, issue
    if parsed.issues:
        assert parsed.specs or not parsed.ok


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.text(max_size=300)
    | yaml_soup()
    | nested_data().map(dumped)
    | st.tuples(yaml_soup(), nested_data().map(dumped)).map("".join)
    | yaml_soup().map(lambda soup: GOOD + soup)
)
def test_any_text_becomes_specs_or_issues_with_a_field_and_a_code(text: str) -> None:
    assert_reported(parse_spec_file("fuzz.yaml", text, "example.test"))


@settings(max_examples=100, deadline=None)
@given(nested_data())
def test_a_good_spec_survives_any_further_mapping_beside_it_as_issues_only(extra: Any) -> None:
    """Unknown keys of any shape refuse the document with their own field names."""
    text = GOOD + dumped({"extra_key": extra})
    parsed = parse_spec_file("fuzz.yaml", text, "example.test")
    assert [(issue.field, issue.code) for issue in parsed.issues] == [
        ("extra_key", ErrorCode.UNKNOWN_FIELD)
    ]


def alias_bomb(levels: int, mapping: bool) -> str:
    if mapping:
        lines = ["l0: &l0 {a: 1, b: 2}"]
        lines += [f"l{i}: &l{i} {{a: *l{i - 1}, b: *l{i - 1}}}" for i in range(1, levels)]
    else:
        lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
        lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "code", "words"),
    [
        (alias_bomb(40, mapping=True), ErrorCode.FILE_UNREADABLE, f"{MAX_DOCUMENT_NODES} values"),
        (alias_bomb(9, mapping=False), ErrorCode.FILE_UNREADABLE, f"{MAX_DOCUMENT_NODES} values"),
        ("a: &a {b: *a}\n", ErrorCode.FILE_UNREADABLE, "contains it"),
        ("&a [*a]\n", ErrorCode.FILE_UNREADABLE, "contains it"),
        ("a: " + "[" * 100_000, None, ""),
        ("a: " + "{a: " * 10_000 + "1" + "}" * 10_000, None, ""),
        ("".join("  " * i + "a:\n" for i in range(2000)), None, ""),
        ("- " * 100_000, None, ""),
        ("a: " + "[" * (MAX_DOCUMENT_DEPTH + 2) + "]" * (MAX_DOCUMENT_DEPTH + 2), None, ""),
        ("a: 2001-02-30\n", ErrorCode.YAML_SYNTAX, "cannot read"),
        ("a: !!int x\n", ErrorCode.YAML_SYNTAX, "cannot read"),
        ("a: !!float x\n", ErrorCode.YAML_SYNTAX, "cannot read"),
        ("a: !!timestamp x\n", ErrorCode.YAML_SYNTAX, "cannot read"),
        ("port: 0x_\n", ErrorCode.YAML_SYNTAX, "cannot read"),
        ("port: " + "9" * 5000 + "\n", ErrorCode.YAML_SYNTAX, "cannot read"),
        ("a: !!python/object:os.system ls\n", ErrorCode.YAML_SYNTAX, "constructor"),
        ("? [1, 2]\n: 3\n", ErrorCode.YAML_SYNTAX, "unhashable"),
        ("\x00\x01 binary", ErrorCode.YAML_SYNTAX, "unacceptable character"),
        ("<<: 5\n", ErrorCode.YAML_SYNTAX, ""),
    ],
)
def test_hostile_yaml_is_one_issue_on_the_file_found_at_once(
    text: str, code: ErrorCode | None, words: str
) -> None:
    started = time.process_time()
    parsed = parse_spec_file("fuzz.yaml", text, "example.test")
    assert time.process_time() - started < 5  # a bound on a runaway, not a timing target
    assert_reported(parsed)
    assert not parsed.specs
    (issue,) = parsed.issues
    assert issue.field == "<file>"
    if code is not None:
        assert issue.code == code
        assert words in issue.message
    else:  # too deep: libyaml's own limit, or ours, whichever comes first
        assert issue.code in {ErrorCode.YAML_SYNTAX, ErrorCode.FILE_UNREADABLE}
        assert "depth" in issue.message or "deeper" in issue.message


def test_a_document_within_the_bounds_is_read_with_its_aliases() -> None:
    text = GOOD + "env: {A: &v '1', B: *v}\n"
    parsed = parse_spec_file("fuzz.yaml", text, "example.test")
    assert parsed.ok, parsed.issues
    assert [dict(spec.env) for spec in parsed.specs] == [{"A": "1", "B": "1"}]
