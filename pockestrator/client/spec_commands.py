"""The spec-file commands: ``validate`` (offline, the agent's own parser) and ``apply``
(the files' services written through the API, optionally waited for)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pockestrator.client.apply import (
    Outcome,
    dry_run_check,
    list_services,
    plan,
    write_all,
    write_and_wait,
)
from pockestrator.client.commands import Console
from pockestrator.client.http import ApiClient, ApiError
from pockestrator.client.output import safe_text, table
from pockestrator.client.progress import Progress

if TYPE_CHECKING:  # the spec parser (pydantic, PyYAML) loads only for validate and apply
    from pockestrator.client.specfiles import SpecSet
    from pockestrator.specs.errors import FieldIssue


def issue_line(issue: FieldIssue) -> str:
    return safe_text(str(issue))


def validate_data(spec_set: SpecSet) -> dict[str, Any]:
    return {
        "valid": spec_set.ok,
        "files": [
            {
                "path": report.path,
                "services": [doc.spec.project_name for doc in report.documents],
                "issues": [issue.as_dict() for issue in report.issues],
            }
            for report in spec_set.files
        ],
    }


def validate_text(spec_set: SpecSet) -> str:
    lines = []
    for report in spec_set.files:
        if report.issues:
            lines += [issue_line(issue) for issue in report.issues]
        else:
            names = ", ".join(doc.spec.project_name for doc in report.documents)
            count = len(report.documents)
            lines.append(
                safe_text(
                    f"{report.path}: ok ({count} service{'s' * (count != 1)}: {names or '-'})"
                )
            )
    return "\n".join(lines)


def validate(console: Console, paths: Sequence[Path], default_domain: str) -> int:
    """Offline: the same parser as the agent, no agent needed; 1 on any issue."""
    from pockestrator.client.specfiles import load_spec_set

    spec_set = load_spec_set(paths, default_domain)
    console.show(validate_data(spec_set), lambda: validate_text(spec_set))
    if not spec_set.ok:
        count = len(spec_set.issues)
        console.note(f"{count} problem{'s' * (count != 1)} found")
        return 1
    return 0


APPLY_COLUMNS = ("NAME", "ACTION", "STATUS", "DETAIL")


def apply_row(outcome: Outcome) -> list[Any]:
    if isinstance(outcome.error, ApiError):
        detail = f"{outcome.error.code}: {outcome.error.message}"
    elif outcome.error is not None:
        detail = str(outcome.error).splitlines()[0]
    elif outcome.status == "error" and outcome.last_error:
        detail = outcome.last_error
    else:
        detail = ",".join(outcome.changed)
    return [outcome.name, outcome.verb, outcome.status, detail]


def apply(
    client: ApiClient,
    console: Console,
    paths: Sequence[Path],
    *,
    wait: bool,
    timeout: float,
    dry_run: bool,
) -> int:
    from pockestrator.client.specfiles import api_issues, load_spec_set

    info = client.call("GET", "/system/info").body
    default_domain = str((info.get("config") or {}).get("default_domain") or "localhost")
    spec_set = load_spec_set(paths, default_domain)
    problems = spec_set.issues + [i for doc in spec_set.documents for i in api_issues(doc)]
    if problems or not spec_set.documents:
        for issue in problems:
            console.note(issue_line(issue))
        console.note("nothing was applied: fix the problems above (`pockestrator validate`)")
        return 1
    existing = {str(s.get("project_name")): s for s in list_services(client)}
    outcomes = plan(spec_set.documents, existing)
    ready = True
    if dry_run:
        for outcome in outcomes:
            outcome.dry_run = True
            dry_run_check(client, outcome)
    elif wait:
        ready = write_and_wait(client, outcomes, timeout, Progress(console.err))
    else:
        write_all(client, outcomes)
    console.show(
        [o.as_dict() for o in outcomes],
        lambda: table(APPLY_COLUMNS, [apply_row(o) for o in outcomes]),
    )
    for outcome in outcomes:
        if outcome.error is not None:
            console.note(f"{outcome.name}: {outcome.error}")
        if outcome.superuser_password is not None and console.human:
            email = outcome.body.get("superuser_email")
            print(
                f"{outcome.name}: superuser {email} has the password "
                f"{outcome.superuser_password} (shown only this once)",
                file=console.out,
                flush=True,
            )
    if wait and not dry_run and not ready:
        late = ", ".join(
            f"{o.name} ({o.status or 'unknown'})" for o in outcomes if not o.failed and not o.ready
        )
        console.note(f"timed out after {timeout:g}s; not ready: {late}")
    failed = any(o.failed for o in outcomes)
    return 1 if failed or not ready else 0
