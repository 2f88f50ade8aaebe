"""Where an instance may connect beyond loopback: the ``egress`` field, its grammar, and the
``IPAddressAllow=`` line and D-Bus property it becomes."""

from __future__ import annotations

import socket

import pytest
from pydantic import ValidationError

from pockestrator.controllers.systemd.sandbox import egress_allow
from pockestrator.specs.errors import ErrorCode
from pockestrator.specs.grammar import GrammarError, check_egress
from pockestrator.specs.model import ServiceSpec

ACCEPTED = ["any", "192.0.2.25", "10.0.0.0/8", "192.0.2.25/32", "2001:db8::25", "2001:db8::/32"]


@pytest.mark.parametrize("value", ACCEPTED)
def test_any_or_a_canonical_address_or_network_is_accepted_as_written(value: str) -> None:
    assert check_egress(value) == value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("smtp.example.com", "host names cannot be filtered"),
        ("10.0.0.5/8", "no host bits set"),
        ("1.2.3.4/33", "must be 'any' or an IP address"),
        ("010.0.0.1", "must be 'any' or an IP address"),
        ("2001:0db8::/32", "write '2001:0db8::/32' as 2001:db8::/32"),
        ("2001:DB8::1", "write '2001:DB8::1' as 2001:db8::1"),
        ("0.0.0.0/0", "write 'any' to allow every address"),
        ("::/0", "write 'any' to allow every address"),
        ("", "must be 'any' or an IP address"),
        ("ANY", "must be 'any' or an IP address"),
        ("192.0.2.25 10.0.0.1", "must be 'any' or an IP address"),
        ("192.0.2.25\nIPAddressAllow=any", "must be 'any' or an IP address"),
    ],
)
def test_anything_else_is_refused_with_a_message_that_says_what_to_write(
    value: str, message: str
) -> None:
    with pytest.raises(GrammarError) as raised:
        check_egress(value)
    assert raised.value.code is ErrorCode.INVALID_EGRESS
    assert message in raised.value.message


def spec(**fields: object) -> ServiceSpec:
    base = {"project_name": "app", "port": 8090, "pocketbase_version": "0.40.6"}
    return ServiceSpec.model_validate({**base, "domain": "app.example.com", **fields})


def codes(error: ValidationError) -> dict[str, str]:
    return {".".join(map(str, e["loc"])): e["type"] for e in error.errors()}


def test_a_spec_opens_nothing_beyond_loopback_by_default() -> None:
    assert spec().egress == ()


@pytest.mark.parametrize(
    ("egress", "where"),
    [
        (["any", "192.0.2.25"], "egress"),
        (["192.0.2.25", "192.0.2.25"], "egress"),
        (["192.0.2.25", "mail.example.com"], "egress.1"),
        ([f"10.0.{n}.0/24" for n in range(33)], "egress"),
    ],
)
def test_a_bad_list_names_the_field_and_the_position(egress: list[str], where: str) -> None:
    with pytest.raises(ValidationError) as raised:
        spec(egress=egress)
    assert where in codes(raised.value)


@pytest.mark.parametrize(
    ("egress", "line"),
    [
        ((), "IPAddressAllow=localhost"),
        (("192.0.2.25", "10.0.0.0/8"), "IPAddressAllow=localhost 192.0.2.25 10.0.0.0/8"),
        (("any",), "IPAddressAllow=any"),
    ],
)
def test_the_unit_allows_loopback_and_what_the_spec_names(
    egress: tuple[str, ...], line: str
) -> None:
    assert egress_allow(egress).line == line


def test_the_dbus_property_holds_the_same_networks_as_the_line() -> None:
    key, variant = egress_allow(("192.0.2.25", "2001:db8::/32")).as_property()
    assert key == "IPAddressAllow" and variant.signature == "a(iayu)"
    assert variant.value == [
        (socket.AF_INET, bytes([127, 0, 0, 0]), 8),
        (socket.AF_INET6, socket.inet_pton(socket.AF_INET6, "::1"), 128),
        (socket.AF_INET, bytes([192, 0, 2, 25]), 32),
        (socket.AF_INET6, socket.inet_pton(socket.AF_INET6, "2001:db8::"), 32),
    ]
    _, everything = egress_allow(("any",)).as_property()
    assert everything.value == [
        (socket.AF_INET, bytes(4), 0),
        (socket.AF_INET6, bytes(16), 0),
    ]
