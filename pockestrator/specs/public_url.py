"""The address people open for a service: its scheme, its domain and Caddy's port.

One function computes it for everyone who shows or uses it: the API's ``url`` field (and
so the CLI and the dashboard), the agent's Caddy sites (an alias that redirects goes to
it) and PocketBase's own ``app_url`` default (the links in its e-mails). It lives in
``specs`` because both the agent and the API may import it, and neither may compute it
differently.

The scheme is ``https`` unless TLS is off for the service (its ``tls.mode``, else the
agent's ``caddy_tls``);
the port is Caddy's ``https_port`` or ``http_port`` from the main Caddyfile's global
options (``PublicPorts``, read by ``controllers.caddy.caddyfile.public_ports``), written
only when it is not the scheme's default, so ``https://app.example.com`` stays as short as
it can and the sandbox's ``http://app.localhost:8080`` still opens.
"""

from __future__ import annotations

from dataclasses import dataclass

from pockestrator.config import AgentConfig
from pockestrator.specs.grammar import TlsMode
from pockestrator.specs.model import ServiceSpec

HTTP_DEFAULT_PORT = 80
HTTPS_DEFAULT_PORT = 443


@dataclass(frozen=True)
class PublicPorts:
    """The ports Caddy serves sites on: ``http_port`` and ``https_port`` of its global
    options, Caddy's defaults when the main Caddyfile names none."""

    http: int = HTTP_DEFAULT_PORT
    https: int = HTTPS_DEFAULT_PORT


def tls_mode(spec: ServiceSpec, default: TlsMode) -> TlsMode:
    """How ``spec``'s domains get certificates: its own ``tls.mode``, else the agent's."""
    return spec.tls.mode or default


def uses_https(spec: ServiceSpec, config: AgentConfig) -> bool:
    """Whether Caddy serves ``spec`` over HTTPS (with a certificate) rather than plain HTTP."""
    return tls_mode(spec, config.caddy_tls) != "off"


def public_url(domain: str, *, https: bool, ports: PublicPorts) -> str:
    """``scheme://domain[:port]``, the port only when it is not the scheme's default."""
    scheme, port, default = (
        ("https", ports.https, HTTPS_DEFAULT_PORT)
        if https
        else ("http", ports.http, HTTP_DEFAULT_PORT)
    )
    return f"{scheme}://{domain}" if port == default else f"{scheme}://{domain}:{port}"


def service_url(spec: ServiceSpec, config: AgentConfig, ports: PublicPorts) -> str:
    """The public URL of ``spec``'s main domain, without a trailing slash.

    ``ports`` comes from the host (the agent's ``CaddySites.public_ports()``, the API's
    ``HostView.public_ports()``); everything else from the spec and the agent's settings.
    """
    return public_url(spec.domain, https=uses_https(spec, config), ports=ports)
