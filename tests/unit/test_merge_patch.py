"""JSON merge patch (RFC 7396): the examples of its appendix A, and what a patch leaves alone."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pockestrator.api.merge_patch import merge_patch

# RFC 7396, appendix A: target, patch, result.
RFC_7396_EXAMPLES: list[tuple[Any, Any, Any]] = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "result"), RFC_7396_EXAMPLES)
def test_merge_patches_follow_rfc_7396(target: Any, patch: Any, result: Any) -> None:
    assert merge_patch(target, patch) == result


SPEC = {
    "project_name": "app",
    "port": 8080,
    "env": {"A": "1", "B": "2"},
    "backups": {"keep": {"daily": 7, "weekly": 4}},
}


@pytest.mark.parametrize(
    ("patch", "result"),
    [
        ({}, SPEC),
        ({"port": 9090}, {**SPEC, "port": 9090}),
        ({"env": {"B": None}}, {**SPEC, "env": {"A": "1"}}),
        ({"env": {"C": "3"}}, {**SPEC, "env": {"A": "1", "B": "2", "C": "3"}}),
        ({"env": {"Z": None}}, SPEC),
        ({"nothing": None}, SPEC),
        ({"env": None}, {key: value for key, value in SPEC.items() if key != "env"}),
        ({"env": {}}, SPEC),
        (
            {"backups": {"keep": {"daily": 1}}},
            {**SPEC, "backups": {"keep": {"daily": 1, "weekly": 4}}},
        ),
        ({"backups": {"keep": 3}}, {**SPEC, "backups": {"keep": 3}}),
        ({"port": {"x": 1}}, {**SPEC, "port": {"x": 1}}),
        ({"port": [None]}, {**SPEC, "port": [None]}),
        ({"port": False}, {**SPEC, "port": False}),
        ({"port": 0}, {**SPEC, "port": 0}),
        ({"port": ""}, {**SPEC, "port": ""}),
    ],
    ids=[
        "empty-patch-changes-nothing",
        "value-replaced",
        "nested-null-removes-one-key",
        "nested-key-added-beside-the-others",
        "removing-an-absent-key-is-no-error",
        "removing-an-absent-top-key-is-no-error",
        "null-removes-a-whole-object",
        "empty-object-changes-nothing",
        "deep-merge-keeps-siblings",
        "scalar-replaces-an-object",
        "object-replaces-a-scalar",
        "arrays-replace-whole-and-keep-their-nulls",
        "false-is-a-value-not-a-removal",
        "zero-is-a-value-not-a-removal",
        "empty-string-is-a-value-not-a-removal",
    ],
)
def test_a_patch_changes_only_what_it_names(patch: dict[str, Any], result: Any) -> None:
    assert merge_patch(SPEC, patch) == result


def test_neither_the_target_nor_the_patch_is_changed_in_place() -> None:
    target, patch = copy.deepcopy(SPEC), {"env": {"A": None}, "backups": {"keep": {"daily": 1}}}
    before_target, before_patch = copy.deepcopy(target), copy.deepcopy(patch)
    merged = merge_patch(target, patch)
    assert (target, patch) == (before_target, before_patch)
    assert merged["env"] == {"B": "2"}
    merged["env"]["B"] = "changed"
    assert target["env"] == {"A": "1", "B": "2"}


def test_the_result_of_an_object_patch_is_a_plain_dict() -> None:
    merged = merge_patch(None, {"a": {"b": 1}})
    assert type(merged) is dict and type(merged["a"]) is dict
    assert merged == {"a": {"b": 1}}
