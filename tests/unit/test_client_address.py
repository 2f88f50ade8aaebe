"""The address a login counts under: the TCP peer, or what a trusted proxy says it is;
and the ``trusted_proxies`` setting that names those proxies."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pockestrator.api.auth import client_address
from pockestrator.config import ConfigError, load_config

PROXIES = ("127.0.0.1/32", "10.0.0.0/8")


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "trusted", "client"),
    [
        # No proxy trusted: the header is only the client's word.
        ("203.0.113.7", [], (), "203.0.113.7"),
        ("203.0.113.7", ["198.51.100.1"], (), "203.0.113.7"),
        # A peer that is not one of the trusted proxies.
        ("203.0.113.7", ["198.51.100.1"], PROXIES, "203.0.113.7"),
        # From a trusted proxy, the address it appended; what the client wrote is to its left.
        ("127.0.0.1", ["198.51.100.1"], PROXIES, "198.51.100.1"),
        ("127.0.0.1", ["127.0.0.9, 198.51.100.1"], PROXIES, "198.51.100.1"),
        # A chain of trusted proxies, over two header lines, is walked from the right.
        ("127.0.0.1", ["198.51.100.66", "198.51.100.1, 10.1.2.3"], PROXIES, "198.51.100.1"),
        # Every hop trusted: the farthest one.
        ("127.0.0.1", ["10.0.0.5, 10.0.0.6"], PROXIES, "10.0.0.5"),
        # A trusted proxy without the header is the client itself.
        ("127.0.0.1", [], PROXIES, "127.0.0.1"),
        # Something that is no address ends the walk at the proxy that passed it on.
        ("127.0.0.1", ["198.51.100.1, unknown"], PROXIES, "127.0.0.1"),
        ("127.0.0.1", ["10.0.0.5, 198.51.100.1:443"], PROXIES, "127.0.0.1"),
        ("127.0.0.1", ["garbage, 198.51.100.1"], PROXIES, "198.51.100.1"),
        # IPv6 clients count by their /64, IPv4 ones reached over IPv6 by their IPv4 address.
        ("2001:db8:1:2:3:4:5:6", [], (), "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", [], (), "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", [], (), "203.0.113.7"),
        ("::ffff:127.0.0.1", ["198.51.100.1"], PROXIES, "198.51.100.1"),
        ("fe80::1%eth0", [], (), "fe80::/64"),
        ("::1", ["2001:db8::1"], ("::1/128",), "2001:db8::/64"),
        # No IP peer at all (a Unix socket).
        (None, ["198.51.100.1"], PROXIES, "local"),
    ],
)
def test_the_client_is_the_peer_or_the_first_untrusted_hop_a_trusted_proxy_names(
    peer: str | None, forwarded_for: list[str], trusted: tuple[str, ...], client: str
) -> None:
    assert client_address(peer, forwarded_for, trusted) == client


def config_with(tmp_path: Path, proxies: object) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"trusted_proxies": proxies}))
    return path


def test_no_proxy_is_trusted_unless_configured() -> None:
    assert load_config(None, {}).trusted_proxies == ()


def test_trusted_proxies_are_kept_as_networks_from_the_file_or_the_environment(
    tmp_path: Path,
) -> None:
    from_file = load_config(config_with(tmp_path, ["127.0.0.1", "::1", "10.0.0.0/8"]), {})
    assert from_file.trusted_proxies == ("127.0.0.1/32", "::1/128", "10.0.0.0/8")
    from_env = load_config(None, {"POCKESTRATOR_TRUSTED_PROXIES": "127.0.0.1, 192.168.0.0/16"})
    assert from_env.trusted_proxies == ("127.0.0.1/32", "192.168.0.0/16")


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("localhost", "is not an IP address or network"),
        ("10.0.0.1/8", "with no host bits set"),
        ("127.0.0.1:2019", "is not an IP address or network"),
        ("0.0.0.0/0", "trusts every address"),
        ("::/0", "trusts every address"),
    ],
)
def test_a_trusted_proxy_that_is_no_network_or_every_address_is_refused(
    tmp_path: Path, entry: str, says: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(config_with(tmp_path, ["127.0.0.1", entry]), {})
    [(key, message)] = refused.value.problems
    assert key == "trusted_proxies"
    assert says in message and repr(entry) in message
