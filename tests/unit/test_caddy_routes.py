"""Fleet routing's sites: a route passes a service's domains on to its node's Caddy with
the Host kept; the node's address, which comes from the shared store, must be a hostname
or an IP address and a port, or no route is written."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pockestrator.agent.fleet_routing import wanted_routes
from pockestrator.controllers.caddy import SiteSettings
from pockestrator.controllers.caddy.render import snippet_file_name
from pockestrator.controllers.caddy.routes import checked_upstream, render_route, route_key
from pockestrator.specs.grammar import GrammarError
from pockestrator.specs.model import ServiceSpec, parse_spec
from pockestrator.specs.store import NodeRecord, ServiceRecord

AT = datetime(2026, 1, 1, tzinfo=UTC)
PLAIN = SiteSettings(tls="off")


def spec(name: str = "blog", **extra: object) -> ServiceSpec:
    return parse_spec(
        {"project_name": name, "port": 9001, "pocketbase_version": "0.29.0", **extra},
        "example.com",
    )


@pytest.mark.parametrize(
    ("address", "parsed"),
    [
        ("10.0.0.12", ("10.0.0.12", None)),
        ("10.0.0.12:8080", ("10.0.0.12", 8080)),
        ("beta.example.com", ("beta.example.com", None)),
        ("beta.example.com:80", ("beta.example.com", 80)),
        ("[2001:db8::1]:8080", ("[2001:db8::1]", 8080)),
        ("[2001:db8::1]", ("[2001:db8::1]", None)),
    ],
)
def test_a_node_address_is_a_host_and_an_optional_port(
    address: str, parsed: tuple[str, int | None]
) -> None:
    assert checked_upstream(address) == parsed


@pytest.mark.parametrize(
    "address",
    [
        "",
        "beta:",
        "beta:0",
        "beta:65536",
        "beta:80:80",
        "Beta.Example.com",
        "beta.example.com {",
        "beta\nimport /etc/shadow",
        "{env.SECRET}",
        "[2001:db8::1]x",
        "[not-an-ip]:80",
        "-beta",
    ],
)
def test_an_address_outside_the_grammar_makes_no_route(address: str) -> None:
    with pytest.raises(GrammarError):
        checked_upstream(address)


def test_a_route_proxies_every_domain_of_the_service_to_its_node_keeping_the_host() -> None:
    text = render_route(
        spec(proxy={"aliases": ["www.example.com"]}), "beta", "10.0.0.12:8080", PLAIN
    )
    assert "http://blog.example.com, http://www.example.com {" in text
    assert "\treverse_proxy http://10.0.0.12:8080 {" in text
    assert "\t\theader_up Host {host}" in text
    assert "tls" not in text.replace("fleet_routing", "")
    assert render_route(spec(), "beta", "10.0.0.12:8080", PLAIN) == render_route(
        spec(), "beta", "10.0.0.12:8080", PLAIN
    )


def test_with_tls_a_route_asks_the_owner_over_https_naming_the_domain() -> None:
    text = render_route(spec(), "beta", "beta.example.com", SiteSettings(tls="auto"))
    assert text.splitlines()[2] == "blog.example.com {"
    assert "\treverse_proxy https://beta.example.com:443 {" in text
    assert "\t\t\ttls_server_name blog.example.com" in text


def test_a_routes_file_is_its_own_and_cannot_be_a_services() -> None:
    assert route_key("blog") == "_route-blog"
    assert snippet_file_name(route_key("blog")) == "_route-blog.caddy"
    with pytest.raises(GrammarError):
        snippet_file_name("_route-../x")


def record(name: str, node: str) -> ServiceRecord:
    return ServiceRecord("id" + name, spec(name), "api", "running", AT, AT, 1, node=node)


def node(name: str, public_address: str) -> NodeRecord:
    return NodeRecord(name, "http://x:1", public_address, 1, 1, AT, AT, AT, "ready", 0)


def test_this_node_routes_only_other_nodes_services_and_says_why_it_cannot() -> None:
    services = [record("mine", "alpha"), record("theirs", "beta"), record("odd", "gamma")]
    nodes = {"beta": node("beta", "10.0.0.12"), "gamma": node("gamma", "")}
    routes, skipped = wanted_routes(services, nodes, "alpha", PLAIN)
    assert list(routes) == ["_route-theirs"]
    assert skipped == {"odd": "node 'gamma' registered no public address"}
    nodes["gamma"] = node("gamma", "bad address {")
    _routes, skipped = wanted_routes(services, nodes, "alpha", PLAIN)
    assert "odd" in skipped
