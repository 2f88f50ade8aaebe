"""Pockestrator: a reconciling agent that runs many PocketBase instances on one host.

The package is layered (see docs/architecture.md): ``specs`` (desired state) is used by
``controllers`` (the hands: systemd, Caddy, releases, service directories), and both are
used by ``agent`` (the daemon) and ``api`` (the REST API and dashboard). ``config`` sits
below all of them.
"""

__version__ = "0.1.0"
# The API contract's version (the OpenAPI document's info.version, /system/info's
# api_version, every answer's Pockestrator-Api-Version header). A client and an agent of
# one major number understand each other; the CLI warns when the majors differ.
API_VERSION = "1.1.0"
