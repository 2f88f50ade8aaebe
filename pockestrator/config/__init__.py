"""The agent's configuration: one flat, validated model read from YAML and the environment.

Every layer reads its settings from ``AgentConfig``; nothing else reads files or
environment variables for configuration. The package by job: ``agent`` (the keys),
``checks`` (their values' rules), ``store``, ``targets`` and ``alerts`` (the sections'
models), ``node`` (this host in a fleet), ``shapes`` (value shapes the controllers check
again), ``loading`` (YAML + ``POCKESTRATOR_*``, every bad key named). The public names are
re-exported here: callers import ``pockestrator.config``.
"""

from pockestrator.config.agent import SANDBOX_UNSUPPORTED_HARDENING, AgentConfig
from pockestrator.config.alerts import AlertRules
from pockestrator.config.loading import ENV_PREFIX, ConfigError, client_file, load_config
from pockestrator.config.node import NODE_NAME, default_node_name
from pockestrator.config.shapes import (
    ACME_DIRECTORY,
    RENDERABLE_PATH,
    SOCKET_PATH_MAX,
    split_listen,
)
from pockestrator.config.store import SslMode, StoreConfig
from pockestrator.config.targets import S3Target

__all__ = [
    "ACME_DIRECTORY",
    "ENV_PREFIX",
    "NODE_NAME",
    "RENDERABLE_PATH",
    "SANDBOX_UNSUPPORTED_HARDENING",
    "SOCKET_PATH_MAX",
    "AgentConfig",
    "AlertRules",
    "ConfigError",
    "S3Target",
    "SslMode",
    "StoreConfig",
    "client_file",
    "default_node_name",
    "load_config",
    "split_listen",
]
