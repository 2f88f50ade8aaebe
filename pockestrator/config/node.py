"""This host as a node of a fleet (docs/fleet.md): the shapes of its name and addresses,
and the default name, taken from the host's.
"""

from __future__ import annotations

import ipaddress
import re
import socket

NODE_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_NODE_API_ADDRESS = re.compile(r"https?://[A-Za-z0-9.\[\]:-]{1,255}")
_NODE_PUBLIC_ADDRESS = re.compile(r"[A-Za-z0-9.\[\]:-]{0,255}")


def default_node_name() -> str:
    """The host's name as a node name: its first label, lowercase ("node" if it has none
    that fits)."""
    label = socket.gethostname().split(".")[0].lower()
    return label if NODE_NAME.fullmatch(label) else "node"


def is_plain_remote(address: str) -> bool:
    """Whether ``address`` (http(s)://HOST:PORT) is plain HTTP to a host other than this
    one: what crosses the network there (a service's logs and status) is not encrypted."""
    scheme, _, rest = address.partition("://")
    if scheme.lower() != "http":
        return False
    if rest.startswith("["):
        host = rest[1:].partition("]")[0]
    else:
        host = rest.rsplit(":", 1)[0] if ":" in rest else rest
    if host.lower() == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a name: it may resolve anywhere
