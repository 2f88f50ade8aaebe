"""Pockestrator: a reconciling agent that runs many PocketBase instances on one host.

The package is layered (see docs/architecture.md): ``specs`` (desired state) is used by
``controllers`` (the hands: systemd, Caddy, releases, service directories), and both are
used by ``agent`` (the daemon) and ``api`` (the REST API and dashboard). ``config`` sits
below all of them.
"""

__version__ = "0.1.0"
