"""``-o jsonpath=``: the subset of kubectl's templates, as a table (client/jsonpath.py)."""

from __future__ import annotations

import pytest

from pockestrator.client.jsonpath import JsonPathError, check_template, render_template

SERVICES = {
    "items": [
        {"project_name": "blog", "port": 8090, "env": {"A-B": "1"}, "health_ok": True},
        {"project_name": "shop", "port": 8091, "env": {}, "health_ok": None},
    ]
}


@pytest.mark.parametrize(
    ("template", "output"),
    [
        ("{.items[0].project_name}", "blog"),
        ("{.items[-1].port}", "8091"),
        ("{.items[*].project_name}", "blog shop"),
        ("{.items[0:1].project_name}", "blog"),
        ("{.items[1:].port}", "8091"),
        ("{..port}", "8090 8091"),
        ("{.items[0].env['A-B']}", "1"),
        ('{.items[0].env["A-B"]}', "1"),
        ("{.items[0].health_ok} {.items[1].health_ok}", "true null"),
        ("{.items[1].env}", "{}"),
        ("{.items[0].env.*}", "1"),
        ("name: {.items[0].project_name}!", "name: blog!"),
        ('{range .items[*]}{.project_name}{"\\t"}{.port}{"\\n"}{end}', "blog\t8090\nshop\t8091\n"),
        ("{range .items[*]}[{.project_name}]{end}", "[blog][shop]"),
        ("{.items[5].project_name}", ""),
        ("{.missing.deeper}", ""),
        ("{@.items[0].port}", "8090"),
        ("plain text", "plain text"),
        ('{"a\\"b"}', 'a"b'),
    ],
)
def test_a_template_renders_what_it_selects(template: str, output: str) -> None:
    assert render_template(template, SERVICES) == output


def test_the_whole_data_is_dot() -> None:
    assert render_template("{.}", {"a": 1}) == '{"a": 1}'
    assert render_template("{.}", "text") == "text"


@pytest.mark.parametrize(
    "template",
    [
        "{.items[?(@.port>1)]}",
        "{.items[0,1]}",
        "{items}",
        "{.items",
        "{range .items[*]}{.a}",
        "{end}",
        "{.a b}",
    ],
)
def test_what_the_subset_lacks_is_refused_not_guessed(template: str) -> None:
    with pytest.raises(JsonPathError):
        check_template(template)
