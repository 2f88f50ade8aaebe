"""``pockestrator completion bash|zsh|fish``: shell completion generated from the argument
parser itself, so it can never list a command or option the CLI does not have.

``command_tree`` walks the parser (pure: parser in, tree out) into each command path's
subcommands, options, the options that take a value, and whether it takes a service
name; the three renderers turn that tree into a script. Service names are completed at
the prompt from the agent (``pockestrator get -o name``), quietly nothing when none is
reachable. The .deb ships the three scripts (packaging/build-deb generates them with this
module), where bash-completion, zsh and fish look for vendor completions.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

SHELLS = ("bash", "zsh", "fish")
# Positional arguments named so take a service (complete them from the agent).
_SERVICE_ARGUMENTS = frozenset({"name", "names", "source"})
# Command groups whose NAME is not a service's (a token's, a context's).
_NOT_SERVICES = ("token", "admin", "config")
# What some options' values can be completed with.
_VALUES = {
    "--output": "table wide json yaml name jsonpath=",
    "--status": "active inactive error deploying",
    "--log-level": "debug info warning error",
}


@dataclass
class Command:
    """One command path (``token create``): what can follow it."""

    path: str
    subcommands: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)
    takes_service: bool = False


@dataclass
class Tree:
    commands: dict[str, Command]
    value_options: list[str]  # options followed by a value (skipped when finding the path)


def _subparsers(
    parser: argparse.ArgumentParser,
) -> argparse._SubParsersAction[argparse.ArgumentParser] | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def command_tree(parser: argparse.ArgumentParser) -> Tree:
    """Every command path of ``parser``, from the root (path "")."""
    commands: dict[str, Command] = {}
    value_options: set[str] = set()

    def walk(current: argparse.ArgumentParser, path: str) -> None:
        command = Command(path)
        for action in current._actions:
            if action.option_strings:
                if action.help == argparse.SUPPRESS:
                    continue
                command.options += action.option_strings
                if action.nargs != 0:
                    value_options.update(action.option_strings)
            elif action.dest in _SERVICE_ARGUMENTS and not path.startswith(_NOT_SERVICES):
                command.takes_service = True
        sub = _subparsers(current)
        if sub is not None:
            walked: dict[int, str] = {}
            for name, child in sub.choices.items():
                command.subcommands.append(name)
                key = f"{path} {name}".strip()
                if id(child) in walked:  # an alias: the same parser under another name
                    commands[key] = commands[walked[id(child)]]
                    continue
                walked[id(child)] = key
                walk(child, key)
        commands[path] = command

    walk(parser, "")
    return Tree(commands, sorted(value_options))


def _case_lines(entries: dict[str, str]) -> str:
    lines = [f'        "{path}") echo "{words}" ;;' for path, words in sorted(entries.items())]
    return "\n".join(lines)


def _shared_functions(tree: Tree) -> str:
    """POSIX-ish functions that bash and zsh share: the words after a path, and what to
    offer at the cursor, so that each shell's own function only passes its words in and
    the answer out. (No variable is named ``path``: in zsh that is $PATH itself.)"""
    words = {path: " ".join(c.subcommands) for path, c in tree.commands.items() if c.subcommands}
    options = {path: " ".join(c.options) for path, c in tree.commands.items()}
    services = " ".join(f'"{p}"' for p, c in sorted(tree.commands.items()) if c.takes_service)
    values = "\n".join(
        f'        {option}) echo "{value}" ;;' for option, value in sorted(_VALUES.items())
    )
    return f"""_pockestrator_subcommands() {{
    case "$1" in
{_case_lines(words)}
    esac
}}
_pockestrator_options() {{
    case "$1" in
{_case_lines(options)}
    esac
}}
_pockestrator_takes_value() {{
    case "$1" in
        {"|".join(tree.value_options)}) return 0 ;;
    esac
    return 1
}}
_pockestrator_values() {{
    case "$1" in
{values}
        -o) echo "{_VALUES["--output"]}" ;;
        --context) "$2" config get-contexts -o name 2>/dev/null ;;
    esac
}}
_pockestrator_takes_service() {{
    for p in {services}; do
        [ "$p" = "$1" ] && return 0
    done
    return 1
}}
_pockestrator_path() {{
    # The command path among the words before the cursor: options and their values skipped.
    cmd_path="" skip=""
    for w in "$@"; do
        if [ -n "$skip" ]; then skip=""; continue; fi
        case "$w" in
            --*=*) continue ;;
            -*) if _pockestrator_takes_value "$w"; then skip=1; fi; continue ;;
        esac
        case " $(_pockestrator_subcommands "$cmd_path") " in
            *" $w "*) cmd_path="${{cmd_path:+$cmd_path }}$w" ;;
        esac
    done
    echo "$cmd_path"
}}
_pockestrator_candidates() {{
    # What may stand at the cursor ($1) after the words before it ($2, the program, on):
    # the values of the option before it, else options, subcommands or services.
    cur=$1 program=$2
    shift 2
    for prev in "$program" "$@"; do :; done
    if [ $# -gt 0 ] && _pockestrator_takes_value "$prev"; then
        _pockestrator_values "$prev" "$program"
        return
    fi
    cmd_path=$(_pockestrator_path "$@")
    case "$cur" in
        -*) _pockestrator_options "$cmd_path" ;;
        *)
            candidates=$(_pockestrator_subcommands "$cmd_path")
            if [ -z "$candidates" ] && _pockestrator_takes_service "$cmd_path"; then
                "$program" get -o name 2>/dev/null | sed 's,^service/,,'
            else
                echo "$candidates"
            fi
            ;;
    esac
}}"""


def render_bash(tree: Tree) -> str:
    return f"""# bash completion for pockestrator (generated by `pockestrator completion bash`)
{_shared_functions(tree)}
_pockestrator() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} candidates
    candidates=$(_pockestrator_candidates "$cur" "${{COMP_WORDS[@]:0:COMP_CWORD}}")
    COMPREPLY=($(compgen -W "$candidates" -- "$cur"))
}}
complete -F _pockestrator pockestrator
"""


def render_zsh(tree: Tree) -> str:
    return f"""#compdef pockestrator
# zsh completion for pockestrator (generated by `pockestrator completion zsh`)
{_shared_functions(tree)}
_pockestrator() {{
    compadd -- ${{=$(_pockestrator_candidates "${{words[CURRENT]}}" "${{(@)words[1,CURRENT-1]}}")}}
}}
if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
    _pockestrator "$@"
else
    compdef _pockestrator pockestrator
fi
"""


def _fish_condition(path: str) -> str:
    if not path:
        return "__fish_use_subcommand"
    return "; and ".join(f"__fish_seen_subcommand_from {word}" for word in path.split())


def render_fish(tree: Tree) -> str:
    lines = [
        "# fish completion for pockestrator (generated by `pockestrator completion fish`)",
        "complete -c pockestrator -f",
    ]
    for path, command in sorted(tree.commands.items()):
        condition = _fish_condition(path)
        if command.subcommands:
            below = " ".join(command.subcommands)
            guard = (
                condition
                if not path
                else f"{condition}; and not __fish_seen_subcommand_from {below}"
            )
            lines.append(f"complete -c pockestrator -n '{guard}' -a '{below}'")
        elif command.takes_service:
            lines.append(
                f"complete -c pockestrator -n '{condition}' -a "
                "'(pockestrator get -o name 2>/dev/null | string replace service/ \"\")'"
            )
        for option in command.options:
            if not option.startswith("--"):
                continue
            takes = option in tree.value_options
            values = _VALUES.get(option)
            flag = f" -x -a '{values}'" if values else (" -r" if takes else "")
            lines.append(f"complete -c pockestrator -n '{condition}' -l {option[2:]}{flag}")
    return "\n".join(lines) + "\n"


def render(shell: str, parser: argparse.ArgumentParser) -> str:
    tree = command_tree(parser)
    if shell == "bash":
        return render_bash(tree)
    if shell == "zsh":
        return render_zsh(tree)
    return render_fish(tree)
