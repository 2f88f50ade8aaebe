"""What the CLI prints: tables, JSON, YAML, progress lines, messages; and the pure parts of
talking to the agent (server-sent events, error bodies), without any agent.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
import yaml

from pockestrator.client.commands import (
    Console,
    delete_message,
    describe_text,
    system_text,
)
from pockestrator.client.connection import Credentials, Endpoint
from pockestrator.client.http import (
    ApiClient,
    ApiError,
    BadAnswer,
    ClientError,
    Issue,
    SseParser,
    service_path,
)
from pockestrator.client.output import cell, duration, render, safe_text, short_time, table
from pockestrator.client.progress import Item, Progress
from pockestrator.client.token_commands import resolve_token_id

# -- tables and formats ------------------------------------------------------------------


def test_a_table_aligns_every_column_to_its_widest_cell() -> None:
    text = table(("NAME", "PORT", "DOMAIN"), [["a", 8080, "a.localhost"], ["long-name", 9, None]])
    assert text.splitlines() == [
        "NAME       PORT  DOMAIN",
        "a          8080  a.localhost",
        "long-name  9     -",
    ]


def test_cells_show_nothing_as_a_dash_and_booleans_as_yes_or_no() -> None:
    assert [cell(None), cell(""), cell(True), cell(False), cell(0)] == ["-", "-", "yes", "no", "0"]
    assert cell(["pb_hooks", "pb_public"]) == "pb_hooks,pb_public"
    assert cell({"A": "1", "B": None}) == "A=1,B=-"
    assert cell([]) == "-"


def test_control_characters_from_the_agent_are_shown_not_obeyed() -> None:
    hostile = "ok\x1b[2J\r\nnext\u202egnp.exe\x07"
    shown = safe_text(hostile)
    assert "\x1b" not in shown and "\r" not in shown and "\n" not in shown
    assert "\u202e" not in shown and "\x07" not in shown
    assert shown == "ok\\x1b[2J\\r\\nnext\\u202egnp.exe\\x07"
    assert safe_text("tab\tand ünïcode stay") == "tab\tand ünïcode stay"
    assert "\x1b" not in table(("A",), [[hostile]])


def test_json_and_yaml_carry_the_data_itself_and_tables_the_text() -> None:
    data = [{"project_name": "app", "port": 8080, "health_ok": None, "env": {"A": "1"}}]
    assert json.loads(render(data, "json", "ignored")) == data
    assert yaml.safe_load(render(data, "yaml", "ignored")) == data
    assert render(data, "table", "the table") == "the table"


def test_console_prints_results_to_stdout_and_notes_to_stderr() -> None:
    out, err = io.StringIO(), io.StringIO()
    console = Console("json", out, err)
    console.show({"a": 1}, lambda: pytest.fail("the table is not rendered for json"))
    console.note("a note")
    assert json.loads(out.getvalue()) == {"a": 1}
    assert err.getvalue() == "a note\n"


def test_timestamps_are_shown_to_the_second_and_durations_for_people() -> None:
    assert short_time("2025-07-31T19:30:00.123456Z") == "2025-07-31T19:30:00Z"
    assert short_time("2025-07-31T19:30:00Z") == "2025-07-31T19:30:00Z"
    assert short_time(None) is None
    assert [duration(3.25), duration(42), duration(185), duration(9000)] == [
        "3.2s",
        "42s",
        "3m05s",
        "2h30m",
    ]


# -- progress ------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_off_a_terminal_prints_one_line_per_state_change_only() -> None:
    stream = io.StringIO()
    progress = Progress(stream, interactive=False)
    progress.update([Item("a", "applying", False), Item("b", "deploying", False)])
    progress.update([Item("a", "applying", False), Item("b", "deploying", False)])
    progress.update([Item("a", "active", True), Item("b", "error", False, "port taken")])
    progress.close()
    assert stream.getvalue().splitlines() == [
        "a: applying",
        "b: deploying",
        "a: active",
        "b: error (port taken)",
    ]


def test_progress_on_a_terminal_redraws_one_line_and_erases_it_at_the_end() -> None:
    stream = io.StringIO()
    clock = Clock()
    progress = Progress(stream, interactive=True, clock=clock)
    progress.update([Item("a", "active", True), Item("b", "deploying", False)])
    clock.now += 3.5
    progress.update([Item("a", "active", True), Item("b", "active", True)])
    progress.close()
    drawn = stream.getvalue()
    assert "\n" not in drawn
    frames = drawn.split("\r\x1b[K")
    assert frames[1].endswith("1/2 ready; waiting for b deploying [0.0s]")
    assert frames[2].endswith("2/2 ready [3.5s]")
    assert frames[-1] == ""  # erased


def test_progress_draws_on_a_terminal_only_when_its_stream_is_one() -> None:
    assert Progress(io.StringIO()).interactive is False


# -- messages ------------------------------------------------------------------------------


def test_delete_says_whether_the_data_was_archived_or_purged() -> None:
    archived = {"removed": True, "purge": False, "archived_to": "/srv/.archive/app-1"}
    assert delete_message("app", archived) == (
        "deleted app; its data was archived to /srv/.archive/app-1"
    )
    purged = {"removed": True, "purge": True, "archived_to": None}
    assert delete_message("app", purged) == "deleted app; its data was purged (removed for good)"
    pending = {"removed": False, "purge": True, "archived_to": None}
    assert "still cleaning up" in delete_message("app", pending)
    assert delete_message("app", pending).endswith("its data will be purged")


SERVICE: dict[str, Any] = {
    "id": "5e1f0c9a2b7d",
    "project_name": "demo",
    "port": 8201,
    "pocketbase_version": "0.40.6",
    "domain": "demo.localhost",
    "status": "active",
    "created_by": "ci",
    "created_at": "2025-07-31T19:30:00.000000Z",
    "updated_at": "2025-07-31T19:31:00.000000Z",
    "description": "",
    "systemd_config_hash": "a1b2c3d4e5f6",
    "caddy_config_hash": "f6e5d4c3b2a1",
    "last_health_check": "2025-07-31T19:32:00.000000Z",
    "url": "http://demo.localhost",
    "service_name": "demo-pocketbase.service",
    "desired_state": "running",
    "source": "file",
    "source_file": "/etc/pockestrator/specs/demo.yaml",
    "deployed_version": "0.40.6",
    "health_ok": True,
    "last_error": None,
    "superuser_email": None,
    "env": {"GOMEMLIMIT": "400MiB"},
    "resources": {"memory_max": "512M", "cpu_quota": None},
    "flags": {"origins": None, "dev": True},
    "extra_dirs": [],
    "generation": 3,
}


def test_describe_shows_status_hashes_runtime_and_events() -> None:
    detail = {
        "service": SERVICE,
        "runtime_status": {
            "systemd_status": "active",
            "sub_state": "running",
            "caddy_status": "configured",
            "config_match": True,
            "error_message": None,
        },
        "status": {
            "pid": 4242,
            "active_since": "2025-07-31T19:30:01.5Z",
            "restarts": 0,
            "memory_usage": "45.2MB",
            "cpu_usage": "2.1%",
        },
        "events": [{"at": "2025-07-31T19:40:00.000000Z", "kind": "restarted", "message": "by ci"}],
    }
    text = describe_text(detail)
    assert "Status:        active (desired: running)" in text
    assert "Source:        file /etc/pockestrator/specs/demo.yaml" in text
    assert "Unit:          demo-pocketbase.service (active/running, pid 4242, since" in text
    assert "Unit hash:     a1b2c3d4e5f6" in text and "Caddy hash:    f6e5d4c3b2a1" in text
    assert "Config match:  yes" in text and "Memory:        45.2MB" in text
    assert "Env:           GOMEMLIMIT=400MiB" in text and "Flags:         dev=yes" in text
    assert text.splitlines()[-1] == "  2025-07-31T19:40:00Z  restarted  by ci"


def test_system_lists_every_check_and_each_problem() -> None:
    text = system_text(
        "http://127.0.0.1:8091",
        {"version": "0.1.0", "uptime": "5s", "services": 2, "queue_depth": 0, "config": {}},
        {
            "healthy": False,
            "checks": {"systemd": True, "caddy_running": False},
            "errors": [{"code": "CADDY_NOT_RUNNING", "message": "Caddy is not running"}],
            "warnings": [],
        },
    )
    assert "Healthy:      no" in text
    assert "caddy_running  no" in text and "systemd        yes" in text
    assert "error  CADDY_NOT_RUNNING  Caddy is not running" in text


def test_a_token_is_revoked_by_its_id_or_its_one_live_name() -> None:
    tokens = [
        {"id": "aaa", "name": "ci", "revoked": True},
        {"id": "bbb", "name": "ci", "revoked": False},
        {"id": "ccc", "name": "twice", "revoked": False},
        {"id": "ddd", "name": "twice", "revoked": False},
    ]
    assert resolve_token_id(tokens, "aaa") == "aaa"
    assert resolve_token_id(tokens, "ci") == "bbb"
    with pytest.raises(ClientError, match="2 live tokens are named 'twice'"):
        resolve_token_id(tokens, "twice")
    with pytest.raises(ClientError, match="no live token"):
        resolve_token_id(tokens, "nope")


# -- the agent's answers -------------------------------------------------------------------


def test_a_validation_error_lists_field_message_and_code_per_line() -> None:
    error = ApiError(
        400,
        "VALIDATION_FAILED",
        "Validation failed",
        [
            Issue("project_name", "Project name already exists", "DUPLICATE_PROJECT_NAME"),
            Issue("port", "Port is already in use", "PORT_IN_USE"),
        ],
    )
    assert str(error).splitlines() == [
        "Validation failed (400 VALIDATION_FAILED)",
        "  project_name: Project name already exists [DUPLICATE_PROJECT_NAME]",
        "  port: Port is already in use [PORT_IN_USE]",
    ]
    single = ApiError(409, "OWNED_BY_FILE", "in a file", [Issue("x", "in a file", "OWNED_BY_FILE")])
    assert str(single) == "in a file (409 OWNED_BY_FILE)"


def test_server_sent_events_are_parsed_with_ids_comments_and_multiline_data() -> None:
    parser = SseParser()
    lines = [
        "retry: 3000",
        "",
        "id: s=1;i=2",
        "event: log",
        'data: {"line":',
        'data: "x"}',
        "",
        ": keepalive",
        "",
        "data:no space",
        "",
    ]
    events = [event for line in lines if (event := parser.feed(line)) is not None]
    assert [(e.event, e.data, e.id) for e in events] == [
        ("log", '{"line":\n"x"}', "s=1;i=2"),
        ("message", "no space", "s=1;i=2"),
    ]
    assert parser.last_id == "s=1;i=2"


def test_service_names_are_escaped_in_paths() -> None:
    assert service_path("demo") == "/services/demo"
    assert service_path("../tokens", "logs") == "/services/..%2Ftokens/logs"
    assert service_path("a b?c") == "/services/a%20b%3Fc"


class NotTheAgent(BaseHTTPRequestHandler):
    """A real web server that is something else (a common mistake: the wrong port)."""

    def do_GET(self) -> None:
        status = 404 if "missing" in self.path else 200
        body = b"<html>hello</html>"
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def other_server() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), NotTheAgent)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_server_that_is_not_the_agent_is_called_out(other_server: str) -> None:
    client = ApiClient(Endpoint(other_server, "--url"), Credentials(None, "none"))
    with pytest.raises(BadAnswer, match="not JSON; is it a Pockestrator agent"):
        client.call("GET", "/services")
    with pytest.raises(BadAnswer, match="answered 404 without the API's error body"):
        client.call("GET", "/missing")
