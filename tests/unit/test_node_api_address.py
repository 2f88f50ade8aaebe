"""A node's API address in a fleet: plain http:// across a network is refused unless the
operator says so (``fleet_plain_http``); loopback and https:// are taken."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from pockestrator.config import AgentConfig
from pockestrator.config.node import is_plain_remote

SECRET = Path("/etc/pockestrator/fleet-secret")


@pytest.mark.parametrize(
    ("address", "plain_remote"),
    [
        ("http://10.0.0.11:8091", True),
        ("http://node-b.internal:8091", True),  # a name may resolve anywhere
        ("http://0.0.0.0:8091", True),
        ("http://[2001:db8::1]:8091", True),
        ("HTTP://10.0.0.11:8091", True),
        ("http://127.0.0.1:8091", False),
        ("http://127.8.9.10:8091", False),
        ("http://localhost:8091", False),
        ("http://[::1]:8091", False),
        ("http://::1:8091", False),  # how the default reads with listen_host ::1
        ("https://10.0.0.11:8443", False),
        ("https://node-b.internal", False),
    ],
)
def test_plain_http_is_told_from_loopback_and_tls(address: str, plain_remote: bool) -> None:
    assert is_plain_remote(address) is plain_remote


def test_a_fleet_nodes_plain_http_address_on_the_network_is_refused_naming_the_key() -> None:
    with pytest.raises(
        ValidationError, match=re.escape("node_api_address: http://10.0.0.11:8091 is plain")
    ):
        AgentConfig(fleet_secret_file=SECRET, node_api_address="http://10.0.0.11:8091")
    # The default address follows listen_host: listening on every interface is a network.
    with pytest.raises(ValidationError, match="fleet_plain_http: true"):
        AgentConfig(fleet_secret_file=SECRET, listen_host="0.0.0.0")


@pytest.mark.parametrize(
    "settings",
    [
        {"fleet_secret_file": SECRET},  # the default: loopback
        {"fleet_secret_file": SECRET, "node_api_address": "https://10.0.0.11:8443"},
        {"fleet_secret_file": SECRET, "node_api_address": "http://[::1]:8091"},
        # The operator's choice, by name, on a private network.
        {
            "fleet_secret_file": SECRET,
            "node_api_address": "http://10.0.0.11:8091",
            "fleet_plain_http": True,
        },
        # One host without node calls: its address is only shown.
        {"node_api_address": "http://10.0.0.11:8091"},
        {"listen_host": "0.0.0.0"},
    ],
)
def test_loopback_tls_an_opt_in_or_no_node_calls_are_taken(settings: dict[str, object]) -> None:
    AgentConfig.model_validate(settings)


def test_the_ca_file_for_other_nodes_certificates_is_an_absolute_path() -> None:
    assert AgentConfig(fleet_ca_file=Path("/etc/pockestrator/fleet-ca.pem")).fleet_ca_file
    with pytest.raises(ValidationError, match="fleet_ca_file"):
        AgentConfig(fleet_ca_file=Path("fleet-ca.pem"))
