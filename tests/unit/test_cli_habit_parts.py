"""The CLI's habits that need no agent: contexts and which agent and token a command
uses, the completion scripts (bash run for real), an example in every --help, exit codes,
the terminal width and -o name."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pockestrator import API_VERSION, __version__
from pockestrator.cli import build_parser, join_dashed_values, main
from pockestrator.client import exits
from pockestrator.client.completion import command_tree, render
from pockestrator.client.connection import SettingError, resolve
from pockestrator.client.contexts import load_contexts, parse_contexts
from pockestrator.client.examples import EXAMPLES
from pockestrator.client.http import (
    AgentUnreachable,
    ApiError,
    BadAnswer,
    ClientError,
    NotFoundHere,
)
from pockestrator.client.output import fit, names, table, terminal_width
from pockestrator.client.version import version_warnings


def write_contexts(
    home: Path, data: object, tokens: dict[str, str] | None = None
) -> dict[str, str]:
    folder = home / "pockestrator"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(data))
    for name, token in (tokens or {}).items():
        (folder / name if name == "token" else home / name).write_text(token + "\n")
    return {"XDG_CONFIG_HOME": str(home)}


@pytest.fixture
def two_agents(tmp_path: Path) -> dict[str, str]:
    return (
        write_contexts(
            tmp_path,
            {
                "current-context": "prod",
                "contexts": [
                    {
                        "name": "prod",
                        "url": "https://prod.example:8091",
                        "token-file": str(tmp_path / "p"),
                    },
                    {"name": "lab", "url": "http://127.0.0.2:8091"},
                ],
            },
            {"p": "pks_prod", "token": "pks_cli"},
        )
        | {}
    )


def test_the_current_context_gives_its_url_and_token_file(two_agents: dict[str, str]) -> None:
    endpoint, credentials = resolve(None, None, None, two_agents)
    assert endpoint.url == "https://prod.example:8091"
    assert credentials.token == "pks_prod" and "context 'prod'" in credentials.source


def test_an_explicit_context_wins_over_the_environment(two_agents: dict[str, str]) -> None:
    env = {**two_agents, "POCKESTRATOR_URL": "http://127.0.0.9:1", "POCKESTRATOR_TOKEN": "pks_env"}
    endpoint, credentials = resolve(None, None, "prod", env)
    assert (endpoint.url, credentials.token) == ("https://prod.example:8091", "pks_prod")


def test_the_environment_wins_over_the_current_context_and_gets_no_context_token(
    two_agents: dict[str, str],
) -> None:
    env = {**two_agents, "POCKESTRATOR_URL": "http://127.0.0.9:1"}
    endpoint, credentials = resolve(None, None, None, env)
    assert endpoint.url == "http://127.0.0.9:1"
    assert credentials.token != "pks_prod"  # never a context's token for another URL


def test_url_and_token_flags_win_over_everything(two_agents: dict[str, str]) -> None:
    endpoint, credentials = resolve("http://127.0.0.3:2", "pks_flag", "prod", two_agents)
    assert (endpoint.url, credentials.token) == ("http://127.0.0.3:2", "pks_flag")
    endpoint, credentials = resolve(None, None, "prod", two_agents)
    assert credentials.token == "pks_prod"


def test_a_context_without_a_token_file_uses_the_clis_own_file_not_the_environment(
    two_agents: dict[str, str],
) -> None:
    env = {**two_agents, "POCKESTRATOR_TOKEN": "pks_env"}
    endpoint, credentials = resolve(None, None, "lab", env)
    assert (endpoint.url, credentials.token) == ("http://127.0.0.2:8091", "pks_cli")


def test_an_unknown_context_names_the_known_ones(two_agents: dict[str, str]) -> None:
    with pytest.raises(SettingError, match=r"no context 'nope'.*known: prod, lab"):
        resolve(None, None, "nope", two_agents)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ([], "not a mapping"),
        ({"contexts": [{"name": "a"}]}, "url is required"),
        ({"contexts": [{"name": "a", "url": "ftp://x"}]}, "not an http"),
        ({"contexts": [{"name": "a", "url": "http://x", "token": "pks_x"}]}, "unknown key 'token'"),
        ({"contexts": [{"name": "a b", "url": "http://x"}]}, "no spaces"),
        ({"contexts": [{"name": "a", "url": "http://x"}] * 2}, "a second context"),
        ({"current-context": "b", "contexts": [{"name": "a", "url": "http://x"}]}, "not one of"),
        ({"clusters": []}, "unknown key 'clusters'"),
    ],
)
def test_a_bad_contexts_file_is_refused_naming_the_problem(data: object, problem: str) -> None:
    with pytest.raises(SettingError, match=problem):
        parse_contexts(data, Path("/x/config.yaml"))


def test_config_commands_write_the_file_that_is_then_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    token = tmp_path / "lab.token"
    token.write_text("pks_lab\n")
    assert (
        main(
            [
                "config",
                "set-context",
                "lab",
                "--url",
                "http://127.0.0.5:9",
                "--token-file",
                str(token),
            ]
        )
        == 0
    )
    assert main(["config", "set-context", "prod", "--url", "https://p.example"]) == 0
    assert main(["config", "use-context", "lab"]) == 0
    contexts = load_contexts({"XDG_CONFIG_HOME": str(tmp_path)})
    assert contexts.current == "lab" and [c.name for c in contexts.contexts] == ["lab", "prod"]
    capsys.readouterr()
    assert main(["config", "get-contexts", "-o", "name"]) == 0
    assert capsys.readouterr().out.split() == ["lab", "prod"]
    assert main(["config", "current-context"]) == 0
    assert capsys.readouterr().out.strip() == "lab"
    assert main(["config", "use-context", "nope"]) == exits.NOT_FOUND
    assert main(["config", "delete-context", "lab"]) == 0
    assert load_contexts({"XDG_CONFIG_HOME": str(tmp_path)}).current is None


def test_context_is_an_option_anywhere_on_the_line() -> None:
    parser = build_parser()
    for argv in (
        ["--context", "prod", "get"],
        ["get", "--context", "prod"],
        ["token", "list", "--context", "prod"],
    ):
        assert parser.parse_args(argv).context == "prod", argv


@pytest.mark.parametrize(
    ("argv", "joined"),
    [
        (["logs", "x", "--since", "-1h"], ["logs", "x", "--since=-1h"]),
        (["logs", "x", "-S", "-10m", "-U", "-5m"], ["logs", "x", "-S-10m", "-U-5m"]),
        (["logs", "x", "--since", "10m"], ["logs", "x", "--since", "10m"]),
        (["logs", "--", "--since", "-1h"], ["logs", "--", "--since", "-1h"]),
        (["logs", "x", "--since"], ["logs", "x", "--since"]),
    ],
)
def test_a_dashed_time_is_a_value_not_an_option(argv: list[str], joined: list[str]) -> None:
    assert join_dashed_values(argv) == joined


def _parsers(
    parser: argparse.ArgumentParser, path: str = ""
) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += _parsers(child, f"{path} {name}".strip())
    return found


def test_every_help_has_an_example_of_its_own_command() -> None:
    for path, parser in _parsers(build_parser()):
        text = parser.format_help()
        assert "Examples:\n  " in text, path or "pockestrator"
        assert path in EXAMPLES, path
        if path:
            own = [line for line in EXAMPLES[path] if path.split()[0] in line]
            assert own, path


def test_each_failure_has_its_exit_code() -> None:
    cases: list[tuple[ClientError, int]] = [
        (AgentUnreachable("x"), exits.UNREACHABLE),
        (BadAnswer("x"), exits.UNREACHABLE),
        (ApiError(404, "SERVICE_NOT_FOUND", "x"), exits.NOT_FOUND),
        (ApiError(401, "UNAUTHORIZED", "x"), exits.REFUSED),
        (ApiError(403, "ORIGIN_NOT_ALLOWED", "x"), exits.REFUSED),
        (ApiError(412, "PRECONDITION_FAILED", "x"), exits.REFUSED),
        (ApiError(400, "VALIDATION_FAILED", "x"), exits.INVALID),
        (ApiError(422, "IDEMPOTENCY_KEY_REUSED", "x"), exits.INVALID),
        (ApiError(409, "OWNED_BY_FILE", "x"), exits.FAILED),
        (ApiError(502, "OPERATION_FAILED", "x"), exits.FAILED),
        (NotFoundHere("x"), exits.NOT_FOUND),
        (ClientError("x"), exits.FAILED),
    ]
    for error, code in cases:
        assert exits.exit_code(error) == code, error
    codes = [
        exits.OK,
        exits.FAILED,
        exits.USAGE,
        exits.INVALID,
        exits.NOT_FOUND,
        exits.UNREACHABLE,
        exits.REFUSED,
    ]
    assert len(set(codes)) == len(codes)


def test_the_documented_exit_codes_are_the_modules() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    for name, code in [
        ("not found", exits.NOT_FOUND),
        ("unreachable", exits.UNREACHABLE),
        ("refused", exits.REFUSED),
        ("invalid", exits.INVALID),
    ]:
        assert f"| {code} | {name}" in doc, name


@pytest.mark.parametrize(
    ("environ", "tty", "measured", "width"),
    [
        ({}, True, 80, 80),
        ({}, False, 80, None),
        ({"COLUMNS": "40"}, False, 80, 40),
        ({"COLUMNS": "x"}, True, 100, 100),
        ({"COLUMNS": "0"}, True, 0, None),
    ],
)
def test_the_table_width_is_the_terminals_or_columns(
    environ: dict[str, str], tty: bool, measured: int, width: int | None
) -> None:
    assert terminal_width(environ, tty, measured) == width


def test_a_table_fits_the_width_and_says_where_it_cut() -> None:
    text = table(("NAME", "MESSAGE"), [["blog", "a very long message indeed"]], width=20)
    assert [len(line) <= 20 for line in text.splitlines()] == [True, True]
    assert text.splitlines()[1] == "blog  a very long m\u2026"
    assert fit("short", None) == "short"


def test_name_output_is_kind_slash_name_for_services_and_the_name_otherwise() -> None:
    assert (
        names([{"project_name": "blog"}, {"project_name": "shop"}]) == "service/blog\nservice/shop"
    )
    assert names({"name": "ci", "id": "1"}) == "ci"
    assert names([{"id": "3f"}, {"other": 1}]) == "3f"


def test_the_completion_tree_is_the_parsers() -> None:
    tree = command_tree(build_parser())
    top = tree.commands[""].subcommands
    for command in ("get", "logs", "delete", "config", "completion", "version", "token"):
        assert command in top
    assert tree.commands["token"].subcommands == ["create", "list", "revoke"]
    assert "--tail" in tree.commands["logs"].options
    assert tree.commands["delete"].takes_service and not tree.commands["token list"].takes_service
    assert "--context" in tree.value_options and "--purge" not in tree.value_options


def bash_complete(script: Path, line: str) -> list[str]:
    """What bash completes for ``line`` (ending where the cursor is) with the script."""
    words = line.split(" ")
    program = f"""
source {script}
COMP_WORDS=({" ".join(repr(w) for w in words)})
COMP_CWORD={len(words) - 1}
_pockestrator
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    done = subprocess.run(
        ["bash", "-c", program], capture_output=True, text=True, check=True, timeout=30
    )
    return done.stdout.split()


def test_bash_completes_commands_subcommands_options_and_values(tmp_path: Path) -> None:
    script = tmp_path / "pockestrator.bash"
    script.write_text(render("bash", build_parser()))
    assert "logs" in bash_complete(script, "pockestrator lo") or bash_complete(
        script, "pockestrator lo"
    ) == ["logs"]
    assert bash_complete(script, "pockestrator lo") == ["logs"]
    assert bash_complete(script, "pockestrator token ") == ["create", "list", "revoke"]
    assert bash_complete(script, "pockestrator --context prod token c") == ["create"]
    assert bash_complete(script, "pockestrator logs blog --ta") == ["--tail"]
    assert bash_complete(script, "pockestrator get -o y") == ["yaml"]
    assert bash_complete(script, "pockestrator get --status e") == ["error"]
    assert bash_complete(script, "pockestrator config use") == ["use-context"]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_each_script_names_every_command(shell: str) -> None:
    text = render(shell, build_parser())
    for command in command_tree(build_parser()).commands[""].subcommands:
        assert command in text, (shell, command)


def test_the_bash_script_is_valid_bash(tmp_path: Path) -> None:
    script = tmp_path / "pockestrator.bash"
    script.write_text(render("bash", build_parser()))
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)


def test_the_parser_loads_neither_pydantic_nor_yaml() -> None:
    """The .deb's build generates the completions with a bare interpreter, and every
    command starts faster for it."""
    code = (
        "import sys; from pockestrator.cli import build_parser; build_parser(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'yaml')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


def test_local_commands_find_the_database_of_the_hosts_configuration(tmp_path: Path) -> None:
    from pockestrator.client.local import agent_database

    database = tmp_path / "state" / "agent.db"
    database.parent.mkdir()
    database.write_bytes(b"")
    host_config = tmp_path / "config.yaml"
    host_config.write_text(f"database: {database}\n")
    assert agent_database(None, None, host_config) == database
    other = tmp_path / "other.db"
    other.write_bytes(b"")
    assert agent_database(None, other, host_config) == other  # --database wins
    if not Path("/var/lib/pockestrator/pockestrator.db").exists():  # the defaults' database
        with pytest.raises(ClientError, match="no agent database"):
            agent_database(None, None, tmp_path / "absent.yaml")


def test_local_admins_are_hashed_as_the_hosts_configuration_says(tmp_path: Path) -> None:
    from pockestrator.client.local import configured_hashing

    host_config = tmp_path / "config.yaml"
    assert configured_hashing(None, host_config) == "rfc9106-low-memory"  # no configuration
    host_config.write_text("password_hashing: owasp-minimum\n")
    assert configured_hashing(None, host_config) == "owasp-minimum"
    named = tmp_path / "named.yaml"
    named.write_text("password_hashing: rfc9106-low-memory\n")
    assert configured_hashing(named, host_config) == "rfc9106-low-memory"  # --config wins
    named.write_text("password_hashing: md5\n")
    with pytest.raises(ClientError, match="password_hashing"):
        configured_hashing(named, host_config)


@pytest.mark.parametrize(
    ("agent", "warned"),
    [
        ({"version": __version__, "api_version": API_VERSION}, []),
        ({"version": __version__, "api_version": "1.0.0"}, []),  # one major: no warning
        ({"version": __version__, "api_version": "2.0.0"}, ["API 2.0.0"]),
        ({"version": "9.9.9", "api_version": API_VERSION}, ["version 9.9.9"]),
        ({}, []),
    ],
)
def test_a_mismatch_of_versions_is_warned_about(agent: dict[str, str], warned: list[str]) -> None:
    warnings = version_warnings(agent)
    assert len(warnings) == len(warned)
    for warning, part in zip(warnings, warned, strict=True):
        assert warning.startswith("warning: ") and part in warning


def zsh_complete(script: Path, words: list[str]) -> list[str]:
    """What the zsh function offers for ``words`` (the last is the one being completed),
    with compadd stubbed to print what it was given (zsh filters by prefix itself)."""
    program = f"""
source {script}
compadd() {{ [[ $1 == -- ]] && shift; print -l -- "$@"; }}
words=({" ".join(repr(w) for w in words)})
CURRENT={len(words)}
_pockestrator
"""
    done = subprocess.run(
        ["zsh", "-c", program], capture_output=True, text=True, check=True, timeout=30
    )
    return done.stdout.split()


@pytest.mark.skipif(shutil.which("zsh") is None, reason="needs zsh")
def test_zsh_offers_the_words_of_the_path_and_keeps_its_path(tmp_path: Path) -> None:
    script = tmp_path / "_pockestrator"
    script.write_text(render("zsh", build_parser()))
    subprocess.run(["zsh", "-n", str(script)], check=True, timeout=30)
    assert zsh_complete(script, ["pockestrator", "token", ""]) == ["create", "list", "revoke"]
    assert "wide" in zsh_complete(script, ["pockestrator", "--context", "x", "get", "-o", ""])
    # A service name is asked of `pockestrator get -o name`: $PATH must survive the function.
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "pockestrator").write_text("#!/bin/sh\necho service/blog\n")
    (fake / "pockestrator").chmod(0o755)
    program = "; ".join(
        [
            f"PATH={fake}:$PATH",
            f"source {script}",
            'compadd() { shift; print -l -- "$@"; }',
            "words=(pockestrator logs b)",
            "CURRENT=3",
            "_pockestrator",
        ]
    )
    done = subprocess.run(
        ["zsh", "-c", program], capture_output=True, text=True, check=True, timeout=30
    )
    assert done.stdout.split() == ["blog"]


@pytest.mark.skipif(shutil.which("fish") is None, reason="needs fish")
def test_fish_completes_commands_and_options(tmp_path: Path) -> None:
    script = tmp_path / "pockestrator.fish"
    script.write_text(render("fish", build_parser()))
    subprocess.run(["fish", "-n", str(script)], check=True, timeout=30)

    def complete(line: str) -> list[str]:
        done = subprocess.run(
            ["fish", "-c", f"source {script}; complete -C '{line}'"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        return [row.split("\t")[0] for row in done.stdout.splitlines()]

    assert complete("pockestrator tok") == ["token"]
    assert complete("pockestrator token ") == ["create", "list", "revoke"]
    assert "--tail" in complete("pockestrator logs blog --ta")
