"""Which port the instances' links need, read from the main Caddyfile's global options."""

from __future__ import annotations

from pathlib import Path

import pytest

from pockestrator.agent.hostview import public_port
from pockestrator.agent.sandbox import render_sandbox_caddyfile


def test_the_sandbox_caddyfile_gives_its_http_port() -> None:
    text = render_sandbox_caddyfile(Path("/srv/caddy/admin.sock"), 8180, Path("/srv/sites"))
    assert public_port(text, tls=False) == 8180


def test_with_tls_the_https_port_counts_not_the_http_port() -> None:
    text = "{\n\thttp_port 8080\n\thttps_port 8443\n}\n"
    assert public_port(text, tls=True) == 8443
    assert public_port(text, tls=False) == 8080
    assert public_port("{\n\thttp_port 8080\n}\n", tls=True) is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "import /etc/caddy/pockestrator.d/*.caddy\n",
        "{\n\temail ops@example.com\n}\n",
        "{\n\thttp_port 80\n}\n",
        "{\n\thttp_port\n\t8080\n}\n",  # the value must be on the directive's line
        "{\n\thttp_port {$PORT}\n}\n",
        "{\n\thttp_port 99999\n}\n",
        "{\n\t# http_port 8080\n}\n",
        '{\n\tdebug\n}\nexample.com {\n\trespond "http_port 8080"\n}\n',
        "example.com {\n\thttp_port 8080\n}\n",  # not a global options block
        "{\n\tservers {\n\t\thttp_port 8080\n\t}\n}\n",  # nested, not a global option
    ],
)
def test_default_or_unreadable_ports_give_no_port(text: str) -> None:
    assert public_port(text, tls=False) is None


def test_only_the_global_block_is_read() -> None:
    text = "{\n\tadmin off\n}\nexample.com {\n\thttp_port 8080\n}\n"
    assert public_port(text, tls=False) is None
