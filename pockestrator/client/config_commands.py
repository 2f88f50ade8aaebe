"""``pockestrator config``: the contexts file (``client.contexts``), as kubectl config does.

``get-contexts`` lists them (the current one starred), ``use-context`` makes one current,
``current-context`` says which is, ``set-context`` adds or changes one (``--url``,
``--token-file``), ``delete-context`` removes one. Only the file changes: no agent is
asked, so these work offline.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from pockestrator.client.arguments import Commands, add_command, add_group
from pockestrator.client.output import table

if TYPE_CHECKING:  # loaded when a config command runs, not when the parser is built
    from pockestrator.client.commands import Console
    from pockestrator.client.contexts import Context, Contexts


def add_parser(commands: Commands, output_only: argparse.ArgumentParser) -> None:
    actions = add_group(
        commands,
        "config",
        "the CLI's contexts: named agents with their URL and token file",
        "config_command",
    )
    add_command(actions, "get-contexts", output_only, "list the contexts (* marks the current)")
    add_command(actions, "use-context", output_only, "make NAME current", context_name="NAME")
    add_command(actions, "current-context", output_only, "print the current context's name")
    put = add_command(
        actions, "set-context", output_only, "add a context, or change one", context_name="NAME"
    )
    put.add_argument("--url", dest="context_url", help="the agent's URL (required for a new one)")
    put.add_argument(
        "--token-file", type=Path, help="a file holding the agent's API token (mode 0600)"
    )
    put.add_argument("--use", action="store_true", help="also make it the current context")
    add_command(actions, "delete-context", output_only, "remove a context", context_name="NAME")


def _with(contexts: Contexts, context: Context, *, current: bool) -> Contexts:
    from pockestrator.client.contexts import with_context

    return with_context(contexts, context, current=current)


def _rows(contexts: Contexts) -> list[list[object]]:
    return [
        [
            "*" if c.name == contexts.current else "",
            c.name,
            c.url,
            str(c.token_file) if c.token_file else None,
        ]
        for c in contexts.contexts
    ]


def run(args: argparse.Namespace, console: Console) -> int:
    from pockestrator.client.connection import SettingError, normalize_url
    from pockestrator.client.contexts import Context, Contexts, load_contexts, save_contexts

    contexts = load_contexts()
    action = args.config_command
    if action == "get-contexts":
        data = [
            {
                "name": c.name,
                "url": c.url,
                "token_file": str(c.token_file) if c.token_file else None,
                "current": c.name == contexts.current,
            }
            for c in contexts.contexts
        ]
        if not data and console.human:
            console.note(f"no contexts in {contexts.path}; add one with `config set-context`")
            return 0
        console.show(data, lambda: table(("CURRENT", "NAME", "URL", "TOKEN FILE"), _rows(contexts)))
        return 0
    if action == "current-context":
        if contexts.current is None:
            from pockestrator.client.http import NotFoundHere

            raise NotFoundHere(f"no current context in {contexts.path}")
        console.show({"name": contexts.current}, lambda: str(contexts.current))
        return 0
    name = args.context_name
    if action == "use-context":
        context = _find(contexts, name)
        save_contexts(_with(contexts, context, current=True))
        console.show({"name": name}, lambda: f'Switched to context "{name}".')
        return 0
    if action == "delete-context":
        _find(contexts, name)
        kept = tuple(c for c in contexts.contexts if c.name != name)
        current = None if contexts.current == name else contexts.current
        save_contexts(Contexts(contexts.path, current, kept))
        console.show({"name": name}, lambda: f'Deleted context "{name}".')
        return 0
    existing = next((c for c in contexts.contexts if c.name == name), None)
    url = args.context_url or (existing.url if existing else None)
    if url is None:
        raise SettingError(f"--url: a new context needs the agent's URL ({name!r} is new)")
    token_file = args.token_file.expanduser().absolute() if args.token_file else None
    context = Context(
        name,
        normalize_url(url, "--url"),
        token_file or (existing.token_file if existing else None),
    )
    save_contexts(_with(contexts, context, current=args.use))
    console.show(
        {"name": name, "url": context.url},
        lambda: f'Context "{name}" {"modified" if existing else "created"} in {contexts.path}.',
    )
    return 0


def _find(contexts: Contexts, name: str) -> Context:
    from pockestrator.client.connection import SettingError
    from pockestrator.client.http import NotFoundHere

    try:
        return contexts.find(name)
    except SettingError as exc:
        raise NotFoundHere(str(exc).removeprefix("--context: ")) from None
