"""Reading the configuration: the YAML file, then ``POCKESTRATOR_<KEY>`` for every key
(the environment wins, as operators expect from systemd drop-ins), every bad key named at
once; and where the CLI keeps its own files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from pockestrator.config.agent import AgentConfig

ENV_PREFIX = "POCKESTRATOR_"


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` lists ``(key, message)`` pairs."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = "; ".join(f"{key}: {message}" for key, message in problems)
        super().__init__(f"invalid configuration ({source}): {lines}")


def client_file(name: str, environ: Mapping[str, str] | None = None) -> Path:
    """A file the CLI reads and ``pockestrator up``/``token create --save`` write:
    ``$XDG_CONFIG_HOME/pockestrator/<name>`` (by default ``~/.config/pockestrator/<name>``).
    ``token`` holds an API token (mode 0600), ``url`` the address of a running sandbox."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "pockestrator" / name


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """``POCKESTRATOR_<KEY>`` for every field; tuples are comma-separated."""
    overrides: dict[str, Any] = {}
    for name, field in AgentConfig.model_fields.items():
        raw = environ.get(ENV_PREFIX + name.upper())
        if raw is None:
            continue
        if field.annotation is not None and "tuple" in str(field.annotation):
            overrides[name] = tuple(part.strip() for part in raw.split(",") if part.strip())
        else:
            overrides[name] = raw
    return overrides


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None) -> AgentConfig:
    """Read ``path`` (YAML mapping; optional) and apply environment overrides.

    Raises ``ConfigError`` naming every bad key, so that the operator fixes all at once.
    """
    environ = os.environ if environ is None else environ
    source = str(path) if path else "defaults"
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(source, [("<file>", exc.strerror or str(exc))]) from exc
        except yaml.YAMLError as exc:
            raise ConfigError(source, [("<file>", f"not valid YAML: {exc}")]) from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(source, [("<file>", "must be a mapping of key: value")])
        data.update(loaded)
    env = _env_overrides(environ)
    if env:
        source += " + environment"
    data.update(env)
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        problems = [
            (".".join(str(part) for part in err["loc"]) or "<config>", err["msg"])
            for err in exc.errors()
        ]
        raise ConfigError(source, problems) from exc
