"""The URL shown for a service: scheme, domain and Caddy's port, read from the main Caddyfile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pockestrator.agent.hostview import public_port
from pockestrator.agent.sandbox import render_sandbox_caddyfile
from pockestrator.config import AgentConfig
from pockestrator.controllers.caddy.caddyfile import public_ports
from pockestrator.specs.model import ServiceSpec
from pockestrator.specs.public_url import PublicPorts, public_url, service_url


def spec(**fields: Any) -> ServiceSpec:
    values: dict[str, Any] = {
        "project_name": "blog",
        "port": 8103,
        "pocketbase_version": "0.40.6",
        "domain": "blog.example.com",
    }
    values.update(fields)
    return ServiceSpec.model_validate(values)


def test_the_sandbox_caddyfile_gives_its_http_port() -> None:
    text = render_sandbox_caddyfile(Path("/srv/caddy/admin.sock"), 8180, Path("/srv/sites"))
    assert public_ports(text).http == 8180


def test_the_sandbox_caddyfile_with_tls_gives_both_ports_and_keeps_the_host_trust_store() -> None:
    text = render_sandbox_caddyfile(
        Path("/srv/caddy/admin.sock"), 8180, Path("/srv/sites"), https_port=8543
    )
    assert public_ports(text) == PublicPorts(http=8180, https=8543)
    assert "skip_install_trust" in text and "auto_https off" not in text
    plain = render_sandbox_caddyfile(Path("/srv/caddy/admin.sock"), 8180, Path("/srv/sites"))
    assert "auto_https off" in plain and "https_port" not in plain


def test_both_ports_are_read_from_the_global_options() -> None:
    text = "{\n\thttp_port 8080\n\thttps_port 8443\n}\n"
    assert public_ports(text) == PublicPorts(http=8080, https=8443)
    assert public_ports("{\n\thttp_port 8080\n}\n") == PublicPorts(http=8080, https=443)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "import /etc/caddy/pockestrator.d/*.caddy\n",
        "{\n\temail ops@example.com\n}\n",
        "{\n\thttp_port\n\t8080\n}\n",  # the value must be on the directive's line
        "{\n\thttp_port {$PORT}\n}\n",
        "{\n\thttp_port 99999\n}\n",
        "{\n\thttp_port 0\n}\n",
        "{\n\t# http_port 8080\n}\n",
        '{\n\tdebug\n}\nexample.com {\n\trespond "http_port 8080"\n}\n',
        "example.com {\n\thttp_port 8080\n}\n",  # not a global options block
        "{\n\tservers {\n\t\thttp_port 8080\n\t}\n}\n",  # nested, not a global option
        "{\n\tadmin off\n}\nexample.com {\n\thttp_port 8080\n}\n",  # only the global block
    ],
)
def test_unreadable_or_missing_ports_are_caddys_defaults(text: str) -> None:
    assert public_ports(text) == PublicPorts(http=80, https=443)


@pytest.mark.parametrize(
    ("https", "ports", "expected"),
    [
        (True, PublicPorts(), "https://blog.example.com"),
        (False, PublicPorts(), "http://blog.example.com"),
        (False, PublicPorts(http=8080), "http://blog.example.com:8080"),
        (True, PublicPorts(http=8080), "https://blog.example.com"),
        (True, PublicPorts(https=8443), "https://blog.example.com:8443"),
        (False, PublicPorts(https=8443), "http://blog.example.com"),
        (True, PublicPorts(http=443, https=80), "https://blog.example.com:80"),
    ],
)
def test_the_url_has_the_port_only_when_it_is_not_the_schemes_default(
    https: bool, ports: PublicPorts, expected: str
) -> None:
    assert public_url("blog.example.com", https=https, ports=ports) == expected


def test_a_service_url_follows_the_agents_tls_setting() -> None:
    ports = PublicPorts(http=8080, https=8443)
    assert (
        service_url(spec(), AgentConfig(caddy_tls=False), ports) == "http://blog.example.com:8080"
    )
    assert service_url(spec(), AgentConfig(), ports) == "https://blog.example.com:8443"


def test_an_international_domain_is_shown_in_its_ascii_form() -> None:
    shown = service_url(spec(domain="bücher.example"), AgentConfig(), PublicPorts())
    assert shown == "https://xn--bcher-kva.example"


def test_the_public_port_of_system_info_is_the_agents_schemes() -> None:
    ports = PublicPorts(http=8080, https=8443)
    assert public_port(ports, https=False) == 8080
    assert public_port(ports, https=True) == 8443
    assert public_port(PublicPorts(http=8080), https=True) is None
    assert public_port(PublicPorts(), https=False) is None
