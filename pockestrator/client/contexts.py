"""Contexts: named agents the CLI can talk to, kept in one small file like a kubeconfig.

``$XDG_CONFIG_HOME/pockestrator/config.yaml`` (``~/.config/pockestrator/config.yaml``)::

    current-context: prod
    contexts:
      - name: prod
        url: https://agents.example.com:8091
        token-file: ~/.config/pockestrator/prod.token
      - name: local
        url: http://127.0.0.1:8091

A context names an agent's URL and, optionally, the file holding its token (the token
itself never sits in this file, so the file can be shared). ``--context NAME`` picks one
for a command, anywhere on the line; ``config use-context NAME`` makes it the current one.
Precedence, most explicit first: ``--url``/``--token``, then ``--context``, then
``POCKESTRATOR_URL``/``POCKESTRATOR_TOKEN``, then the current context, then the defaults
(``client.connection``). Reading is strict: an unknown key or a context without a URL is
an error that names the file, never a silent default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pockestrator.client.connection import SettingError, normalize_url
from pockestrator.config import client_file

CONTEXT_KEYS = frozenset({"name", "url", "token-file"})
TOP_KEYS = frozenset({"current-context", "contexts"})
NAME_MAX = 100


@dataclass(frozen=True)
class Context:
    name: str
    url: str
    token_file: Path | None = None


@dataclass(frozen=True)
class Contexts:
    path: Path
    current: str | None
    contexts: tuple[Context, ...]

    def find(self, name: str) -> Context:
        for context in self.contexts:
            if context.name == name:
                return context
        known = ", ".join(c.name for c in self.contexts) or "none"
        raise SettingError(
            f"--context: no context {name!r} in {self.path} (known: {known}); add one with"
            " `pockestrator config set-context NAME --url URL`"
        )


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    return client_file("config.yaml", environ)


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value or len(value) > NAME_MAX:
        raise SettingError(f"{where}: a context's name is 1 to {NAME_MAX} characters")
    if any(not c.isprintable() or c.isspace() for c in value):
        raise SettingError(f"{where}: a context's name has no spaces or control characters")
    return value


def parse_contexts(data: Any, path: Path) -> Contexts:
    """The file's content (already YAML-decoded) as ``Contexts``; strict."""
    where = str(path)
    if data is None:
        return Contexts(path, None, ())
    if not isinstance(data, dict):
        raise SettingError(f"{where}: not a mapping of current-context and contexts")
    unknown = sorted(set(map(str, data)) - TOP_KEYS)
    if unknown:
        raise SettingError(f"{where}: unknown key {unknown[0]!r}")
    items = data.get("contexts") or []
    if not isinstance(items, list):
        raise SettingError(f"{where}: contexts must be a list")
    found: list[Context] = []
    for number, item in enumerate(items, start=1):
        place = f"{where}: context {number}"
        if not isinstance(item, dict):
            raise SettingError(f"{place}: not a mapping")
        extra = sorted(set(map(str, item)) - CONTEXT_KEYS)
        if extra:
            raise SettingError(f"{place}: unknown key {extra[0]!r}")
        name = _name(item.get("name"), place)
        if any(c.name == name for c in found):
            raise SettingError(f"{place}: a second context named {name!r}")
        url = item.get("url")
        if not isinstance(url, str):
            raise SettingError(f"{place} ({name}): url is required")
        token_file = item.get("token-file")
        if token_file is not None and not isinstance(token_file, str):
            raise SettingError(f"{place} ({name}): token-file must be a path")
        found.append(
            Context(
                name,
                normalize_url(url, f"{place} ({name}) url"),
                Path(os.path.expanduser(token_file)) if token_file else None,
            )
        )
    current = data.get("current-context")
    if current is not None:
        current = _name(current, f"{where}: current-context")
        if not any(c.name == current for c in found):
            raise SettingError(f"{where}: current-context {current!r} is not one of the contexts")
    return Contexts(path, current, tuple(found))


def load_contexts(environ: Mapping[str, str] | None = None) -> Contexts:
    """The contexts file, or an empty set when there is none."""
    import yaml

    path = config_path(environ)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Contexts(path, None, ())
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingError(f"{path}: unreadable ({exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SettingError(f"{path}: not YAML ({str(exc).splitlines()[0]})") from None
    return parse_contexts(data, path)


def render_contexts(contexts: Contexts) -> dict[str, Any]:
    """What ``save_contexts`` writes (and ``parse_contexts`` reads back)."""
    items: list[dict[str, str]] = []
    for context in contexts.contexts:
        item = {"name": context.name, "url": context.url}
        if context.token_file is not None:
            item["token-file"] = str(context.token_file)
        items.append(item)
    data: dict[str, Any] = {}
    if contexts.current is not None:
        data["current-context"] = contexts.current
    data["contexts"] = items
    return data


def save_contexts(contexts: Contexts) -> None:
    import yaml

    from pockestrator.files import write_atomic

    contexts.path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(render_contexts(contexts), sort_keys=False)
    write_atomic(contexts.path, text, mode=0o600)


def with_context(contexts: Contexts, context: Context, *, current: bool = False) -> Contexts:
    """``contexts`` with ``context`` added or replaced (and made current if asked)."""
    names = [c.name for c in contexts.contexts]
    listed = list(contexts.contexts)
    if context.name in names:
        listed[names.index(context.name)] = context  # in its place: the file keeps its order
    else:
        listed.append(context)
    return Contexts(contexts.path, context.name if current else contexts.current, tuple(listed))


def chosen(
    flag: str | None, environ: Mapping[str, str], contexts: Contexts
) -> tuple[Context | None, bool]:
    """The context in force and whether it was named explicitly (``--context``)."""
    if flag:
        return contexts.find(flag), True
    if contexts.current is not None:
        return contexts.find(contexts.current), False
    return None, False
