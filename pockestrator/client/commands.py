"""The client commands on services, the host and the fleet: each takes its arguments, an
``ApiClient`` and a ``Console``, and returns the exit code (0 ok, 1 failure). Argument
parsing is in ``client.command_arguments``, the choice of command in ``client.dispatch``;
the token commands are in ``client.token_commands``, validate and apply in
``client.spec_commands``.

Results go to stdout in the chosen format; notes, progress and errors go to stderr, so
``-o json`` output can always be piped into another program.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from pockestrator.client.apply import list_services
from pockestrator.client.http import (
    WAITING_TIMEOUT,
    ApiClient,
    ApiError,
    decoded_events,
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

    def streamed(self, item: Any, line: Callable[[Any], str]) -> None:
        """One item of a followed stream, printed at once: a JSON line, a YAML document, or
        ``line(item)`` for the human formats."""
        if self.fmt == "json":
            text = json.dumps(item, ensure_ascii=False)
        elif self.fmt == "yaml":
            text = "---\n" + to_yaml(item).rstrip("\n")
        else:
            text = line(item)
        print(text, file=self.out, flush=True)


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
        for _event, entry in decoded_events(stream, "log"):
            console.streamed(entry, _log_line)
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
