"""The commands that work on this host's agent database directly, with no agent running
and no token: ``admin create`` (the first dashboard admin) and ``token create --local``
(the first API token, so that a fresh .deb host needs no Python to get one).

Both need to read and write the agent's database (root-only, mode 0600): run them as root
(``sudo``) on the agent's host. They go through the account store, as the agent does, so
the rows are the agent's own (a token is stored as its hash only).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pockestrator.client.http import ClientError

if TYPE_CHECKING:
    from pockestrator.client.commands import Console
    from pockestrator.config.agent import AgentConfig, PasswordHashing

PASSWORD_READ_MAX = 4096
TOKEN_NAME_MAX = 100  # as the API's POST /tokens takes it


# The configuration the .deb installs (and its unit reads): used when none is named.
HOST_CONFIG = Path("/etc/pockestrator/config.yaml")


def named_config(config: Path | None, host_config: Path = HOST_CONFIG) -> Path | None:
    """The agent's configuration file: ``--config``, else the host's when there is one
    (None: the defaults)."""
    return host_config if config is None and host_config.is_file() else config


def agent_config(config: Path | None) -> AgentConfig:
    """The configuration in ``config`` (None: the defaults); its errors as the CLI's."""
    from pockestrator.config import ConfigError, load_config

    try:
        return load_config(config)
    except ConfigError as exc:
        raise ClientError(str(exc)) from None


def agent_database(
    config: Path | None, database: Path | None, host_config: Path = HOST_CONFIG
) -> Path:
    """The agent's database file: ``--database``, else the configuration's
    (``named_config``); an error saying where it looked when there is none."""
    if database is not None:
        found, source = database.absolute(), "--database"
    else:
        config = named_config(config, host_config)
        found = agent_config(config).database
        source = f"the configuration {config}" if config else "the default configuration"
    if not found.is_file():
        raise ClientError(
            f"no agent database at {found} (from {source}); start the agent once so that "
            "it creates it, or pass the agent's --config or --database"
        )
    return found


def configured_hashing(config: Path | None, host_config: Path = HOST_CONFIG) -> PasswordHashing:
    """The agent's ``password_hashing`` (``named_config``'s, even beside ``--database``).
    An admin made here is hashed as the agent's logins check: were it dearer than the
    check an unknown e-mail gets, a login's time would tell the account exists."""
    from pockestrator.accounts.passwords import DEFAULT_HASHING

    named = named_config(config, host_config)
    return DEFAULT_HASHING if named is None else agent_config(named).password_hashing


def read_password(email: str, from_stdin: bool) -> str:
    if from_stdin:
        text = sys.stdin.read(PASSWORD_READ_MAX + 1)
        if len(text) > PASSWORD_READ_MAX:
            raise ClientError("the password on stdin is too long")
        password = text.removesuffix("\n").removesuffix("\r")
        if "\n" in password or "\r" in password:
            raise ClientError("the password on stdin must be one line")
        return password
    if not sys.stdin.isatty():
        raise ClientError(
            "no terminal to ask for the password on: pipe it in with --password-stdin"
        )
    first = getpass.getpass(f"Password for {email}: ")
    second = getpass.getpass("Repeat the password: ")
    if first != second:
        raise ClientError("the two passwords differ; no admin was created")
    return first


def admin_create(args: argparse.Namespace, console: Console) -> int:
    """The first admin's bootstrap: straight into the agent's database, its account store."""
    from pockestrator.accounts.passwords import create_admin
    from pockestrator.accounts.store import AccountStore, AdminExists

    database = agent_database(args.config, args.database)
    password = read_password(args.email, args.password_stdin)
    accounts = AccountStore(database)
    try:
        admin = create_admin(accounts, args.email, password, configured_hashing(args.config))
    except AdminExists:
        raise ClientError(f"an admin with the e-mail {args.email} already exists") from None
    except ValueError as exc:
        raise ClientError(f"{args.email}: {exc}") from None
    finally:
        accounts.close()
    data = {"id": admin.id, "email": admin.email, "database": str(database)}
    console.show(data, lambda: f"created admin {admin.email} (id {admin.id}) in {database}")
    return 0


def token_create(
    args: argparse.Namespace, console: Console, save: Callable[[str], Path] | None
) -> int:
    """An API token written into the agent's database (as root on its host): the token to
    stdout alone, notes to stderr, as ``token create`` through the API does."""
    from pockestrator.accounts.store import AccountStore

    name = args.name
    if not 1 <= len(name) <= TOKEN_NAME_MAX or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ClientError(f"a token's name is 1 to {TOKEN_NAME_MAX} characters, no controls")
    database = agent_database(args.config, args.database)
    accounts = AccountStore(database)
    try:
        token, record = accounts.create_token(name)
    finally:
        accounts.close()
    data = {"id": record.id, "name": record.name, "token": token, "database": str(database)}
    console.show(data, lambda: token)
    console.note(
        f"created token {args.name!r} (id {record.id}) in {database}; it is shown only this once"
    )
    if save is not None:
        path = save(token)
        console.note(f"saved to {path} (mode 0600); the CLI uses it when no token is given")
    return 0
