"""``apply``'s decisions, without an agent: what a spec file turns into (a create body, a
merge patch of only what differs, or nothing), and which spec files it refuses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pockestrator.client.apply import Outcome, create_body, patch_body, plan, target_state
from pockestrator.client.http import ApiError, Issue
from pockestrator.client.specfiles import Document, api_issues, load_spec_set, read_file

VERSION = "0.40.6"


def document(tmp_path: Path, text: str, default_domain: str = "localhost") -> Document:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    report = read_file(path, default_domain)
    assert not report.issues, report.issues
    assert len(report.documents) == 1
    return report.documents[0]


def view_of(doc: Document, **changes: Any) -> dict[str, Any]:
    """What the API would show for the service the document describes, with changes."""
    body = create_body(doc)
    view: dict[str, Any] = {
        **body,
        "superuser_email": body.get("superuser_email"),
        "status": "active",
        "last_error": None,
        "source": "api",
    }
    view.update(changes)
    return view


MINIMAL = f'project_name: app\nport: 8080\npocketbase_version: "{VERSION}"\n'


def test_a_create_body_is_the_parsed_spec_with_the_domain_filled_in(tmp_path: Path) -> None:
    doc = document(
        tmp_path,
        MINIMAL + "env:\n  GOMAXPROCS: 2\nresources:\n  memory_max: 512M\n",
        "Example.COM",
    )
    body = create_body(doc)
    assert body["domain"] == "app.example.com"
    assert body["port"] == 8080 and body["env"] == {"GOMAXPROCS": "2"}
    assert body["resources"] == {"memory_max": "512M", "cpu_quota": None}
    assert body["desired_state"] == "running"
    # Left for the agent to fill in: it names the caller.
    assert "created_by" not in body and "superuser_email" not in body
    assert "superuser_password_file" not in body


def test_a_quoted_port_in_yaml_is_sent_as_a_number(tmp_path: Path) -> None:
    doc = document(tmp_path, f'project_name: app\nport: "8080"\npocketbase_version: "{VERSION}"\n')
    assert create_body(doc)["port"] == 8080


def test_a_service_that_matches_its_file_gets_no_patch(tmp_path: Path) -> None:
    doc = document(tmp_path, MINIMAL + "env:\n  A: '1'\nflags:\n  dev: true\n")
    assert patch_body(doc, view_of(doc)) == {}


def test_only_the_fields_that_differ_are_patched(tmp_path: Path) -> None:
    doc = document(tmp_path, MINIMAL + "description: new words\nextra_dirs: [pb_hooks]\n")
    current = view_of(doc, description="old words", port=9090, extra_dirs=[])
    assert patch_body(doc, current) == {
        "description": "new words",
        "port": 8080,
        "extra_dirs": ["pb_hooks"],
    }


def test_env_entries_gone_from_the_file_are_removed_with_null(tmp_path: Path) -> None:
    doc = document(tmp_path, MINIMAL + "env:\n  KEEP: same\n  CHANGE: new\n  ADD: x\n")
    current = view_of(doc, env={"KEEP": "same", "CHANGE": "old", "DROP": "gone"})
    assert patch_body(doc, current) == {"env": {"CHANGE": "new", "ADD": "x", "DROP": None}}


def test_a_changed_section_is_sent_whole_so_that_keys_left_out_reset(tmp_path: Path) -> None:
    doc = document(tmp_path, MINIMAL + "resources:\n  cpu_quota: 50%\n")
    current = view_of(doc, resources={"memory_max": "512M", "cpu_quota": None})
    assert patch_body(doc, current) == {"resources": {"memory_max": None, "cpu_quota": "50%"}}


def test_proxy_and_tls_changes_are_sent_as_whole_sections(tmp_path: Path) -> None:
    doc = document(
        tmp_path,
        MINIMAL + "proxy:\n  aliases: [www.app.example.test]\ntls:\n  mode: internal\n"
        "allow_downgrade: true\n",
    )
    current = view_of(
        doc,
        proxy={**create_body(doc)["proxy"], "aliases": []},
        tls={"mode": None, "hsts": True},
        allow_downgrade=False,
    )
    patch = patch_body(doc, current)
    assert patch == {
        "allow_downgrade": True,
        "proxy": {
            "max_body_size": "10MB",
            "aliases": ["www.app.example.test"],
            "redirect_aliases": False,
            "hold_requests": 10,
        },
        "tls": {"mode": "internal", "hsts": True},
    }
    assert patch_body(doc, view_of(doc)) == {}


def test_run_state_is_changed_only_when_the_file_writes_it_down(tmp_path: Path) -> None:
    silent = document(tmp_path, MINIMAL)
    # Stopped with `pockestrator stop`; a file that never mentions it does not restart it.
    assert patch_body(silent, view_of(silent, desired_state="stopped")) == {}
    explicit = document(tmp_path, MINIMAL + "desired_state: running\n")
    assert patch_body(explicit, view_of(explicit, desired_state="stopped")) == {
        "desired_state": "running"
    }


def test_superuser_email_is_changed_only_when_the_file_writes_it_down(tmp_path: Path) -> None:
    silent = document(tmp_path, MINIMAL)
    assert patch_body(silent, view_of(silent, superuser_email="a@b.example")) == {}
    given = document(tmp_path, MINIMAL + "superuser_email: c@d.example\n")
    assert patch_body(given, view_of(given, superuser_email="a@b.example")) == {
        "superuser_email": "c@d.example"
    }


def test_created_by_is_never_patched(tmp_path: Path) -> None:
    doc = document(tmp_path, MINIMAL + "created_by: someone\n")
    assert create_body(doc)["created_by"] == "someone"
    assert patch_body(doc, view_of(doc, created_by="someone else")) == {}


def test_plan_creates_the_unknown_configures_the_different_and_leaves_the_rest(
    tmp_path: Path,
) -> None:
    for name, port in (("new", 8101), ("changed", 8102), ("same", 8103)):
        (tmp_path / f"{name}.yaml").write_text(
            f'project_name: {name}\nport: {port}\npocketbase_version: "{VERSION}"\n'
        )
    spec_set = load_spec_set([tmp_path], "localhost")
    assert spec_set.ok
    docs = {doc.spec.project_name: doc for doc in spec_set.documents}
    existing = {
        "changed": view_of(docs["changed"], port=9999),
        "same": view_of(docs["same"], status="error", last_error="boom"),
    }
    outcomes = {o.name: o for o in plan(spec_set.documents, existing)}
    assert outcomes["new"].action == "create" and outcomes["new"].verb == "creating"
    outcomes["new"].dry_run = True
    assert outcomes["new"].verb == "would create"
    assert outcomes["changed"].action == "configure"
    assert outcomes["changed"].changed == ["port"]
    assert outcomes["same"].action == "unchanged" and outcomes["same"].verb == "unchanged"
    assert (outcomes["same"].status, outcomes["same"].last_error) == ("error", "boom")


def test_an_outcome_is_ready_when_its_state_is_what_its_run_state_asks() -> None:
    assert target_state("running") == "active" and target_state("stopped") == "inactive"
    running = Outcome("a", "create", {}, "running", done=True, status="active")
    stopped = Outcome("b", "create", {}, "stopped", done=True, status="active")
    failed = Outcome(
        "c", "create", {}, error=ApiError(400, "PORT_IN_USE", "taken", [Issue("port", "t", "P")])
    )
    assert running.ready and not stopped.ready and not failed.ready
    assert running.verb == "created" and failed.verb == "failed"
    data = failed.as_dict()
    assert data["action"] == "failed"
    assert data["error"]["code"] == "PORT_IN_USE"
    assert data["error"]["errors"] == [{"field": "port", "message": "t", "code": "P"}]


def test_a_password_file_cannot_go_through_the_api_and_the_line_is_named(tmp_path: Path) -> None:
    doc = document(
        tmp_path, MINIMAL + "superuser_email: a@b.example\nsuperuser_password_file: /etc/pw\n"
    )
    (issue,) = api_issues(doc)
    assert (issue.field, issue.line, str(issue.code)) == (
        "superuser_password_file",
        5,
        "UNKNOWN_FIELD",
    )
    assert "generated and printed once" in issue.message
    assert api_issues(document(tmp_path, MINIMAL)) == []


def test_an_app_folder_cannot_go_through_the_api_and_deploy_is_suggested(tmp_path: Path) -> None:
    doc = document(tmp_path, MINIMAL + "app:\n  path: ./todo-app\n")
    (issue,) = api_issues(doc)
    assert (issue.field, issue.line, str(issue.code)) == ("app", 4, "UNKNOWN_FIELD")
    assert "pockestrator deploy NAME DIR" in issue.message
    assert "app" not in create_body(doc)


def test_each_file_is_read_once_even_when_named_twice(tmp_path: Path) -> None:
    spec = tmp_path / "a.yaml"
    spec.write_text(MINIMAL)
    spec_set = load_spec_set([spec, tmp_path, tmp_path / "." / "a.yaml"], "localhost")
    assert spec_set.ok and len(spec_set.documents) == 1


def test_an_empty_folder_is_a_problem_not_a_silent_success(tmp_path: Path) -> None:
    spec_set = load_spec_set([tmp_path], "localhost")
    assert not spec_set.ok
    assert [str(i.code) for i in spec_set.issues] == ["FILE_UNREADABLE"]


def test_a_file_the_agent_cannot_read_is_one_problem_as_the_agent_reports_it(
    tmp_path: Path,
) -> None:
    from pockestrator.specs.yamldir import MAX_FILE_BYTES, read_spec_file

    oversized = tmp_path / "big.yaml"
    oversized.write_text(MINIMAL + "#" * MAX_FILE_BYTES)
    binary = tmp_path / "latin1.yaml"
    binary.write_bytes(MINIMAL.encode() + b"description: caf\xe9\n")
    for path, words in ((oversized, "larger than"), (binary, "cannot read spec file")):
        report = read_file(path, "localhost")
        assert [(i.file, str(i.code)) for i in report.issues] == [(str(path), "FILE_UNREADABLE")]
        assert words in report.issues[0].message and report.documents == []
        assert read_spec_file(path, "localhost").issues == report.issues
