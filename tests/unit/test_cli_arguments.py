"""The command line itself: arguments, exit codes, where the URL and token come from, and
``validate`` (offline), all run in-process through ``pockestrator.cli.main``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import stat
from pathlib import Path

import pytest

from pockestrator.cli import build_parser, main
from pockestrator.client.arguments import add_command, add_group
from pockestrator.client.connection import (
    DEFAULT_URL,
    SettingError,
    normalize_url,
    resolve_token,
    resolve_url,
    token_file,
)

VERSION = "0.40.6"

# Problems at known lines: 2 (name), 3 (port), 9 (version), 10 (unknown field), 14 (flag).
BROKEN = """\
# line 1 is this comment
project_name: 9lives
port: 80
pocketbase_version: "0.40.6"
---
# the second document
project_name: second
port: 8302
pocketbase_version: latest
colour: blue
resources:
  memory_max: 512M
flags:
  turbo: true
"""

GOOD = f"""\
project_name: good-one
port: 8401
pocketbase_version: "{VERSION}"
---
project_name: good-two
port: 8402
pocketbase_version: "{VERSION}"
domain: Two.Example.COM
"""


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting of the machine running the tests leaks into a test."""
    for name in list(os.environ):
        if name.startswith("POCKESTRATOR_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- arguments and exit codes -------------------------------------------------------------


def test_every_command_is_offered_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    shown = capsys.readouterr().out
    for command in (
        "up",
        "agent",
        "apply",
        "get",
        "describe",
        "delete",
        "start",
        "stop",
        "restart",
        "logs",
        "validate",
        "system",
        "token",
        "admin",
    ):
        assert f"    {command} " in shown, command


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: pockestrator" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["apply"],  # -f is required
        ["describe"],  # NAME is required
        ["logs", "app", "-n", "0"],
        ["logs", "app", "-n", "many"],
        ["get", "--status", "sleepy"],
        ["apply", "-f", "x.yaml", "--timeout", "-1"],
        ["token"],  # an action is required
        ["token", "forge", "x"],
        ["admin", "create"],  # EMAIL is required
        ["admin", "create", "a@b.example", "--config", "c.yaml", "--database", "d.db"],
        ["get", "-o", "xml"],
        ["frobnicate"],
    ],
)
def test_usage_errors_exit_2_as_argparse_does(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_a_url_that_is_not_http_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--url", "ftp://example.test", "get"])
    assert exit_info.value.code == 2
    assert "--url: 'ftp://example.test' is not an http:// or https:// URL" in (
        capsys.readouterr().err
    )


def test_connection_options_are_accepted_before_and_after_the_command() -> None:
    parser = build_parser()
    before = parser.parse_args(["--url", "http://a:1", "-o", "json", "get"])
    after = parser.parse_args(["get", "--url", "http://a:1", "-o", "json"])
    neither = parser.parse_args(["get"])
    assert (before.url, before.output) == ("http://a:1", "json")
    assert (after.url, after.output) == ("http://a:1", "json")
    assert (neither.url, neither.token, neither.output) == (None, None, "table")


def test_apply_takes_several_files_and_waits_with_a_timeout() -> None:
    args = build_parser().parse_args(
        ["apply", "-f", "a.yaml", "-f", "dir", "--wait", "--timeout", "30"]
    )
    assert args.paths == [Path("a.yaml"), Path("dir")]
    assert (args.wait, args.timeout, args.dry_run) == (True, 30.0, False)


def test_logs_defaults_to_the_last_100_lines_without_following() -> None:
    args = build_parser().parse_args(["logs", "app"])
    assert (args.name, args.lines, args.follow, args.since) == ("app", 100, False, None)
    follow = build_parser().parse_args(["logs", "app", "-n", "5", "-f"])
    assert (follow.lines, follow.follow) == (5, True)


def test_delete_archives_and_waits_unless_told_otherwise() -> None:
    parser = build_parser()
    plain = parser.parse_args(["delete", "app"])
    purge = parser.parse_args(["delete", "app", "--purge", "--no-wait"])
    assert (plain.purge, plain.wait) == (False, True)
    assert (purge.purge, purge.wait) == (True, False)


def test_a_command_takes_its_parents_options_and_its_positionals_in_order() -> None:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--url")
    top = argparse.ArgumentParser()
    commands = top.add_subparsers(dest="command")
    restore = add_command(commands, "restore", parent, "put it back", name="NAME", backup_id="ID")
    add_command(commands, "bare", None, "no options of a parent")
    args = top.parse_args(["restore", "blog", "2026", "--url", "http://a:1"])
    assert (args.name, args.backup_id, args.url) == ("blog", "2026", "http://a:1")
    assert "NAME ID" in restore.format_usage()
    with pytest.raises(SystemExit):
        top.parse_args(["bare", "--url", "http://a:1"])


def test_a_group_requires_one_of_its_actions_and_names_it_in_dest(
    capsys: pytest.CaptureFixture[str],
) -> None:
    top = argparse.ArgumentParser()
    actions = add_group(top.add_subparsers(dest="command"), "token", "tokens", "token_command")
    add_command(actions, "list", None, "list them")
    assert top.parse_args(["token", "list"]).token_command == "list"
    with pytest.raises(SystemExit):
        top.parse_args(["token"])
    assert "ACTION" in capsys.readouterr().err


def test_agent_and_up_keep_their_options() -> None:
    parser = build_parser()
    up = parser.parse_args(["up", "--port", "9000", "--caddy-port", "9001", "--specs", "s"])
    assert (up.command, up.port, up.caddy_port, up.specs) == ("up", 9000, 9001, Path("s"))
    agent = parser.parse_args(["agent", "--config", "/etc/p.yaml"])
    assert (agent.command, agent.config) == ("agent", Path("/etc/p.yaml"))


def test_an_unreachable_agent_exits_5_naming_the_url_and_how_to_start_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    assert main(["--url", url, "get"]) == 5
    err = capsys.readouterr().err
    assert f"cannot reach the agent at {url}" in err
    assert "the URL came from --url" in err
    assert "pockestrator up" in err and "pockestrator agent --config" in err


# -- where the URL and the token come from -------------------------------------------------


def test_url_comes_from_the_flag_then_the_environment_then_the_default() -> None:
    env = {"POCKESTRATOR_URL": "http://env.example:9000"}
    assert resolve_url("http://flag.example:1", env).url == "http://flag.example:1"
    assert resolve_url("http://flag.example:1", env).source == "--url"
    assert resolve_url(None, env).url == "http://env.example:9000"
    assert resolve_url(None, env).source == "POCKESTRATOR_URL"
    assert resolve_url(None, {}).url == DEFAULT_URL == "http://127.0.0.1:8091"
    assert resolve_url(None, {"POCKESTRATOR_URL": "  "}).url == DEFAULT_URL


def test_a_pasted_api_root_or_trailing_slash_is_trimmed_to_the_agents_origin() -> None:
    assert normalize_url("http://h:8091/", "x") == "http://h:8091"
    assert normalize_url("http://h:8091/api/pockestrator/", "x") == "http://h:8091"
    assert normalize_url("https://h/proxy/api/pockestrator", "x") == "https://h/proxy"


@pytest.mark.parametrize(
    "bad", ["127.0.0.1:8091", "file:///etc/passwd", "http://", "http://u:p@h:1", "http://h:99999"]
)
def test_urls_that_cannot_reach_an_agent_are_refused(bad: str) -> None:
    with pytest.raises(SettingError):
        normalize_url(bad, "--url")


def test_token_comes_from_the_flag_then_the_environment_then_the_file(tmp_path: Path) -> None:
    file = tmp_path / "token"
    file.write_text("pks_from_file\n")
    env = {"POCKESTRATOR_TOKEN": "pks_from_env"}
    flag = resolve_token("pks_from_flag", env, file)
    assert (flag.token, flag.source) == ("pks_from_flag", "--token")
    from_env = resolve_token(None, env, file)
    assert (from_env.token, from_env.source) == ("pks_from_env", "POCKESTRATOR_TOKEN")
    from_file = resolve_token(None, {}, file)
    assert (from_file.token, from_file.source) == ("pks_from_file", f"the token file {file}")


def test_a_missing_or_unreadable_token_file_is_not_fatal_and_says_why(tmp_path: Path) -> None:
    missing = resolve_token(None, {}, tmp_path / "absent")
    assert missing.token is None
    assert f"no token file at {tmp_path / 'absent'}" in missing.source
    folder = tmp_path / "a-folder"
    folder.mkdir()
    unreadable = resolve_token(None, {}, folder)
    assert unreadable.token is None and "unreadable" in unreadable.source
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert "is empty" in resolve_token(None, {}, empty).source


def test_a_token_with_a_line_break_or_spaces_inside_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingError, match="--token"):
        resolve_token("pks_a b", {}, tmp_path / "t")
    with pytest.raises(SettingError, match="POCKESTRATOR_TOKEN"):
        resolve_token(None, {"POCKESTRATOR_TOKEN": "pks_a\x1bb"}, tmp_path / "t")


def test_the_token_file_is_where_pockestrator_up_writes_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from pockestrator.agent.up import token_file as written_by_up

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    assert token_file() == written_by_up() == tmp_path / "cfg" / "pockestrator" / "token"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert token_file() == written_by_up() == tmp_path / "home/.config/pockestrator/token"


def test_the_401_message_says_no_token_was_found_and_where_it_was_looked_for(
    tmp_path: Path,
) -> None:
    from pockestrator.client.http import Unauthorized

    credentials = resolve_token(None, {}, tmp_path / "absent")
    message = str(Unauthorized(401, "UNAUTHORIZED", "missing", [], credentials))
    assert "none was found" in message
    assert "POCKESTRATOR_TOKEN unset" in message and str(tmp_path / "absent") in message
    refused = resolve_token(None, {"POCKESTRATOR_TOKEN": "pks_x"}, tmp_path / "absent")
    message = str(Unauthorized(401, "UNAUTHORIZED", "revoked", [], refused))
    assert "refused the token from POCKESTRATOR_TOKEN" in message


# -- validate, offline ----------------------------------------------------------------------


def test_validate_prints_every_problem_with_file_line_field_and_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "broken.yaml"
    spec.write_text(BROKEN)
    assert main(["validate", "-f", str(spec)]) == 1
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert f"{spec}:2: project_name: " in lines[0] and "[NAME_MUST_START_WITH_LETTER]" in lines[0]
    expected = [
        (2, "project_name", "NAME_MUST_START_WITH_LETTER"),
        (3, "port", "PORT_OUT_OF_RANGE"),
        (9, "pocketbase_version", "INVALID_VERSION"),
        (10, "colour", "UNKNOWN_FIELD"),
        (14, "flags.turbo", "FLAG_NOT_ALLOWED"),
    ]
    for line, field, code in expected:
        assert any(
            entry.startswith(f"{spec}:{line}: {field}: ") and entry.endswith(f"[{code}]")
            for entry in lines
        ), (line, field, code, lines)
    assert len(lines) == len(expected)
    assert "5 problems found" in err


def test_validate_as_json_gives_each_issue_as_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "broken.yaml"
    spec.write_text(BROKEN)
    assert main(["validate", "-f", str(spec), "-o", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is False
    issues = report["files"][0]["issues"]
    assert {(i["line"], i["field"], i["code"]) for i in issues} >= {
        (3, "port", "PORT_OUT_OF_RANGE"),
        (10, "colour", "UNKNOWN_FIELD"),
    }
    assert all(i["file"] == str(spec) for i in issues)


def test_validate_accepts_good_files_and_a_folder_without_any_agent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "notes.txt").write_text("not a spec")
    (tmp_path / ".hidden.yaml").write_text("garbage: [")
    # Nothing listens here: validate must not need the agent.
    os.environ["POCKESTRATOR_URL"] = f"http://127.0.0.1:{closed_port()}"
    try:
        assert main(["validate", "-f", str(tmp_path)]) == 0
    finally:
        del os.environ["POCKESTRATOR_URL"]
    out = capsys.readouterr().out
    assert out.strip() == f"{tmp_path / 'good.yaml'}: ok (2 services: good-one, good-two)"


def test_validate_finds_a_port_given_by_two_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(
        f'project_name: third\n\nport: 8402\npocketbase_version: "{VERSION}"\n'
    )
    assert main(["validate", "-f", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"{tmp_path / 'b.yaml'}:3: port: port 8402 is also given by good-two" in out
    assert "[PORT_IN_USE]" in out


def test_validate_of_a_missing_path_or_a_yaml_syntax_error_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "syntax.yaml"
    bad.write_text("project_name: x\nport: [8080\n")
    assert main(["validate", "-f", str(tmp_path / "nope.yaml"), "-f", str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"{tmp_path / 'nope.yaml'}: <file>: no such file or folder [FILE_UNREADABLE]" in out
    assert f"{bad}:3: <file>: YAML syntax error" in out and "[YAML_SYNTAX]" in out


def test_validate_derives_missing_domains_from_the_given_default_domain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.yaml").write_text(
        f'project_name: a\nport: 8501\npocketbase_version: "{VERSION}"\ndomain: b.example.com\n'
    )
    (tmp_path / "b.yaml").write_text(
        f'project_name: b\nport: 8502\npocketbase_version: "{VERSION}"\n'
    )
    # Under the default (localhost) b is b.localhost; under example.com it collides with a.
    assert main(["validate", "-f", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["validate", "-f", str(tmp_path), "--default-domain", "Example.COM"]) == 1
    out = capsys.readouterr().out
    assert "domain b.example.com is also given by a" in out and "[DOMAIN_IN_USE]" in out
    config = tmp_path / "config.yaml"
    config.write_text("default_domain: example.com\n")
    assert main(["validate", "-f", str(tmp_path), "--config", str(config), "-o", "json"]) == 1
    assert json.loads(capsys.readouterr().out)["valid"] is False


def test_an_invalid_default_domain_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    with pytest.raises(SystemExit) as exit_info:
        main(["validate", "-f", str(tmp_path), "--default-domain", "not a domain!"])
    assert exit_info.value.code == 2
    assert "--default-domain:" in capsys.readouterr().err


# -- local writes --------------------------------------------------------------------------


def test_a_saved_token_file_is_readable_by_its_owner_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from pockestrator.client.dispatch import save_token

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    path = save_token("pks_secret")
    assert path == tmp_path / "cfg" / "pockestrator" / "token"
    assert path.read_text() == "pks_secret\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert resolve_token(None, {}, path).token == "pks_secret"


def test_admin_create_refuses_a_database_that_does_not_exist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere.db"
    assert main(["admin", "create", "a@b.example", "--database", str(missing)]) == 1
    assert f"no agent database at {missing}" in capsys.readouterr().err
    assert not missing.exists()


def test_a_running_sandboxs_address_comes_after_the_flag_and_the_variable(
    tmp_path: Path,
) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    written = tmp_path / "pockestrator" / "url"
    written.parent.mkdir()
    written.write_text("http://127.0.0.1:18091\n")
    found = resolve_url(None, env)
    assert found.url == "http://127.0.0.1:18091" and "pockestrator up" in found.source
    assert resolve_url(None, {**env, "POCKESTRATOR_URL": "http://e:1"}).url == "http://e:1"
    assert resolve_url("http://f:2", env).url == "http://f:2"
    written.unlink()
    assert resolve_url(None, env).url == DEFAULT_URL
