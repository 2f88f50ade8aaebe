"""A superuser of a service, created in the instance's own box by the instance's own binary.

PocketBase loads its owner's JavaScript for any command it runs, and takes a superuser's
password only as a command-line argument (``superuser upsert EMAIL PASSWORD``), which every
local user could read in ``/proc``. So the agent runs neither: it starts a transient unit
(``controllers.systemd.transient``) with exactly the instance's identity and hardening (its
dynamic user, its state directory, ``render``'s box), running ``pocketbase migrate up`` with
a migrations folder of the agent's holding one small JavaScript migration, and an empty
hooks folder, so the owner's hooks and migrations do not run. The migration creates or
updates the superuser from two environment variables, which reach the process from a
root-only environment file (``EnvironmentFile=``, read by systemd before it drops
privileges): the password is never an argument, never in a unit's text, never in a file the
instance can read after the run. Both the migration folder and the environment file are
removed afterwards, and an agent killed during a run leaves them to the next, which sweeps
them (``sweep_bootstrap_leftovers``) when it starts. Each run's migration has a name of
its own, because PocketBase applies a migration of one name only once.

The password is the caller's (the API generates one to show at creation), or the first line
of ``superuser_password_file`` (a root-owned regular file no one else can read), or
generated; a generated one is returned once and never logged, raised or recorded
(``redact`` keeps it out of error messages). Which superusers were created is kept by the
reconciler in the service's status, not in the instance's folder.

Neighbours: ``dirs`` (``ServiceDirs.ensure_superuser``), ``controllers.systemd`` (the box).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from dbus_fast import Variant

from pockestrator.controllers.service_layout import DATA_DIR
from pockestrator.controllers.servicedirs.errors import ServiceDirError
from pockestrator.controllers.systemd import SystemdBus, SystemdError, UnitSettings
from pockestrator.controllers.systemd.render import quote_environment_value
from pockestrator.controllers.systemd.transient import run_transient
from pockestrator.files import write_atomic
from pockestrator.specs.grammar import check_email
from pockestrator.specs.model import ServiceSpec

SUPERUSER_TIMEOUT = 60.0
# SQLite's words for a write that met another's (SQLITE_BUSY and its extended codes).
DATABASE_LOCKED = "database is locked"
BOOTSTRAP_ATTEMPTS = 3
PASSWORD_FILE_MAX_BYTES = 4096
EMAIL_VARIABLE = "PB_BOOTSTRAP_EMAIL"
PASSWORD_VARIABLE = "PB_BOOTSTRAP_PASSWORD"  # noqa: S105 (the variable's name)

# Creates or updates one superuser from the environment; never reads anything else.
BOOTSTRAP_MIGRATION = f"""/// Written by Pockestrator for one run of `migrate up`, then removed.
migrate((app) => {{
  const email = $os.getenv("{EMAIL_VARIABLE}")
  const password = $os.getenv("{PASSWORD_VARIABLE}")
  if (!email || !password) {{
    throw new Error("the superuser's e-mail or password did not arrive")
  }}
  let record
  try {{
    record = app.findAuthRecordByEmail("_superusers", email)
  }} catch (_) {{
    record = new Record(app.findCollectionByNameOrId("_superusers"))
  }}
  record.setEmail(email)
  record.setPassword(password)
  app.save(record)
}}, (app) => {{}})
"""

log = structlog.get_logger("pockestrator.servicedirs")


class SuperuserError(ServiceDirError):
    """The superuser could not be created (the message never holds the password)."""


@dataclass(frozen=True)
class SuperuserCreated:
    """The superuser was created; ``password`` only when generated (shown once)."""

    email: str
    password: str | None = field(default=None, repr=False)


def redact(text: str, secret: str) -> str:
    """``text`` with every occurrence of ``secret`` replaced, for error messages."""
    return text.replace(secret, "[redacted]") if secret else text


BOOTSTRAP_UNITS = "pockestrator-bootstrap-*.service"
SECRETS_FILES = ".*.bootstrap.env"


def bootstrap_unit(name: str) -> str:
    return f"pockestrator-bootstrap-{name}.service"


async def sweep_bootstrap_leftovers(
    bus: SystemdBus, settings: UnitSettings, bootstrap_dir: Path
) -> list[str]:
    """Stop the superuser runs a killed agent left and remove their files; what went.

    Called when the agent starts, before it runs any of its own. A killed agent's run is
    nobody's any more (no one reads its result; the reconciler runs it again, since it was
    never recorded as done), and its environment file holds a password.
    """
    swept = []
    for unit in await bus.list_unit_names([BOOTSTRAP_UNITS]):
        try:
            await bus.stop_unit(unit)
            await bus.reset_failed_unit(unit)
        except SystemdError as exc:  # its files go anyway: the run then fails, unread
            log.warning("a leftover superuser run could not be stopped", unit=unit, error=str(exc))
        swept.append(unit)
    leftovers = sorted(settings.environment_dir.glob(SECRETS_FILES))
    if bootstrap_dir.is_dir():
        leftovers += sorted(bootstrap_dir.iterdir())
    for path in leftovers:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        swept.append(str(path))
    return swept


async def ensure_superuser(
    bus: SystemdBus,
    settings: UnitSettings,
    spec: ServiceSpec,
    email: str,
    password: str | None,
    *,
    bootstrap_dir: Path,
) -> SuperuserCreated:
    """Create or update the superuser ``email`` of ``spec``'s instance (see the module)."""
    check_email(email)
    if password is not None:
        generated = False
    elif spec.superuser_password_file is not None:
        password = read_password_file(Path(spec.superuser_password_file))
        generated = False
    else:
        password = secrets.token_urlsafe(24)
        generated = True
    for attempt in range(1, BOOTSTRAP_ATTEMPTS + 1):
        try:
            await run_bootstrap(bus, settings, spec, email, password, bootstrap_dir=bootstrap_dir)
            break
        except SuperuserError as exc:
            # A fresh instance's first moments write to its database too (PocketBase's
            # installer makes a temporary superuser about 50 ms after it first answers);
            # a `migrate up` whose transaction met that write fails, and runs again.
            if attempt == BOOTSTRAP_ATTEMPTS or DATABASE_LOCKED not in str(exc):
                raise
            log.info("superuser bootstrap met a locked database; again", service=spec.project_name)
    log.info("superuser created", service=spec.project_name, email=email, generated=generated)
    return SuperuserCreated(email, password if generated else None)


async def run_bootstrap(
    bus: SystemdBus,
    settings: UnitSettings,
    spec: ServiceSpec,
    email: str,
    password: str,
    *,
    bootstrap_dir: Path,
    timeout: float = SUPERUSER_TIMEOUT,
) -> None:
    """One ``migrate up`` run of the bootstrap migration in the instance's box."""
    name = spec.project_name
    token = secrets.token_hex(6)
    run_dir = bootstrap_dir / f"{name}-{token}"
    secrets_file = settings.environment_dir / f".{name}-{token}.bootstrap.env"
    try:
        migrations = _prepare_run(run_dir, token)
        secrets_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(
            secrets_file,
            f"{EMAIL_VARIABLE}={quote_environment_value(email)}\n"
            f"{PASSWORD_VARIABLE}={quote_environment_value(password)}\n",
            mode=0o600,
        )
        environment_files = [(str(secrets_file), False)]
        instance_environment = settings.environment_file(name)
        if instance_environment.exists():
            # The instance's own variables, e.g. the --encryptionEnv key of its settings.
            environment_files.insert(0, (str(instance_environment), False))
        folder = settings.service_dir(name)
        arguments = [
            str(settings.binary(spec.pocketbase_version)),
            "migrate",
            "up",
            f"--dir={folder}/{DATA_DIR}",
            f"--migrationsDir={migrations}",
            f"--hooksDir={run_dir / 'hooks'}",
        ]
        if spec.flags.encryption_env is not None:
            arguments.append(f"--encryptionEnv={spec.flags.encryption_env}")
        properties = [
            *(directive.as_property() for directive in settings.box(spec)),
            ("WorkingDirectory", Variant("s", str(folder))),
            ("EnvironmentFiles", Variant("a(sb)", environment_files)),
        ]
        run = await run_transient(bus, bootstrap_unit(name), arguments, properties, timeout=timeout)
    finally:
        secrets_file.unlink(missing_ok=True)
        shutil.rmtree(run_dir, ignore_errors=True)
    if not run.ok:
        text = redact(run.output, password).strip()
        raise SuperuserError(
            f"creating superuser {email} in {name} failed ({run.result}, exit status "
            f"{run.exit_status}): {text[-500:]}"
        )


def _prepare_run(run_dir: Path, token: str) -> Path:
    """The run's folders (readable by the instance's user) and its one migration."""
    migrations = run_dir / "migrations"
    for folder in (run_dir.parent, run_dir, migrations, run_dir / "hooks"):
        folder.mkdir(mode=0o755, exist_ok=True)
        folder.chmod(0o755)
    name = f"{int(time.time())}_pockestrator_superuser_{token}.js"
    write_atomic(migrations / name, BOOTSTRAP_MIGRATION, mode=0o644)
    return migrations


def read_password_file(path: Path) -> str:
    """The first line of a password file; errors name the file, never its content.

    The agent runs as root and the path comes from a spec, so the file must be one a
    careful operator made for the purpose: a regular file (no FIFO can block us, no
    symlink can redirect us), owned by root, readable by nobody else. That also refuses
    system files such as /etc/shadow (mode 0640).
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise SuperuserError(f"cannot read password file {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SuperuserError(f"password file {path} is not a regular file")
        if info.st_uid != 0 or info.st_mode & 0o077:
            raise SuperuserError(
                f"password file {path} must be owned by root with mode 0600 or 0400"
            )
        raw = os.read(fd, PASSWORD_FILE_MAX_BYTES + 1)
    except OSError as exc:
        raise SuperuserError(f"cannot read password file {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(raw) > PASSWORD_FILE_MAX_BYTES:
        raise SuperuserError(f"password file {path} is larger than {PASSWORD_FILE_MAX_BYTES} bytes")
    try:
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise SuperuserError(f"password file {path} is not UTF-8 text") from None
    password = lines[0] if lines else ""
    if not password or any(ord(char) < 32 or ord(char) == 127 for char in password):
        raise SuperuserError(
            f"password file {path} must hold the password on its first line, "
            "without control characters"
        )
    return password
