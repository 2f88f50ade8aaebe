"""What the CLI prints: aligned tables for people, JSON and YAML for scripts.

Pure functions from data to text. Table cells are made safe for a terminal: text that came
from the agent (service descriptions, error messages, log lines) could carry escape
sequences, so control characters are shown escaped rather than interpreted. JSON and YAML
are printed as the data is, for programs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

Format = Literal["table", "wide", "json", "yaml", "name", "jsonpath"]
# The formats for people: tables (``wide`` adds columns); the rest are for programs.
HUMAN_FORMATS = ("table", "wide")
MISSING = "-"

# C0 controls except tab, DEL, C1 controls, and the bidirectional overrides that can make
# a line read differently from what it holds.
_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def safe_text(text: str) -> str:
    """``text`` with control characters escaped, so a terminal prints rather than obeys them."""
    return _UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def cell(value: Any) -> str:
    """One table cell: ``-`` for nothing, yes/no for booleans, lists joined by commas."""
    if value is None or value == "":
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ",".join(cell(item) for item in value) or MISSING
    if isinstance(value, Mapping):
        return ",".join(f"{k}={cell(v)}" for k, v in value.items()) or MISSING
    return safe_text(str(value))


# The terminal's width for tables (None: no limit, as when the output is piped). Set once by
# the CLI from the terminal (``terminal_width``); the table functions stay pure given it.
TABLE_WIDTH: list[int | None] = [None]
ELLIPSIS = "\u2026"


def terminal_width(environ: Mapping[str, str], is_tty: bool, measured: int) -> int | None:
    """``COLUMNS`` when set (as ls and kubectl honour it), else the terminal's width when the
    output is a terminal; None when it is piped (a program reads whole lines)."""
    columns = environ.get("COLUMNS", "").strip()
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    return measured if is_tty and measured > 0 else None


def fit(line: str, width: int | None) -> str:
    """``line`` cut to ``width`` characters, the cut shown by an ellipsis."""
    if width is None or len(line) <= width:
        return line
    return line[: max(width - 1, 0)] + ELLIPSIS


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], width: int | None = None) -> str:
    """Columns padded to their widest cell, two spaces apart; the last one is not padded.
    Lines longer than ``width`` (default: the terminal's, ``TABLE_WIDTH``) are cut."""
    limit = width if width is not None else TABLE_WIDTH[0]
    text_rows = [[cell(value) for value in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in text_rows:
        for index, value in enumerate(row):
            widths[index] = max(widths[index], len(value))
    lines = []
    for row in [list(headers), *text_rows]:
        padded = [value.ljust(widths[i]) for i, value in enumerate(row[:-1])]
        lines.append(fit("  ".join([*padded, row[-1]]).rstrip(), limit))
    return "\n".join(lines)


def fields(pairs: Sequence[tuple[str, Any]]) -> str:
    """``Label:  value`` lines with the values aligned (for ``describe``)."""
    width = max((len(label) for label, _ in pairs), default=0) + 1
    return "\n".join(f"{(label + ':').ljust(width)}  {cell(value)}" for label, value in pairs)


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False)


def to_yaml(data: Any) -> str:
    import yaml  # only when asked for: it is not needed for the other formats

    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)


def name_of(item: Any) -> str | None:
    """What ``-o name`` prints for one item: ``service/NAME`` for a service (kubectl's
    ``kind/name``, which every command taking NAME accepts), else its name or id."""
    if not isinstance(item, Mapping):
        return None
    if item.get("project_name"):
        return f"service/{item['project_name']}"
    for key in ("name", "id"):
        if item.get(key) not in (None, ""):
            return safe_text(str(item[key]))
    return None


def names(data: Any) -> str:
    items = data if isinstance(data, list) else [data]
    return "\n".join(name for name in map(name_of, items) if name is not None)


def render(data: Any, fmt: Format, text: str, template: str = "") -> str:
    """``data`` in the chosen format; ``text`` is the table form, already rendered."""
    if fmt == "json":
        return to_json(data)
    if fmt == "yaml":
        return to_yaml(data).rstrip("\n")
    if fmt == "name":
        return names(data)
    if fmt == "jsonpath":
        from pockestrator.client.jsonpath import render_template

        return render_template(template, {"items": data} if isinstance(data, list) else data)
    return text


def short_time(value: Any) -> str | None:
    """An API timestamp (``2025-07-31T19:30:00.123456Z``) to the second, or None."""
    if not isinstance(value, str) or not value:
        return None
    head, dot, rest = value.partition(".")
    if dot and rest.endswith("Z"):
        return head + "Z"
    return value


def duration(seconds: float) -> str:
    """``4s``, ``3m05s``, ``2h30m``: how long a wait has taken, for people."""
    whole = int(seconds)
    if whole < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
