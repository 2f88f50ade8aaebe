"""Prometheus' text format (0.0.4) for the per-service families of a scrape, cheaply.

prometheus_client's ``generate_latest`` checks and escapes every label of every sample on
every scrape (about 2.5 us a sample: 25 ms for the 10,000 samples of 500 services). A
series' name and labels do not change from one scrape to the next, only its value, so here
the text before the value (``name{service="shop"} ``) is built once per series, escaped
as the format says, and kept (``SeriesText``); a scrape writes a number after each. The
output is the same text the library writes for the same families (the unit tests parse
it with the library's own parser), and the agent's own instruments are still printed by
the library (``telemetry``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

# Kept series texts, at most: past it the memory starts again (services come and go).
MAX_SERIES = 200_000


def escape_label_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def number(value: float) -> str:
    """A sample's value as the library writes it (``+Inf``, ``-Inf``, ``NaN``, else
    Python's repr of the float)."""
    text = repr(float(value))
    if text[-1] in "fn":  # inf, -inf, nan
        return {"inf": "+Inf", "-inf": "-Inf"}.get(text, "NaN")
    return text


class SeriesText:
    """The ``name{labels} `` text of each series, built once, in a table per sample name."""

    def __init__(self) -> None:
        self._tables: dict[tuple[str, tuple[str, ...]], dict[tuple[str, ...], str]] = {}
        self._count = 0

    def table(self, name: str, label_names: tuple[str, ...]) -> dict[tuple[str, ...], str]:
        """The texts kept for ``name`` by label values (filled by ``of``)."""
        key = (name, label_names)
        table = self._tables.get(key)
        if table is None:
            table = self._tables[key] = {}
        return table

    def of(self, name: str, label_names: tuple[str, ...], values: tuple[str, ...]) -> str:
        table = self.table(name, label_names)
        text = table.get(values)
        if text is None:
            if self._count >= MAX_SERIES:
                for kept in self._tables.values():
                    kept.clear()
                self._count = 0
            labels = ",".join(
                f'{label}="{escape_label_value(value)}"'
                for label, value in zip(label_names, values, strict=True)
            )
            text = table[values] = f"{name}{{{labels}}} " if labels else f"{name} "
            self._count += 1
        return text


class Family:
    """One metric family's lines: its header, then a line per sample, in the order added.

    ``kind`` is the TYPE (gauge, counter, histogram); a counter's name is given without
    ``_total``, which is added as the library does.
    """

    def __init__(
        self,
        series: SeriesText,
        name: str,
        documentation: str,
        kind: str,
        label_names: Sequence[str] = ("service",),
    ) -> None:
        self.series = series
        self.name = f"{name}_total" if kind == "counter" else name
        self.kind = kind
        self.label_names = tuple(label_names)
        self._texts = series.table(self.name, self.label_names)
        self.lines = [f"# HELP {self.name} {documentation}\n# TYPE {self.name} {kind}"]

    def add(self, values: tuple[str, ...], value: float) -> None:
        text = self._texts.get(values)
        if text is None:
            text = self.series.of(self.name, self.label_names, values)
        self.lines.append(text + number(value))

    def add_histogram(
        self, values: tuple[str, ...], buckets: Iterable[tuple[str, float]], total: float
    ) -> None:
        """Cumulative ``(le, count)`` pairs ending with ``+Inf``, and the sum of values."""
        series, lines = self.series, self.lines
        bucket_labels = ("le", *self.label_names)
        count = 0.0
        for le, cumulative in buckets:
            text = series.of(f"{self.name}_bucket", bucket_labels, (le, *values))
            lines.append(text + number(cumulative))
            count = cumulative
        label_names = self.label_names
        lines.append(series.of(f"{self.name}_count", label_names, values) + number(count))
        lines.append(series.of(f"{self.name}_sum", label_names, values) + number(total))

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def write(families: Iterable[Family]) -> bytes:
    return "".join(family.text() for family in families).encode()
