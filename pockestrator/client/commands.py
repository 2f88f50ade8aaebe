"""The client commands: each takes its arguments, an ``ApiClient`` and a ``Console``, and
returns the exit code (0 ok, 1 failure). Argument parsing is in
``client.command_arguments``, the choice of command in ``client.dispatch``.

Results go to stdout in the chosen format; notes, progress and errors go to stderr, so
``-o json`` output can always be piped into another program.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from pockestrator.client.apply import (
    LIST_PAGE,
    Outcome,
    dry_run_check,
    list_services,
    plan,
    write_all,
    write_and_wait,
)
from pockestrator.client.http import (
    WAITING_TIMEOUT,
    ApiClient,
    ApiError,
    ClientError,
    service_path,
)
from pockestrator.client.output import (
    HUMAN_FORMATS,
    Format,
    fields,
    render,
    safe_text,
    short_time,
    table,
    to_yaml,
)
from pockestrator.client.progress import Progress

if TYPE_CHECKING:  # the spec parser (pydantic, PyYAML) loads only for validate and apply
    from pockestrator.client.specfiles import SpecSet
    from pockestrator.specs.errors import FieldIssue


@dataclass
class Console:
    """Where a command writes: its result (stdout, in ``fmt``) and everything else (stderr)."""

    fmt: Format = "table"
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    template: str = ""  # for -o jsonpath=TEMPLATE

    @property
    def human(self) -> bool:
        return self.fmt in HUMAN_FORMATS

    def show(
        self, data: Any, text: Callable[[], str], wide: Callable[[], str] | None = None
    ) -> None:
        """``data`` as JSON/YAML/names/JSONPath, or ``text()`` (the human form) for tables;
        ``wide()`` for ``-o wide`` where a command has more columns to show."""
        human = ""
        if self.fmt == "wide":
            human = (wide or text)()
        elif self.fmt == "table":
            human = text()
        rendered = render(data, self.fmt, human, self.template)
        if rendered:
            # A template that ends its own lines (``{"\n"}``) gets no blank line after.
            print(rendered, file=self.out, flush=True, end="" if rendered.endswith("\n") else "\n")

    def note(self, message: str) -> None:
        print(message, file=self.err, flush=True)


# -- services ----------------------------------------------------------------------------

SERVICE_COLUMNS = (
    "NAME",
    "STATUS",
    "DESIRED",
    "VERSION",
    "PORT",
    "DOMAIN",
    "SOURCE",
    "HEALTHY",
    "NODE",
)


def service_row(service: dict[str, Any]) -> list[Any]:
    return [
        service.get("project_name"),
        service.get("status"),
        service.get("desired_state"),
        service.get("pocketbase_version"),
        service.get("port"),
        service.get("domain"),
        service.get("source"),
        service.get("health_ok"),
        service.get("node"),  # where it runs: the host's own name on one host
    ]


WIDE_COLUMNS = (*SERVICE_COLUMNS, "ID", "URL", "CREATED", "LAST ERROR")


def wide_row(service: dict[str, Any]) -> list[Any]:
    return [
        *service_row(service),
        service.get("id"),
        service.get("url"),
        short_time(service.get("created_at")),
        service.get("last_error"),
    ]


def service_name(text: str) -> str:
    """A NAME as given, or as ``-o name`` prints it (``service/NAME``, kubectl's way)."""
    return text.removeprefix("service/")


def get(client: ApiClient, console: Console, name: str | None, status: str | None) -> int:
    if name is not None:
        service = client.call("GET", service_path(service_name(name))).body["service"]
        console.show(
            service,
            lambda: table(SERVICE_COLUMNS, [service_row(service)]),
            lambda: table(WIDE_COLUMNS, [wide_row(service)]),
        )
        return 0
    services = list_services(client, status)
    if not services and console.human:
        console.note("no services" + (f" with status {status}" if status else ""))
        return 0
    console.show(
        services,
        lambda: table(SERVICE_COLUMNS, [service_row(s) for s in services]),
        lambda: table(WIDE_COLUMNS, [wide_row(s) for s in services]),
    )
    return 0


def each(console: Console, names: Sequence[str], run: Callable[[str], int]) -> int:
    """``run`` for every name, as systemctl and docker take several: a failure is said and
    the others still run; the exit code is the first failure's (0 when all worked)."""
    from pockestrator.client.exits import exit_code

    worst = 0
    for name in names:
        try:
            code = run(service_name(name))
        except ApiError as exc:
            if len(names) == 1:
                raise
            console.note(f"{name}: {exc}")
            code = exit_code(exc)
        worst = worst or code
    return worst


def watch(client: ApiClient, console: Console, name: str | None, status: str | None) -> int:
    """``get -w``: the current services, then one line (or object) per change."""
    from pockestrator.client.watch import Columns, follow

    columns = Columns(SERVICE_COLUMNS)
    first: list[dict[str, Any]] = []
    started = False

    def emit(services: list[dict[str, Any]], *, header: bool) -> None:
        if console.fmt == "table":
            for line in columns.lines([service_row(s) for s in services], header=header):
                print(line, file=console.out, flush=True)
            return
        for service in services:
            text = json.dumps(service) if console.fmt == "json" else "---\n" + to_yaml(service)
            print(text, file=console.out, flush=True)

    for kind, data in follow(client, name, status):
        if kind == "deleted":
            data = {"project_name": data.get("project_name"), "status": "deleted"}
        if kind == "synced":
            if not started:
                emit(first, header=True)
                started = True
        elif not started and name is None:
            first.append(data)
        else:
            emit([data], header=not started)
            started = True
        if kind == "deleted" and name is not None:
            return 0  # the one service watched is gone: so is its stream
    return 0


def describe_text(detail: dict[str, Any]) -> str:
    service = detail["service"]
    runtime = detail["runtime_status"]
    status = detail["status"]
    source = service.get("source")
    if service.get("source_file"):
        source = f"file {service['source_file']}"
    unit_state = f"{runtime.get('systemd_status')}/{runtime.get('sub_state') or '-'}"
    if status.get("pid"):
        unit_state += f", pid {status['pid']}"
    if status.get("active_since"):
        unit_state += f", since {short_time(status['active_since'])}"
    resources = service.get("resources") or {}
    flags = {k: v for k, v in (service.get("flags") or {}).items() if v is not None}
    health = {True: "ok", False: "failing", None: "not checked yet"}[service.get("health_ok")]
    pairs: list[tuple[str, Any]] = [
        ("Name", service.get("project_name")),
        ("ID", service.get("id")),
        ("Status", f"{service.get('status')} (desired: {service.get('desired_state')})"),
        ("Health", f"{health}, last check {short_time(service.get('last_health_check')) or '-'}"),
        ("Version", service.get("pocketbase_version")),
        ("Deployed", service.get("deployed_version")),
        ("Port", service.get("port")),
        ("Domain", service.get("domain")),
        ("URL", service.get("url")),
        ("Source", source),
        ("Description", service.get("description")),
        ("Unit", f"{service.get('service_name')} ({unit_state})"),
        ("Restarts", status.get("restarts")),
        ("Memory", status.get("memory_usage")),
        ("CPU", status.get("cpu_usage")),
        ("Caddy", runtime.get("caddy_status")),
        ("Config match", runtime.get("config_match")),
        ("Unit hash", service.get("systemd_config_hash")),
        ("Caddy hash", service.get("caddy_config_hash")),
        ("Last error", service.get("last_error") or runtime.get("error_message")),
        ("Superuser", service.get("superuser_email")),
        ("Env", service.get("env")),
        ("Memory max", resources.get("memory_max")),
        ("CPU quota", resources.get("cpu_quota")),
        ("Flags", flags),
        ("Extra dirs", service.get("extra_dirs")),
        ("Created", f"{short_time(service.get('created_at'))} by {service.get('created_by')}"),
        (
            "Updated",
            f"{short_time(service.get('updated_at'))} (generation {service.get('generation')})",
        ),
    ]
    events = detail["events"]
    lines = [fields(pairs), "", "Events (newest first):"]
    if events:
        rows = [[short_time(e.get("at")), e.get("kind"), e.get("message")] for e in events]
        lines.append(_indent(table(("AT", "KIND", "MESSAGE"), rows)))
    else:
        lines.append("  none")
    return "\n".join(lines)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def describe(client: ApiClient, console: Console, name: str, events: int) -> int:
    found = client.call("GET", service_path(name)).body
    key = found["service"]["project_name"]
    status = client.call("GET", service_path(key, "status")).body
    history = client.call("GET", service_path(key, "events"), query={"limit": events}).body
    detail = {
        "service": found["service"],
        "runtime_status": found["runtime_status"],
        "status": status,
        "events": history.get("events") or [],
    }
    console.show(detail, lambda: describe_text(detail))
    return 0


def delete_message(name: str, answer: dict[str, Any]) -> str:
    """Say plainly whether the data was archived (and where) or purged."""
    purge = bool(answer.get("purge"))
    if not answer.get("removed"):
        fate = "purged" if purge else "archived"
        return (
            f"deletion of {name} accepted; the agent is still cleaning up the host, and its "
            f"data will be {fate}"
        )
    if purge:
        return f"deleted {name}; its data was purged (removed for good)"
    where = answer.get("archived_to")
    if where:
        return f"deleted {name}; its data was archived to {where}"
    return f"deleted {name}; its data was archived (under the agent's archive folder)"


def delete(client: ApiClient, console: Console, name: str, purge: bool, wait: bool) -> int:
    answer = client.call(
        "DELETE",
        service_path(name),
        query={"purge": purge, "wait": wait},
        timeout=WAITING_TIMEOUT,
    ).body
    console.show(answer, lambda: delete_message(name, answer))
    return 0


_PAST = {"start": "started", "stop": "stopped", "restart": "restarted"}


def control(client: ApiClient, console: Console, action: str, name: str) -> int:
    reply = client.call(
        "POST", service_path(name, "control"), body={"action": action}, timeout=WAITING_TIMEOUT
    )
    answer = reply.body
    systemd = answer.get("systemd") or {}
    unit = f"systemd {systemd.get('status')}/{systemd.get('sub_state') or '-'}"
    if reply.status == 202:
        text = (
            f"{name}: {action} accepted, still in progress after a minute ({unit}; "
            f"desired state {answer.get('desired_state')})"
        )
    else:
        text = f"{name}: {_PAST[action]} ({unit})"
    console.show(answer, lambda: text)
    return 0


def _log_line(entry: dict[str, Any]) -> str:
    return safe_text(str(entry.get("line") or entry.get("message") or ""))


def logs(
    client: ApiClient,
    console: Console,
    name: str,
    lines: int,
    follow: bool,
    since: str | None,
    until: str | None = None,
) -> int:
    """``since``/``until`` are already the API's UTC times (``client.times``)."""
    name = service_name(name)
    query: dict[str, str | int | bool] = {"lines": lines}
    if since:
        query["since"] = since
    if until:
        query["until"] = until
    if not follow:
        entries = client.call("GET", service_path(name, "logs"), query=query).body["logs"]
        console.show(entries, lambda: "\n".join(_log_line(e) for e in entries))
        return 0
    query["follow"] = True
    stream = client.events(service_path(name, "logs"), query)
    try:
        for event in stream:
            if event.event != "log":
                continue
            try:
                entry = json.loads(event.data)
            except ValueError:
                continue
            if console.fmt == "json":
                text = json.dumps(entry, ensure_ascii=False)
            elif console.fmt == "yaml":
                text = "---\n" + to_yaml(entry).rstrip("\n")
            else:
                text = _log_line(entry)
            print(text, file=console.out, flush=True)
    except KeyboardInterrupt:
        stream.close()
        return 0  # Ctrl-C is how a follow is meant to end
    console.note(f"the agent ended the log stream of {name}")
    return 1


# -- the agent ---------------------------------------------------------------------------


def system_text(url: str, info: dict[str, Any], health: dict[str, Any]) -> str:
    lines = [
        fields(
            [
                ("Agent", f"{url} (version {info.get('version')}, up {info.get('uptime')})"),
                ("Services", f"{info.get('services')} (queue {info.get('queue_depth')})"),
                ("Spec folder", (info.get("config") or {}).get("spec_dir")),
                ("Healthy", health.get("healthy")),
            ]
        ),
        "",
        table(("CHECK", "OK"), sorted((health.get("checks") or {}).items())),
    ]
    problems = [("error", p) for p in health.get("errors") or []]
    problems += [("warning", p) for p in health.get("warnings") or []]
    if problems:
        rows = [[kind, p.get("code"), p.get("message")] for kind, p in problems]
        lines += ["", table(("KIND", "CODE", "MESSAGE"), rows)]
    return "\n".join(lines)


def system(client: ApiClient, console: Console) -> int:
    info = client.call("GET", "/system/info").body
    health = client.call("GET", "/system/health", accept=(503,)).body
    data = {"url": client.endpoint.url, "info": info, "health": health}
    console.show(data, lambda: system_text(client.endpoint.url, info, health))
    return 0 if health.get("healthy") is True else 1


def nodes_text(nodes: list[dict[str, Any]]) -> str:
    rows = [
        [
            ("* " if n.get("this_node") else "  ") + str(n.get("name")),
            n.get("state"),
            n.get("services"),
            n.get("cpus"),
            f"{int(n.get('memory_bytes') or 0) / 1024**3:.1f} GiB",
            n.get("api_address"),
            n.get("public_address") or "-",
            short_time(n.get("lease_expires_at")),
        ]
        for n in nodes
    ]
    headers = ("NODE", "STATE", "SERVICES", "CPUS", "MEMORY", "API", "PUBLIC", "LEASE UNTIL")
    return table(headers, rows)


def nodes(client: ApiClient, console: Console) -> int:
    """The fleet view (``*`` marks the node that answered); exit 1 when a node is lost."""
    listed = client.call("GET", "/nodes").body["nodes"]
    console.show({"nodes": listed}, lambda: nodes_text(listed))
    return 1 if any(n.get("state") == "lost" for n in listed) else 0


# -- tokens ------------------------------------------------------------------------------


def all_tokens(client: ApiClient) -> list[dict[str, Any]]:
    """Every token, page by page along ``next`` (the API's one pagination style)."""
    tokens: list[dict[str, Any]] = []
    query: dict[str, str | int | bool] = {"limit": LIST_PAGE}
    while True:
        body = client.call("GET", "/tokens", query=query).body
        tokens += list(body.get("tokens") or [])
        if not body.get("next"):
            return tokens
        query["cursor"] = str(body["next"])


def token_list(client: ApiClient, console: Console) -> int:
    tokens = all_tokens(client)
    rows = [
        [
            t.get("id"),
            t.get("name"),
            short_time(t.get("created_at")),
            short_time(t.get("last_used_at")),
            short_time(t.get("revoked_at")) if t.get("revoked") else "no",
        ]
        for t in tokens
    ]
    console.show(tokens, lambda: table(("ID", "NAME", "CREATED", "LAST USED", "REVOKED"), rows))
    return 0


def token_create(
    client: ApiClient,
    console: Console,
    name: str,
    save: Callable[[str], Path] | None,
) -> int:
    """The token goes to stdout alone (``TOKEN=$(pockestrator token create ci)`` works);
    the notes go to stderr."""
    answer = client.call("POST", "/tokens", body={"name": name}).body
    token = str(answer["token"])
    console.show(answer, lambda: token)
    console.note(f"created token {name!r} (id {answer.get('id')}); it is shown only this once")
    if save is not None:
        path = save(token)
        console.note(f"saved to {path} (mode 0600); the CLI uses it when no token is given")
    return 0


def resolve_token_id(tokens: Sequence[dict[str, Any]], key: str) -> str:
    """A token's id from its id or its name (a name must match one live token)."""
    if any(t.get("id") == key for t in tokens):
        return key
    live = [t for t in tokens if t.get("name") == key and not t.get("revoked")]
    if len(live) == 1:
        return str(live[0]["id"])
    if not live:
        raise ClientError(
            f"no live token has the id or name {key!r} (see `pockestrator token list`)"
        )
    ids = ", ".join(str(t.get("id")) for t in live)
    raise ClientError(f"{len(live)} live tokens are named {key!r} ({ids}); revoke one by its id")


def token_revoke(client: ApiClient, console: Console, key: str) -> int:
    tokens = all_tokens(client)
    token_id = resolve_token_id(tokens, key)
    answer = client.call("DELETE", f"/tokens/{token_id}").body
    console.show(answer, lambda: f"{answer.get('message')} (id {token_id})")
    return 0


# -- spec files --------------------------------------------------------------------------


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
