"""An example in every ``--help``: the command lines people copy first.

``EXAMPLES`` maps a command path (``""`` for ``pockestrator`` itself, ``"token create"``)
to its examples; ``add_examples`` puts them in each parser's epilog. A unit test walks the
parser and fails for a command without one, so a new command cannot ship without.
"""

from __future__ import annotations

import argparse

EXAMPLES: dict[str, tuple[str, ...]] = {
    "": (
        "pockestrator get",
        "pockestrator apply -f specs/ --wait",
        "pockestrator --context prod logs blog --since -1h",
    ),
    "up": ("sudo pockestrator up", "sudo pockestrator up --specs ./specs --port 8091"),
    "agent": ("pockestrator agent --config /etc/pockestrator/config.yaml",),
    "apply": (
        "pockestrator apply -f blog.yaml",
        "pockestrator apply -f specs/ --wait --timeout 300",
        "pockestrator apply -f specs/ --dry-run",
    ),
    "get": (
        "pockestrator get",
        "pockestrator get blog -o yaml",
        "pockestrator get --status error -o name",
        "pockestrator get -o wide",
        "pockestrator get -o 'jsonpath={.items[*].project_name}'",
        "pockestrator get -o 'jsonpath={range .items[*]}{.project_name}:{.port}{\"\\n\"}{end}'",
    ),
    "describe": ("pockestrator describe blog", "pockestrator describe blog shop --events 20"),
    "delete": (
        "pockestrator delete blog",
        "pockestrator delete blog shop --purge",
        "pockestrator get --status error -o name | xargs pockestrator delete",
    ),
    "start": ("pockestrator start blog", "pockestrator start blog shop"),
    "stop": ("pockestrator stop blog", "pockestrator stop blog shop"),
    "restart": ("pockestrator restart blog", "pockestrator restart $(pockestrator get -o name)"),
    "deploy": (
        "pockestrator deploy blog ./app",
        "pockestrator deploy blog --from-archive app.tar.gz",
    ),
    "rollback": ("pockestrator rollback blog", "pockestrator rollback blog 3"),
    "releases": ("pockestrator releases blog",),
    "logs": (
        "pockestrator logs blog --tail 50",
        "pockestrator logs blog -f",
        "pockestrator logs blog --since 10m",
        "pockestrator logs blog --since '2025-07-31 19:30' --until '2025-07-31 20:00'",
        "pockestrator logs blog --since -1h -o json",
    ),
    "validate": ("pockestrator validate -f specs/", "pockestrator validate -f blog.yaml -o json"),
    "system": ("pockestrator system", "pockestrator system -o json"),
    "version": ("pockestrator version", "pockestrator --context prod version -o json"),
    "completion": (
        "source <(pockestrator completion bash)",
        'pockestrator completion zsh > "${fpath[1]}/_pockestrator"',
        "pockestrator completion fish > ~/.config/fish/completions/pockestrator.fish",
    ),
    "config": ("pockestrator config get-contexts", "pockestrator config use-context prod"),
    "config get-contexts": (
        "pockestrator config get-contexts",
        "pockestrator config get-contexts -o name",
    ),
    "config use-context": ("pockestrator config use-context prod",),
    "config current-context": ("pockestrator config current-context",),
    "config set-context": (
        "pockestrator config set-context prod --url https://agents.example.com:8091 "
        "--token-file ~/.config/pockestrator/prod.token",
    ),
    "config delete-context": ("pockestrator config delete-context old",),
    "token": ("pockestrator token create ci", "pockestrator token list"),
    "token create": (
        "pockestrator token create ci",
        "TOKEN=$(pockestrator token create ci)",
        "sudo pockestrator token create admin --local --save",
    ),
    "token list": ("pockestrator token list", "pockestrator token list -o json"),
    "token revoke": ("pockestrator token revoke ci", "pockestrator token revoke 3f2c9a1e0b7d"),
    "admin": ("sudo pockestrator admin create me@example.com",),
    "admin create": (
        "sudo pockestrator admin create me@example.com",
        'echo "$PASSWORD" | sudo pockestrator admin create me@example.com --password-stdin',
    ),
    "backup": ("pockestrator backup create blog", "pockestrator backup list blog"),
    "backup create": (
        "pockestrator backup create blog",
        "pockestrator backup create blog --no-wait",
    ),
    "backup list": ("pockestrator backup list blog",),
    "backup verify": (
        "pockestrator backup verify blog",
        "pockestrator backup verify blog 20261202T031500Z",
    ),
    "backup restore": ("pockestrator backup restore blog 20261202T031500Z",),
    "clone": ("pockestrator clone blog blog-staging --port 8095",),
    "import": ("pockestrator import shop backup.zip --port 8096 --version 0.29.0",),
    "archive": ("pockestrator archive list",),
    "archive list": ("pockestrator archive list",),
    "archive restore": (
        "pockestrator archive restore blog-20261202T031500Z --port 8097 --version 0.29.0",
    ),
    "nodes": ("pockestrator nodes", "pockestrator nodes -o json"),
    "move": (
        "pockestrator move blog --to beta",
        "pockestrator move blog --to alpha --from-backup",
    ),
    "events": ("pockestrator events", "pockestrator events blog -n 20", "pockestrator events -f"),
    "webhooks": (
        "pockestrator webhooks list",
        "pockestrator webhooks add https://hooks.example.com/pb",
    ),
    "webhooks list": ("pockestrator webhooks list", "pockestrator webhooks list -o json"),
    "webhooks add": (
        "pockestrator webhooks add https://hooks.example.com/pb",
        "pockestrator webhooks add https://hooks.example.com/pb --kind alert_firing --service blog",
    ),
    "webhooks delete": ("pockestrator webhooks delete 5b0c2e9a",),
    "webhooks test": (
        "pockestrator webhooks test 5b0c2e9a",
        "pockestrator webhooks test 5b0c2e9a --wait 60",
    ),
    "webhooks deliveries": ("pockestrator webhooks deliveries 5b0c2e9a -n 5",),
}


def _subcommands(
    parser: argparse.ArgumentParser,
) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def add_examples(parser: argparse.ArgumentParser, path: str = "") -> None:
    """Each parser's epilog gets its examples (and help keeps their line breaks)."""
    examples = EXAMPLES.get(path)
    if examples:
        parser.epilog = "Examples:\n" + "\n".join(f"  {line}" for line in examples)
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
    done: set[int] = set()
    for name, child in _subcommands(parser).items():
        if id(child) not in done:
            done.add(id(child))
            add_examples(child, f"{path} {name}".strip())
