"""A real PostgreSQL server for the tests: Debian's ``postgresql`` package, run by hand.

The server is the one a fleet's agents share (docs/fleet.md). It runs as it would for an
operator, but in a temporary folder: ``initdb`` and ``pg_ctl`` as the unprivileged
``postgres`` user (PostgreSQL refuses to run as root), listening on a free loopback port
only, with password (SCRAM) authentication, the password in a root-only file as an agent
reads it (``store.password_file``). Each test that wants a database gets a fresh one of
its own (``new_database``), so tests never see each other's rows.

``scripts/install-system-deps`` installs the package; without it (or without root, needed
to run the server as ``postgres``) the tests that need the server are skipped, saying why.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from pockestrator.agent.sandbox import free_port

POSTGRES_USER = "postgres"  # the package's system user, who runs the server
ROLE = "pockestrator"  # the role the agents connect as


def postgres_bin() -> Path | None:
    """The newest installed server's bin folder (/usr/lib/postgresql/<major>/bin)."""
    root = Path("/usr/lib/postgresql")
    majors = sorted(
        (p for p in root.glob("*") if (p / "bin" / "initdb").is_file()),
        key=lambda p: int(p.name) if p.name.isdigit() else 0,
    )
    return majors[-1] / "bin" if majors else None


def unavailable_reason() -> str | None:
    if postgres_bin() is None:
        return "no PostgreSQL server (Debian package postgresql; make system-deps)"
    if os.geteuid() != 0:
        return "running the PostgreSQL server as its own user needs root"
    try:
        pwd.getpwnam(POSTGRES_USER)
    except KeyError:
        return f"no {POSTGRES_USER} user (it comes with Debian's postgresql package)"
    return None


class PostgresServer:
    """One server in ``root``: its data folder, socket folder and the role's password."""

    def __init__(self, root: Path) -> None:
        bin_dir = postgres_bin()
        assert bin_dir is not None
        self.bin = bin_dir
        self.root = root
        self.data = root / "data"
        self.sockets = root / "sockets"
        self.port = free_port()
        self.host = "127.0.0.1"
        self.password = secrets.token_urlsafe(18)
        # As an operator keeps it: root-only, read by the agent (root) itself.
        self.password_file = root / "password"
        self._counter = 0

    def _as_postgres(self, *command: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["setpriv", "--reuid", POSTGRES_USER, "--regid", POSTGRES_USER, "--init-groups"]
            + [str(part) for part in command],
            check=True,
            capture_output=True,
            text=True,
            cwd="/",
            timeout=120,
        )

    def start(self) -> None:
        entry = pwd.getpwnam(POSTGRES_USER)
        self.root.mkdir(parents=True, exist_ok=True)
        os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.sockets.mkdir()
        os.chown(self.sockets, entry.pw_uid, entry.pw_gid)
        # initdb reads the superuser's password from a file the postgres user can read;
        # it goes once the cluster exists.
        initial = self.root / "initial-password"
        initial.write_text(self.password + "\n")
        os.chown(initial, entry.pw_uid, entry.pw_gid)
        initial.chmod(0o600)
        try:
            self._as_postgres(
                self.bin / "initdb",
                "-D",
                self.data,
                "-U",
                ROLE,
                "--auth=scram-sha-256",
                f"--pwfile={initial}",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            )
        finally:
            initial.unlink()
        self.password_file.write_text(self.password + "\n")
        self.password_file.chmod(0o600)
        options = (
            f"-c listen_addresses={self.host} -p {self.port} -k {self.sockets} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        self._as_postgres(
            self.bin / "pg_ctl",
            "-D",
            self.data,
            "-l",
            self.root / "server.log",
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._as_postgres(self.bin / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def restart(self) -> None:
        """Stop and start the server on the same port (clients must reconnect)."""
        self._as_postgres(
            self.bin / "pg_ctl",
            "-D",
            self.data,
            "-l",  # else the server's log goes to this call's pipe, which never ends
            self.root / "server.log",
            "-m",
            "fast",
            "-w",
            "-t",
            "60",
            "restart",
        )

    def dsn(self, database: str = "postgres") -> str:
        """A DSN without the password (the agent reads that from ``password_file``)."""
        return f"host={self.host} port={self.port} user={ROLE} dbname={database}"

    def psql(self, sql: str) -> str:
        """One statement through psql, as an operator would run it."""
        result = subprocess.run(
            [str(self.bin / "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "PGPASSWORD": self.password}
            | {
                "PGHOST": self.host,
                "PGPORT": str(self.port),
                "PGUSER": ROLE,
                "PGDATABASE": "postgres",
            },
            timeout=60,
        )
        return result.stdout.strip()

    def new_database(self) -> str:
        """A fresh, empty database of the role's; its name."""
        self._counter += 1
        name = f"test_{os.getpid()}_{self._counter}"
        self.psql(f"CREATE DATABASE {name} TEMPLATE template0")
        return name


def start_server() -> PostgresServer:
    """A started server in a new temporary folder (``stop_server`` removes both)."""
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="pockestrator-pg-")))
    try:
        server.start()
    except BaseException:
        stop_server(server)
        raise
    return server


def stop_server(server: PostgresServer) -> None:
    try:
        server.stop()
    finally:
        shutil.rmtree(server.root, ignore_errors=True)
