"""The first superuser of a service, created once with ``pocketbase superuser upsert``.

The upsert runs as the instance user (through ``setpriv``) so that the files it writes
in ``pb_data`` keep their owner, through ``pockestrator.subprocesses`` (an argument list,
a deadline). A marker file in the service folder (``.pockestrator-superuser``) records
which emails were created, so it happens once per email. The password is the caller's
(the API generates one to show at creation), or the first line of
``superuser_password_file`` (which must be a root-owned regular file no one else can
read), or generated; a generated one is returned once and never logged, raised or
recorded (``redact`` keeps it out of error messages).

Neighbours: ``folders`` (where the folder is), ``owner`` (who runs the upsert).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from pockestrator.controllers.files import write_atomic
from pockestrator.controllers.service_layout import BINARY_NAME, DATA_DIR
from pockestrator.controllers.servicedirs.errors import ServiceDirError
from pockestrator.controllers.servicedirs.fds import lstat_at
from pockestrator.controllers.servicedirs.folders import ServiceFolders
from pockestrator.controllers.servicedirs.owner import InstanceOwner
from pockestrator.controllers.stamped_paths import utc_stamp
from pockestrator.specs.model import ServiceSpec
from pockestrator.subprocesses import ProcessTimedOut, run_bounded

SUPERUSER_MARKER = ".pockestrator-superuser"
SUPERUSER_TIMEOUT = 60.0
# The upsert prints a line or two; whatever prints a megabyte is not PocketBase's upsert.
SUPERUSER_OUTPUT_MAX_BYTES = 1024 * 1024
PASSWORD_FILE_MAX_BYTES = 4096
SETPRIV = "setpriv"

log = structlog.get_logger("pockestrator.servicedirs")


class SuperuserError(ServiceDirError):
    """The first superuser could not be created (the message never holds the password)."""


@dataclass(frozen=True)
class SuperuserCreated:
    """The first superuser was created; ``password`` only when generated (shown once)."""

    email: str
    password: str | None = field(default=None, repr=False)


def redact(text: str, secret: str) -> str:
    """``text`` with every occurrence of ``secret`` replaced, for error messages."""
    return text.replace(secret, "[redacted]") if secret else text


def superuser_command(
    binary: Path, data_dir: Path, email: str, password: str, owner: InstanceOwner | None
) -> list[str]:
    """The argument list of ``pocketbase superuser upsert``, as ``owner`` when given.

    PocketBase takes the password only as an argument, so it is visible in ``/proc`` to the
    host's other users for the fraction of a second the command runs.
    """
    # "--" ends the options: a password may start with "-" (token_urlsafe's alphabet has it).
    command = [str(binary), "superuser", "upsert", f"--dir={data_dir}", "--", email, password]
    if owner is None:
        return command
    setpriv = shutil.which(SETPRIV) or f"/usr/bin/{SETPRIV}"
    return [
        setpriv,
        f"--reuid={owner.uid}",
        f"--regid={owner.gid}",
        "--init-groups",
        "--",
        *command,
    ]


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


def superusers_done(service_fd: int) -> list[str]:
    """The emails the marker file says were created (empty when it is absent or odd)."""
    try:
        fd = os.open(
            SUPERUSER_MARKER, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=service_fd
        )
    except OSError:
        return []
    try:
        data = json.loads(os.read(fd, 64 * 1024))
    except ValueError:
        return []
    finally:
        os.close(fd)
    emails = data.get("emails") if isinstance(data, dict) else None
    return [email for email in emails if isinstance(email, str)] if isinstance(emails, list) else []


async def ensure_superuser(
    folders: ServiceFolders,
    resolve_owner: Callable[[], InstanceOwner],
    spec: ServiceSpec,
    password: str | None = None,
) -> SuperuserCreated | None:
    """Create the spec's first superuser once; None when there is none or it exists.

    The password is ``password`` when the caller has one (the API generates it so it
    can show it at creation), else read from ``superuser_password_file``, else
    generated; a generated one is in the result, the only place it ever appears.
    ``resolve_owner`` is asked for the instance account only when the upsert runs.
    """
    email = spec.superuser_email
    if email is None:
        return None
    name = spec.project_name
    path = folders.path_for(name)
    with folders.open_service(name) as opened:
        if opened is None:
            raise ServiceDirError(f"{path} does not exist; apply the service directory first")
        service_fd, _ = opened
        done = superusers_done(service_fd)
        if email in done:
            return None
        for needed in (BINARY_NAME, DATA_DIR):
            if lstat_at(service_fd, needed) is None:
                raise ServiceDirError(f"{path / needed} is missing; apply the directory first")
    if password is not None:
        generated = False
    elif spec.superuser_password_file is not None:
        password = read_password_file(Path(spec.superuser_password_file))
        generated = False
    else:
        password = secrets.token_urlsafe(24)
        generated = True
    await _run_upsert(path, email, password, resolve_owner())
    write_atomic(
        path / SUPERUSER_MARKER,
        json.dumps({"emails": [*done, email], "at": utc_stamp()}) + "\n",
        mode=0o644,
    )
    log.info("first superuser created", service=name, email=email, generated=generated)
    return SuperuserCreated(email, password if generated else None)


async def _run_upsert(path: Path, email: str, password: str, owner: InstanceOwner) -> None:
    as_owner = None if os.geteuid() == owner.uid else owner
    command = superuser_command(path / BINARY_NAME, path / DATA_DIR, email, password, as_owner)
    environment = {"PATH": "/usr/bin:/bin", "HOME": str(path), "LANG": "C.UTF-8"}
    try:
        result = await run_bounded(
            command,
            timeout=SUPERUSER_TIMEOUT,
            output_limit=SUPERUSER_OUTPUT_MAX_BYTES,
            cwd=path,
            env=environment,
            merge_stderr=True,
        )
    except ProcessTimedOut:
        raise SuperuserError(
            f"pocketbase superuser upsert for {email} timed out after {SUPERUSER_TIMEOUT:g} s"
        ) from None
    except OSError as exc:
        raise SuperuserError(
            f"cannot run {Path(command[0]).name} for {email}: {exc.strerror}"
        ) from None
    if result.truncated:
        raise SuperuserError(
            f"pocketbase superuser upsert for {email} printed more than "
            f"{SUPERUSER_OUTPUT_MAX_BYTES} bytes; stopped it"
        )
    if result.returncode != 0:
        text = redact(result.stdout_text, password).strip()
        raise SuperuserError(
            f"pocketbase superuser upsert for {email} failed "
            f"(exit status {result.returncode}): {text[-500:]}"
        )
