"""Shapes of values the configuration checks and the controllers check again: paths
written unquoted into unit files and the Caddyfile, an ACME directory, a Unix socket's
path, a listener's ``IP:PORT``.
"""

from __future__ import annotations

import ipaddress
import re

# Paths written unquoted into unit files and the Caddyfile (the controllers check with it too).
RENDERABLE_PATH = re.compile(r"/[A-Za-z0-9._/+@-]*", re.ASCII)
# An ACME directory as it is written unquoted into a site's tls block: https, a host name
# or address with an optional port, and a path of safe characters.
ACME_DIRECTORY = re.compile(
    r"https://[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~/-]*)?",
    re.ASCII,
)


# sockaddr_un's sun_path holds 108 bytes with the final NUL.
SOCKET_PATH_MAX = 107


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
