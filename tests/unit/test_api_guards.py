"""The Host check (against DNS rebinding) and the Origin check (no CORS)."""

from __future__ import annotations

import pytest

from pockestrator.api.guards import host_allowed, origin_allowed, split_host


@pytest.mark.parametrize(
    ("header", "parsed"),
    [
        ("localhost:8091", ("localhost", 8091)),
        ("LocalHost", ("localhost", None)),
        ("127.0.0.1", ("127.0.0.1", None)),
        ("[::1]:8091", ("::1", 8091)),
        ("[::1]", ("::1", None)),
        ("example.com.:80", ("example.com", 80)),
    ],
)
def test_host_headers_are_split_into_name_and_port(
    header: str, parsed: tuple[str, int | None]
) -> None:
    assert split_host(header) == parsed


@pytest.mark.parametrize(
    "header",
    [
        "",
        " ",
        "::1",
        "[::1",
        "[nope]:80",
        "host:0",
        "host:70000",
        "host:x",
        "a b",
        "u@host",
        "host/x",
        "host:",
    ],
)
def test_malformed_host_headers_are_not_understood(header: str) -> None:
    assert split_host(header) is None


@pytest.mark.parametrize(
    "header",
    ["127.0.0.1:8091", "localhost:8091", "[::1]:8091", "localhost", "dash.localhost:8091"],
)
def test_loopback_names_are_answered(header: str) -> None:
    assert host_allowed(header, "127.0.0.1", ())


def test_a_rebound_name_is_not_answered() -> None:
    assert not host_allowed("evil.example:8091", "127.0.0.1", ())
    assert not host_allowed("127.0.0.1.evil.example", "127.0.0.1", ())
    assert not host_allowed(None, "127.0.0.1", ())
    assert not host_allowed("[::1", "127.0.0.1", ())


def test_configured_names_and_the_listen_address_are_answered() -> None:
    assert host_allowed("Pockestrator.Example.com:443", "10.0.0.5", ("pockestrator.example.com",))
    assert host_allowed("10.0.0.5:8091", "10.0.0.5", ())
    assert not host_allowed("10.0.0.6:8091", "10.0.0.5", ())


def test_listening_everywhere_answers_ip_literals_but_still_not_strange_names() -> None:
    assert host_allowed("192.0.2.7:8091", "0.0.0.0", ())
    assert host_allowed("[2001:db8::1]:8091", "::", ())
    assert not host_allowed("evil.example", "0.0.0.0", ())


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("http://127.0.0.1:8091", "127.0.0.1:8091"),
        ("http://localhost:8091", "localhost:8091"),
        ("https://pockestrator.example.com", "pockestrator.example.com"),
        ("http://pockestrator.example.com", "pockestrator.example.com:80"),
        ("http://[::1]:8091", "[::1]:8091"),
    ],
)
def test_the_api_s_own_origin_is_accepted(origin: str, host: str) -> None:
    assert origin_allowed(origin, host)


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("http://evil.example", "127.0.0.1:8091"),
        ("http://127.0.0.1:9999", "127.0.0.1:8091"),
        ("http://localhost:8091", "127.0.0.1:8091"),
        ("null", "127.0.0.1:8091"),
        ("file://", "127.0.0.1:8091"),
        ("http://127.0.0.1:8091/path", "127.0.0.1:8091"),
        ("http://127.0.0.1:notaport", "127.0.0.1:8091"),
        ("http://127.0.0.1:8091", None),
    ],
)
def test_any_other_origin_is_refused(origin: str, host: str | None) -> None:
    assert not origin_allowed(origin, host)
