"""The rules an agent configuration's values follow beyond their types, as validators of
``AgentCheckedValues``, which ``AgentConfig`` extends: the keys are declared in
``config.agent``, what a value must be to reach a unit file, the Caddyfile or a socket
here.
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationInfo, field_validator

from pockestrator.config.node import _NODE_API_ADDRESS, _NODE_PUBLIC_ADDRESS, NODE_NAME
from pockestrator.config.shapes import (
    ACME_DIRECTORY,
    RENDERABLE_PATH,
    SOCKET_PATH_MAX,
    split_listen,
)
from pockestrator.config.targets import S3Target

# Every path key (absolute, all of them); True: it also reaches unit files and the Caddy
# import line unquoted, so it must fit ``RENDERABLE_PATH``.
PATH_KEYS: dict[str, bool] = {
    "base_dir": True,
    "systemd_dir": True,
    "caddy_config": False,
    "spec_dir": False,
    "database": True,
    "caddy_sites_dir": True,
    "caddy_access_log_dir": True,
    "release_cache_dir": True,
    "journal_dir": False,
    "archive_dir": False,
    "state_directory_root": True,
    "environment_dir": True,
    "snapshots_dir": False,
    "instance_python": True,
    "litestream_binary": False,
    "apps_dir": False,
    "fleet_secret_file": False,
    "fleet_ca_file": False,
}


class AgentCheckedValues(BaseModel):
    """The field validators of ``AgentConfig`` (which declares the fields): each names the
    keys it checks, so ``check_fields`` is off here, where they are not yet declared."""

    @field_validator("backup_targets", mode="before", check_fields=False)
    @classmethod
    def _targets_from_json(cls, value: Any) -> Any:
        if isinstance(value, str):  # from the environment
            try:
                return json.loads(value)
            except ValueError:
                raise ValueError("must be a JSON object of target name: settings") from None
        return value

    @field_validator("backup_targets", check_fields=False)
    @classmethod
    def _target_names(cls, value: dict[str, S3Target]) -> dict[str, S3Target]:
        from pockestrator.specs import grammar

        for name in value:
            if name == grammar.LOCAL_TARGET:
                raise ValueError("'local' is the snapshot folder itself, not a target to add")
            try:
                grammar.check_target_name(name)
            except grammar.GrammarError as exc:
                raise ValueError(exc.message) from None
        return value

    @field_validator("caddy_tls", mode="before", check_fields=False)
    @classmethod
    def _tls_mode_or_an_earlier_boolean(cls, value: Any) -> Any:
        """``caddy_tls: true/false`` (and their environment spellings) from earlier versions."""
        if isinstance(value, bool):
            return "auto" if value else "off"
        if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on"):
            return "auto"
        if isinstance(value, str) and value.strip().lower() in ("false", "0", "no"):
            return "off"
        return value

    @field_validator("acme_email", check_fields=False)
    @classmethod
    def _acme_email_is_an_address(cls, value: str | None) -> str | None:
        """It is written into every site's tls line: the e-mail grammar of specs, which
        admits nothing that could end the line or open a block."""
        from pockestrator.specs import grammar

        if value is None:
            return value
        try:
            return grammar.check_email(value)
        except grammar.GrammarError as exc:
            raise ValueError(exc.message) from None

    @field_validator("acme_ca", check_fields=False)
    @classmethod
    def _acme_ca_is_an_https_url(cls, value: str | None) -> str | None:
        if value is not None and not ACME_DIRECTORY.fullmatch(value):
            raise ValueError(
                "must be the https:// URL of an ACME directory (letters, digits and "
                "._~/- in its path), e.g. https://acme-staging-v02.api.letsencrypt.org/directory"
            )
        return value

    @field_validator("api_socket", check_fields=False)
    @classmethod
    def _socket_path_fits(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        if not value.is_absolute():
            raise ValueError("must be an absolute path")
        if len(str(value).encode()) > SOCKET_PATH_MAX:
            raise ValueError(f"must be at most {SOCKET_PATH_MAX} bytes (a Unix socket's limit)")
        return value

    @field_validator("listen_host", check_fields=False)
    @classmethod
    def _listen_host_is_an_address(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError as exc:
            raise ValueError("must be an IP address such as 127.0.0.1") from exc
        return value

    @field_validator("metrics_listen", check_fields=False)
    @classmethod
    def _metrics_listen_is_an_address(cls, value: str | None) -> str | None:
        if value is not None:
            split_listen(value)
        return value

    @field_validator("caddy_admin_url", check_fields=False)
    @classmethod
    def _caddy_admin_is_a_url_or_a_socket(cls, value: str) -> str:
        if value.startswith("unix/"):
            socket = value.removeprefix("unix/")
            if not RENDERABLE_PATH.fullmatch(socket):
                raise ValueError("a socket is unix//absolute/path (letters, digits, ._/+@-)")
            return value
        if not re.fullmatch(r"https?://[A-Za-z0-9.:\[\]-]+(/[A-Za-z0-9._~/-]*)?", value):
            raise ValueError("must be http://HOST:PORT or unix//PATH")
        return value

    @field_validator("trusted_proxies", check_fields=False)
    @classmethod
    def _trusted_proxies_are_networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """Refuse what would let any client choose the address it is counted under: a typo
        trusted silently, or a network that is every address."""
        networks = []
        for entry in value:
            try:
                network = ipaddress.ip_network(entry.strip())
            except ValueError:
                raise ValueError(
                    f"{entry[:60]!r} is not an IP address or network such as 127.0.0.1, ::1 "
                    "or 10.0.0.0/8 (with no host bits set)"
                ) from None
            if network.prefixlen == 0:
                raise ValueError(
                    f"{entry[:60]!r} trusts every address: any client could then name "
                    "the address its failed logins count under"
                )
            networks.append(str(network))
        return tuple(networks)

    @field_validator("default_domain", check_fields=False)
    @classmethod
    def _default_domain_makes_hostnames(cls, value: str) -> str:
        """Refuse at start-up a default domain that no derived domain could pass.

        The hostname rules live in ``specs.grammar`` alone; copying them here would let the
        two drift. The imports are local, so that importing ``config`` still loads nothing
        of ``specs``, and the exception to the layering stays this one call into two leaf
        modules of pure functions (``grammar`` imports only ``errors``), never into
        anything that could import ``config`` back.
        """
        from pockestrator.specs import grammar
        from pockestrator.specs.errors import ErrorCode

        if value.strip(".") == "":
            raise ValueError("must not be empty")
        # The longest project name under this domain must still be a valid hostname, so
        # that no service's derived domain is refused for its name's length alone.
        longest = "a" * grammar.NAME_MAX
        try:
            derived = grammar.normalize_domain(f"{longest}.{value}")
        except grammar.GrammarError as exc:
            limit = grammar.DOMAIN_MAX - grammar.NAME_MAX - 1
            extra = (
                f" (<project_name>.<default_domain> must fit {grammar.DOMAIN_MAX} "
                f"characters for names of up to {grammar.NAME_MAX}, so at most {limit} here)"
                if exc.code is ErrorCode.DOMAIN_TOO_LONG
                else ""
            )
            raise ValueError(
                f"{value[:60]!r} cannot make hostnames <project_name>.<default_domain>: "
                f"{exc.message}{extra}"
            ) from None
        return derived[len(longest) + 1 :]

    @field_validator("node_name", check_fields=False)
    @classmethod
    def _node_name_is_a_label(cls, value: str) -> str:
        if value and not NODE_NAME.fullmatch(value):
            raise ValueError(
                "must be 1 to 63 lowercase letters, digits and '-', not starting or ending with '-'"
            )
        return value

    @field_validator("node_api_address", check_fields=False)
    @classmethod
    def _node_api_address_is_a_url(cls, value: str | None) -> str | None:
        if value is not None and not _NODE_API_ADDRESS.fullmatch(value.rstrip("/")):
            raise ValueError("must be http(s)://HOST:PORT")
        return value.rstrip("/") if value is not None else None

    @field_validator("node_public_address", check_fields=False)
    @classmethod
    def _node_public_address_is_a_host(cls, value: str) -> str:
        if not _NODE_PUBLIC_ADDRESS.fullmatch(value):
            raise ValueError("must be HOST or HOST:PORT")
        return value

    @field_validator(*PATH_KEYS, check_fields=False)
    @classmethod
    def _paths_are_absolute_and_fit(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is not None and not value.is_absolute():
            raise ValueError("must be an absolute path")
        if (
            PATH_KEYS[info.field_name or ""]
            and value is not None
            and not RENDERABLE_PATH.fullmatch(str(value))
        ):
            raise ValueError(
                "must use only letters, digits and . _ / + @ - (it is written into unit "
                "files and the Caddyfile)"
            )
        return value
