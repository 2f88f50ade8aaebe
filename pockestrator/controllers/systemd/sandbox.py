"""The box every instance runs in, written once for both of systemd's spellings.

An instance is hostile: it runs its owner's JavaScript and migrations. Its service unit and
every one-off command of its binary (a transient unit: the first superuser's bootstrap, a
migration, a dry boot) must run as the same identity under the same restrictions, so one
table says what they are. Each ``Directive`` is one ``[Service]`` line of a unit file and
the D-Bus property that sets the same on a transient unit (``StartTransientUnit``).

The identity is a dynamic user of its own per instance (``DynamicUser=yes``, ``User=`` a
name derived from the service's), whose only writable place is its state directory
(``StateDirectory=``, mode 0700): instances cannot read, signal or even see each other
(``ProtectProc=invisible``), and root's own files are read-only to them. The rest follows
systemd's hardening guidance as far as PocketBase tolerates it (``systemd-analyze
security`` scores a rendered unit in docs/security.md). Some directives cannot work inside
a private user manager without its own user namespace (the sandbox and the test bed); the
agent's ``hardening_disabled`` setting leaves those out, of the unit and of the transient
units alike.

Neighbours: ``render`` writes these lines into the unit; ``transient`` passes the
properties to systemd; ``specs.grammar`` has checked every value that reaches here.
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbus_fast import Variant

from pockestrator.specs.grammar import check_project_name

USER_PREFIX = "pb-"
# systemd accepts user names of at most 31 characters.
USER_NAME_MAX = 31
STATE_MODE = 0o700


@dataclass(frozen=True)
class Directive:
    """One setting: ``key=text`` in a unit file, ``key`` of D-Bus type ``signature``."""

    key: str
    text: str
    signature: str
    value: Any

    @property
    def line(self) -> str:
        return f"{self.key}={self.text}"

    def as_property(self) -> tuple[str, Variant]:
        return self.key, Variant(self.signature, self.value)


def _flag(key: str) -> Directive:
    return Directive(key, "yes", "b", True)


def _flags(*keys: str) -> tuple[Directive, ...]:
    """A run of ``key=yes`` directives, in the order given."""
    return tuple(_flag(key) for key in keys)


def _word(key: str, word: str) -> Directive:
    """A directive whose value is one word, the same in the unit file and on D-Bus."""
    return Directive(key, word, "s", word)


def _networks(networks: Iterable[str]) -> list[tuple[int, bytes, int]]:
    """Networks as D-Bus's ``a(iayu)``: (address family, address bytes, prefix length)."""
    value = []
    for network in networks:
        parsed = ipaddress.ip_network(network)
        family = socket.AF_INET if parsed.version == 4 else socket.AF_INET6
        value.append((int(family), parsed.network_address.packed, parsed.prefixlen))
    return value


# In the order they appear in a unit file.
HARDENING: tuple[Directive, ...] = (
    *_flags(
        "NoNewPrivileges",
        "PrivateTmp",
        "PrivateDevices",
        "PrivateMounts",
        "PrivateIPC",
        "PrivateUsers",
    ),
    _word("ProtectSystem", "strict"),
    _word("ProtectHome", "yes"),
    *_flags(
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectKernelLogs",
        "ProtectControlGroups",
        "ProtectClock",
        "ProtectHostname",
    ),
    _word("ProtectProc", "invisible"),
    _word("ProcSubset", "pid"),
    # IP only: no unix socket of the host (the system bus, Caddy's admin socket, journald)
    # can even be opened. systemd connects the output to the journal before the exec.
    Directive(
        "RestrictAddressFamilies", "AF_INET AF_INET6", "(bas)", (True, ["AF_INET", "AF_INET6"])
    ),
    # The bitmask of namespace types it may create: none.
    Directive("RestrictNamespaces", "yes", "t", 0),
    *_flags(
        "RestrictRealtime",
        "RestrictSUIDSGID",
        "RemoveIPC",
        "LockPersonality",
        "MemoryDenyWriteExecute",
    ),
    Directive("SystemCallFilter", "@system-service", "(bas)", (True, ["@system-service"])),
    # Of those, nothing only root needs (chown, setuid, ...) and no scheduling or resource
    # changes; Go raises its open-file limit at start and takes EPERM quietly.
    Directive(
        "SystemCallFilter",
        "~@privileged @resources",
        "(bas)",
        (False, ["@privileged", "@resources"]),
    ),
    Directive("SystemCallErrorNumber", "EPERM", "i", 1),
    Directive("SystemCallArchitectures", "native", "as", ["native"]),
    Directive("CapabilityBoundingSet", "", "t", 0),
    Directive("AmbientCapabilities", "", "t", 0),
    _word("KeyringMode", "private"),
    _word("DevicePolicy", "closed"),
    Directive("UMask", "0077", "u", 0o077),
    Directive(
        "IPAddressDeny",
        "any",
        "a(iayu)",
        _networks(("0.0.0.0/0", "::/0")),
    ),
)
# Loopback is always allowed (Caddy reaches the instance there); a spec's ``egress`` adds
# addresses and networks, or ``any`` (``egress_allow``).
LOOPBACK = ("127.0.0.0/8", "::1/128")
HARDENING_NAMES = frozenset({*(directive.key for directive in HARDENING), "IPAddressAllow"})


def egress_allow(egress: Sequence[str]) -> Directive:
    """``IPAddressAllow=``: loopback, and what the spec's ``egress`` opens.

    Each entry has passed ``specs.grammar.check_egress`` (``any``, or an address or network
    in canonical form); ``IPAddressDeny=any`` drops everything else.
    """
    if "any" in egress:
        networks = ["0.0.0.0/0", "::/0"]
        text = "any"
    else:
        networks = [*LOOPBACK, *egress]
        text = " ".join(["localhost", *egress])
    return Directive("IPAddressAllow", text, "a(iayu)", _networks(networks))


def instance_user(name: str) -> str:
    """The dynamic user of a service: ``pb-<name>``, shortened with a hash past 31 chars.

    Names are unique, and a shortened one keeps a digest of the whole name, so two
    services never share a user.
    """
    check_project_name(name)
    user = USER_PREFIX + name
    if len(user) <= USER_NAME_MAX:
        return user
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    keep = USER_NAME_MAX - len(USER_PREFIX) - len(digest) - 1
    return f"{USER_PREFIX}{name[:keep].rstrip('-')}-{digest}"


def scratch_user(token: str) -> str:
    """A dynamic user for a throwaway copy (a snapshot's trial boot): no service's, as
    the ``_`` that no project name has says."""
    return f"pb_scratch-{hashlib.sha256(token.encode()).hexdigest()[:12]}"


def identity(user: str, state_directories: Sequence[str]) -> tuple[Directive, ...]:
    """Who the instance runs as and where it may write: its own dynamic user and state."""
    paths = list(state_directories)
    return (
        _flag("DynamicUser"),
        _word("User", user),
        Directive("StateDirectory", " ".join(paths), "as", paths),
        Directive("StateDirectoryMode", f"{STATE_MODE:04o}", "u", STATE_MODE),
    )


def hardening(disabled: Iterable[str], egress: Sequence[str] = ()) -> tuple[Directive, ...]:
    """The hardening directives minus those the host cannot run (``hardening_disabled``)."""
    left_out = frozenset(disabled)
    chosen = (*HARDENING, egress_allow(egress))
    return tuple(directive for directive in chosen if directive.key not in left_out)


def sandbox(
    name: str,
    state_directories: Sequence[str],
    disabled: Iterable[str],
    egress: Sequence[str] = (),
) -> tuple[Directive, ...]:
    """Identity, then hardening: everything an instance's processes run under."""
    return (*identity(instance_user(name), state_directories), *hardening(disabled, egress))


def scratch_sandbox(
    token: str, state_directory: str, disabled: Iterable[str]
) -> tuple[Directive, ...]:
    """The box of a throwaway copy: a user of its own, its one folder, loopback only."""
    return (
        *identity(scratch_user(token), [state_directory]),
        *hardening(disabled),
    )


def state_directory(base_dir: Path, state_root: Path, name: str) -> str:
    """``StateDirectory=`` of a service: its folder relative to systemd's state root."""
    relative = base_dir.relative_to(state_root) / check_project_name(name)
    return str(relative)
