"""What a schemathesis run did, from its NDJSON report: requests per operation and mode,
their statuses, and how many answers were 5xx (``python -m tests.conformance`` prints it)."""

from __future__ import annotations

import base64
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RunSummary:
    requests: int = 0
    server_errors: int = 0
    phases: Counter[str] = field(default_factory=Counter)
    statuses: dict[str, Counter[tuple[str, int]]] = field(
        default_factory=lambda: defaultdict(Counter)
    )
    refusals: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))

    def lines(self) -> list[str]:
        out = [
            f"{self.requests} requests, {self.server_errors} answered 5xx;"
            f" by phase: {dict(sorted(self.phases.items()))}"
        ]
        for label in sorted(self.statuses):
            if label.split()[0] in {"DELETE", "GET", "PATCH", "POST"} and any(
                mode != "negative" or status != 405 for mode, status in self.statuses[label]
            ):
                shown = ", ".join(
                    f"{mode} {status}: {count}"
                    for (mode, status), count in sorted(self.statuses[label].items())
                )
                out.append(f"  {label}: {shown}")
                if self.refusals.get(label):
                    codes = ", ".join(f"{c} x{n}" for c, n in self.refusals[label].most_common(6))
                    out.append(f"    valid but refused: {codes}")
        return out


def _answer_codes(response: dict[str, Any]) -> list[str]:
    try:
        body = json.loads(base64.b64decode(response["content"]["$base64"]))
        return [f"{problem['field']} {problem['code']}" for problem in body["errors"]]
    except (KeyError, TypeError, ValueError):
        return []


def summarize(report: Path) -> RunSummary:
    summary = RunSummary()
    for line in report.read_text().splitlines():
        finished = json.loads(line).get("ScenarioFinished")
        if not finished:
            continue
        recorder = finished["recorder"]
        for case_id, interaction in recorder.get("interactions", {}).items():
            case = recorder.get("cases", {}).get(case_id, {}).get("value", {})
            response = interaction.get("response") or {}
            status = response.get("status_code")
            if status is None:
                continue
            label = f"{case.get('method')} {case.get('path')}"
            mode = ((case.get("meta") or {}).get("generation") or {}).get("mode", "?")
            summary.requests += 1
            summary.phases[finished["phase"]] += 1
            summary.statuses[label][(mode, status)] += 1
            if status >= 500:
                summary.server_errors += 1
            if mode == "positive" and status == 400:
                summary.refusals[label].update(_answer_codes(response))
    return summary
