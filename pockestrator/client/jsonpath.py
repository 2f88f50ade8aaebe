"""``-o jsonpath=TEMPLATE``: a small, documented subset of kubectl's JSONPath templates.

A template is text with expressions in braces; the text is printed as it is and each
expression is replaced by what it selects from the data (a list is given as
``{"items": [...]}``, as kubectl gives a list; one object as itself):

- ``{.a.b}``: a field, ``{.a['b-c']}`` a field by name; ``{.}`` or ``{@}`` the data itself;
- ``{.items[0]}``, ``{.items[-1]}``: an element by index; ``{.items[*]}``: every element;
  ``{.items[1:3]}``: a slice;
- ``{..name}``: every ``name`` field at any depth;
- ``{range .items[*]}...{end}``: the template inside once per element, each element as
  the data of its expressions;
- ``{"\\n"}``, ``{"\\t"}``, ``{"text"}``: literal text (with ``\\n`` and ``\\t`` escapes).

Several values are joined by a space (kubectl's way); strings print bare, numbers and
booleans as JSON (``true``, ``null``), objects and lists as JSON. Selecting what is not
there prints nothing (kubectl's ``--allow-missing-template-keys``). Filters (``?()``),
unions and recursion with wildcards are not part of the subset: they are refused with a
message, never half-understood. ``render_template`` is pure; tests/unit/test_jsonpath.py
holds a table of templates and their output.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any


class JsonPathError(ValueError):
    """A template outside the subset; the message says where."""


_MISSING = object()
_STEP = re.compile(
    r"""
    \.\.(?P<deep>[A-Za-z_][\w-]*)          # ..name
    | \.(?P<name>[A-Za-z_][\w-]*)          # .name
    | \[(?P<quoted>'[^']*'|"[^"]*")\]      # ['name']
    | \[(?P<star>\*)\]                     # [*]
    | \[(?P<slice>-?\d*:-?\d*)\]           # [1:3]
    | \[(?P<index>-?\d+)\]                 # [0]
    | \.(?P<wild>\*)                       # .*
    """,
    re.VERBOSE,
)


def _steps(path: str) -> list[tuple[str, str]]:
    """The steps of a path like ``.items[0].name`` (``.``/``@``/empty: no steps)."""
    text = path.strip()
    if text.startswith("@"):
        text = text[1:]
    if text in ("", "."):
        return []
    if not text.startswith((".", "[")):
        raise JsonPathError(f"{path!r}: a path starts with '.' (e.g. .items[0].name)")
    steps: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        match = _STEP.match(text, position)
        if match is None:
            raise JsonPathError(
                f"{path!r}: cannot read {text[position:]!r} (filters, unions and scripts are"
                " not in the supported subset; see `pockestrator get --help`)"
            )
        kind = match.lastgroup or ""
        steps.append((kind, match.group(kind)))
        position = match.end()
    return steps


def _deep(value: Any, name: str) -> list[Any]:
    found: list[Any] = []
    stack = [value]
    while stack:
        item = stack.pop(0)
        if isinstance(item, dict):
            if name in item:
                found.append(item[name])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def select(data: Any, path: str) -> list[Any]:
    """Every value ``path`` selects from ``data`` (a list: a path may fan out)."""
    current = [data]
    for kind, argument in _steps(path):
        following: list[Any] = []
        for value in current:
            if kind in ("name", "quoted"):
                key = argument if kind == "name" else argument[1:-1]
                if isinstance(value, dict) and key in value:
                    following.append(value[key])
            elif kind == "deep":
                following.extend(_deep(value, argument))
            elif kind in ("star", "wild"):
                if isinstance(value, list):
                    following.extend(value)
                elif isinstance(value, dict):
                    following.extend(value.values())
            elif kind == "index":
                if isinstance(value, list):
                    index = int(argument)
                    if -len(value) <= index < len(value):
                        following.append(value[index])
            elif kind == "slice" and isinstance(value, list):
                start, _, stop = argument.partition(":")
                following.extend(value[int(start) if start else None : int(stop) if stop else None])
        current = following
    return current


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


@dataclass
class _Node:
    kind: str  # "text", "path", "range"
    value: str = ""
    body: list[_Node] | None = None


_LITERAL = re.compile(r'^"((?:[^"\\]|\\.)*)"$')


def _literal(text: str) -> str:
    return text.replace("\\n", "\n").replace("\\t", "\t").replace('\\"', '"').replace("\\\\", "\\")


def _parse(template: str) -> list[_Node]:
    root: list[_Node] = []
    stack: list[list[_Node]] = [root]
    position = 0
    while position < len(template):
        opening = template.find("{", position)
        if opening < 0:
            stack[-1].append(_Node("text", template[position:]))
            break
        if opening > position:
            stack[-1].append(_Node("text", template[position:opening]))
        closing = template.find("}", opening)
        if closing < 0:
            raise JsonPathError(f"an unclosed '{{' at character {opening + 1}")
        inside = template[opening + 1 : closing].strip()
        position = closing + 1
        literal = _LITERAL.match(inside)
        if literal:
            stack[-1].append(_Node("text", _literal(literal.group(1))))
        elif inside.startswith("range "):
            node = _Node("range", inside[len("range ") :].strip(), [])
            _steps(node.value)  # refuse a bad path now, not on the first element
            stack[-1].append(node)
            assert node.body is not None
            stack.append(node.body)
        elif inside == "end":
            if len(stack) == 1:
                raise JsonPathError("an {end} without its {range}")
            stack.pop()
        else:
            _steps(inside)
            stack[-1].append(_Node("path", inside))
    if len(stack) != 1:
        raise JsonPathError("a {range} without its {end}")
    return root


def _render(nodes: list[_Node], data: Any) -> str:
    out: list[str] = []
    for node in nodes:
        if node.kind == "text":
            out.append(node.value)
        elif node.kind == "path":
            out.append(" ".join(_text(value) for value in select(data, node.value)))
        else:
            assert node.body is not None
            out.extend(_render(node.body, element) for element in select(data, node.value))
    return "".join(out)


def check_template(template: str) -> None:
    """Raise ``JsonPathError`` now for a template outside the subset (before any request)."""
    _parse(template)


def render_template(template: str, data: Any) -> str:
    """``template`` filled from ``data`` (see the module docstring for the subset)."""
    return _render(_parse(template), data)
