"""This host as a node of a fleet (docs/fleet.md): the shapes of its name and addresses,
and the default name, taken from the host's.
"""

from __future__ import annotations

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
