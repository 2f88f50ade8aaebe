"""Which requests a browser may make: the Host check (DNS rebinding) and the Origin check.

The API listens on loopback by default and controls systemd, so a web page the operator
happens to visit must not be able to drive it. Two attacks matter:

- DNS rebinding: a page on ``evil.example`` re-points its name at 127.0.0.1 and then talks
  to us as "same origin". Its requests carry ``Host: evil.example``; only names we were told
  about (loopback names, the listen address, ``allowed_hosts``) are answered. IP literals
  cannot be rebound, so when the API listens on every address, any IP literal is accepted.
- Cross-origin requests: browsers send ``Origin`` with them. There is no CORS: a request
  whose ``Origin`` is not the API's own origin is refused (the dashboard is same-origin).

Pure functions; the middleware in ``api.server`` applies them.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def split_host(value: str) -> tuple[str, int | None] | None:
    """``host[:port]`` of a Host header (IPv6 in brackets) -> (lowercase host, port)."""
    value = value.strip()
    if not value or any(c.isspace() or c in "/?#@\\" for c in value):
        return None
    host, port_text = value, ""
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[1:end], value[end + 1 :]
        if rest and not rest.startswith(":"):
            return None
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return None
    elif value.count(":") == 1:
        host, port_text = value.split(":")
    elif ":" in value:
        return None  # a bare IPv6 address must be bracketed in a Host header
    port: int | None = None
    if port_text or value.endswith(":"):
        if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            return None
        port = int(port_text)
    host = host.lower().rstrip(".")
    return (host, port) if host else None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def allowed_host_names(listen_host: str, extra: tuple[str, ...]) -> frozenset[str]:
    names = set(LOOPBACK_NAMES)
    names.add(listen_host.lower())
    names.update(name.strip().lower().rstrip(".") for name in extra if name.strip())
    return frozenset(names)


def host_allowed(header: str | None, listen_host: str, extra: tuple[str, ...]) -> bool:
    """True when a request with this Host header may be answered."""
    if header is None:
        return False
    parsed = split_host(header)
    if parsed is None:
        return False
    host, _port = parsed
    if host in allowed_host_names(listen_host, extra) or host.endswith(".localhost"):
        return True
    wildcard = listen_host in ("0.0.0.0", "::")
    return wildcard and _is_ip(host)


def origin_allowed(origin: str, host_header: str | None) -> bool:
    """True when ``Origin`` names this API itself (same host and port as the request).

    A Host header without a port takes the default port of the origin's scheme, so that a
    TLS-terminating proxy in front of the API does not turn the dashboard away.
    """
    if host_header is None or origin.strip().lower() == "null":
        return False
    try:
        parts = urlsplit(origin.strip())
        origin_port = parts.port
    except ValueError:
        return False
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        return False
    requested = split_host(host_header)
    if requested is None:
        return False
    request_host, request_port = requested
    origin_host = parts.hostname.lower().rstrip(".")
    if origin_port is None:
        origin_port = _DEFAULT_PORTS[parts.scheme]
    if request_port is None:
        request_port = _DEFAULT_PORTS[parts.scheme]
    return origin_host == request_host and origin_port == request_port
