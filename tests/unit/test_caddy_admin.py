"""Where Caddy's admin API listens, read from the main Caddyfile, and whether instances can
reach it: on TCP every local process can, and could replace Caddy's whole configuration."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from pockestrator.api.context import HostFacts
from pockestrator.api.hostcheck import judge
from pockestrator.config import AgentConfig
from pockestrator.controllers.caddy.caddyfile import (
    DEFAULT_ADMIN_ADDRESS,
    admin_address,
    admin_reachable_by_instances,
)
from pockestrator.controllers.caddy.errors import admin_error_text, refused_while_adapting
from pockestrator.controllers.caddy.sites import upstream_requests


@pytest.mark.parametrize(
    ("caddyfile", "address"),
    [
        ("", DEFAULT_ADMIN_ADDRESS),
        ("example.com {\n\trespond hi\n}\n", DEFAULT_ADMIN_ADDRESS),
        ("{\n\temail ops@example.com\n}\n", DEFAULT_ADMIN_ADDRESS),
        ("{\n\tadmin off\n}\n", "off"),
        ("{\n\tadmin 127.0.0.1:2999\n}\n", "127.0.0.1:2999"),
        ('{\n\tadmin "unix//run/caddy/admin.sock|0600"\n}\n', "unix//run/caddy/admin.sock|0600"),
        ("# comment\n{\n\tadmin unix//run/a.sock {\n\t\torigins x\n\t}\n}\n", "unix//run/a.sock"),
        ("{\n\tadmin {\n\t\torigins x\n\t}\n}\n", DEFAULT_ADMIN_ADDRESS),
        ("{\n\tdebug\n}\nexample.com {\n\tadmin 1.2.3.4:1\n}\n", DEFAULT_ADMIN_ADDRESS),
        ("{\n\tservers {\n\t\tadmin x:1\n\t}\n}\n", DEFAULT_ADMIN_ADDRESS),
        ("{\n\tlog admin\n}\n", DEFAULT_ADMIN_ADDRESS),
    ],
)
def test_the_admin_address_is_read_from_the_global_options_only(
    caddyfile: str, address: str
) -> None:
    assert admin_address(caddyfile) == address


@pytest.mark.parametrize(
    ("address", "reachable"),
    [
        ("localhost:2019", True),
        ("127.0.0.1:2999", True),
        ("[::1]:2019", True),
        ("off", False),
        ("unix//run/caddy/admin.sock|0600", False),
        ("unix//run/caddy/admin.sock", False),
    ],
)
def test_only_a_tcp_admin_endpoint_is_reachable_by_instances(address: str, reachable: bool) -> None:
    assert admin_reachable_by_instances(address) is reachable


def facts(exposed: str | None) -> HostFacts:
    return HostFacts(
        systemd_version="252",
        systemd_problem=None,
        directory_problems=dict.fromkeys(
            ("systemd_dir", "base_dir", "caddy_sites_dir", "database")
        ),
        caddyfile_problem=None,
        caddy_binary=True,
        caddy_running=True,
        tools={"journalctl": True},
        caddy_admin_exposed=exposed,
    )


def test_an_exposed_admin_api_is_a_warning_that_says_how_to_close_it() -> None:
    config = AgentConfig(base_dir=Path("/var/lib/pockestrator/services"))
    report = judge(facts("localhost:2019"), config)
    [warning] = [w for w in report.warnings if w.code == "CADDY_ADMIN_EXPOSED"]
    assert "localhost:2019" in warning.message and "unix//run/caddy/admin.sock|0600" in (
        warning.message
    )
    assert not judge(facts(None), config).warnings


@pytest.mark.parametrize(
    "url", ["unix//run/caddy/admin.sock", "http://127.0.0.1:2019", "http://[::1]:2019/"]
)
def test_the_agent_reaches_the_admin_api_by_url_or_socket(url: str) -> None:
    assert AgentConfig(caddy_admin_url=url).caddy_admin_url == url


@pytest.mark.parametrize(
    "url", ["unix/relative.sock", "unix//run/a b.sock", "ftp://x", "http://a b", "localhost:2019"]
)
def test_an_admin_url_that_is_neither_is_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="caddy_admin_url"):
        AgentConfig(caddy_admin_url=url)


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (
            '{"error":"adapting config using caddyfile adapter: x"}\n',
            "adapting config using caddyfile adapter: x",
        ),
        ("not json at all", "not json at all"),
        ('{"other": 1}', '{"other": 1}'),
        ("", "Caddy refused without a message"),
        ('{"error": "' + "e" * 5000 + '"}', "e" * 1997 + "..."),
    ],
)
def test_the_admin_apis_refusal_is_read_from_its_error_field(body: str, text: str) -> None:
    assert admin_error_text(body) == text


@pytest.mark.parametrize(
    ("error", "adapting"),
    [
        ("Caddy refused to reload: adapting config using caddyfile adapter: a.caddy:2: x", True),
        ("Caddy refused to reload: loading config: loading new config: opening log", False),
        ("Caddy refused to reload: loading config: listen tcp :80: bind: in use", False),
    ],
)
def test_a_refusal_says_whether_the_caddyfile_did_not_adapt(error: str, adapting: bool) -> None:
    assert refused_while_adapting(error) is adapting


@pytest.mark.parametrize(
    ("body", "counts"),
    [
        ('[{"address":"127.0.0.1:8090","num_requests":2,"fails":0}]', {"127.0.0.1:8090": 2}),
        ("[]", {}),
        (
            '[{"address":"127.0.0.1:1","num_requests":1},{"address":"127.0.0.1:1",'
            '"num_requests":3},{"address":"127.0.0.1:2","num_requests":0}]',
            {"127.0.0.1:1": 4, "127.0.0.1:2": 0},
        ),
        ('[{"address":"a:1","num_requests":true},{"address":7,"num_requests":1}]', {}),
        ('[{"address":"a:1","num_requests":-3}, "x", null]', {"a:1": 0}),
        ('[{"address":"a:1"}]', {}),
        ('{"address":"a:1","num_requests":1}', None),
        ("not json", None),
        ("", None),
    ],
)
def test_the_requests_caddy_proxies_now_are_read_per_upstream_and_nothing_else_is_guessed(
    body: str, counts: dict[str, int] | None
) -> None:
    assert upstream_requests(body) == counts
