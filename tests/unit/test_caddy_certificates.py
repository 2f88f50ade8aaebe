"""Reading a served certificate: the validity and issuer from its DER bytes, and the handshake.

The certificates are real ones, made by openssl for each case; the handshake runs against a
real TLS server on loopback (Python's own, serving one of them).
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pockestrator.controllers.caddy.certificates import (
    Certificate,
    CertificateUnreadable,
    certificate_of,
    served_certificate,
)

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")


def make_certificate(folder: Path, *, days: int, subject: str, key: str = "ec") -> Path:
    """A self-signed certificate (its issuer is its subject) valid for ``days``."""
    algorithm = (
        ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
        if key == "ec"
        else ["-newkey", "rsa:2048"]
    )
    certificate, private = folder / f"{days}.crt", folder / f"{days}.key"
    validity = ["-nodes", "-days", str(days), "-subj", subject]
    files = ["-keyout", str(private), "-out", str(certificate)]
    subprocess.run(
        ["openssl", "req", "-x509", *algorithm, *validity, *files], check=True, capture_output=True
    )
    return certificate


def der_of(path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(path.read_text())


@pytest.mark.parametrize("key", ["ec", "rsa"])
def test_the_validity_and_the_issuers_common_name_are_read(tmp_path: Path, key: str) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    path = make_certificate(tmp_path, days=90, subject="/O=Acme/CN=Acme Test CA", key=key)
    after = datetime.now(UTC)
    certificate = certificate_of(der_of(path))
    # Between the two readings, however long openssl took (an RSA key once took 11 s on a
    # loaded machine, past a fixed 5 s margin).
    assert before - timedelta(seconds=1) <= certificate.not_before <= after
    assert certificate.not_after - certificate.not_before == timedelta(days=90)
    assert certificate.issuer == "Acme Test CA"


def test_a_date_past_2049_is_read_in_its_long_form(tmp_path: Path) -> None:
    # X.509 writes dates from 2050 on as GeneralizedTime (four-digit years).
    path = make_certificate(tmp_path, days=365 * 40, subject="/CN=Far")
    assert certificate_of(der_of(path)).not_after.year >= 2065


def test_an_issuer_without_a_common_name_is_named_by_its_organisation(tmp_path: Path) -> None:
    path = make_certificate(tmp_path, days=1, subject="/O=Only An Organisation")
    assert certificate_of(der_of(path)).issuer == "Only An Organisation"


def test_caddy_starts_renewing_a_third_of_the_lifetime_before_expiry() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    certificate = Certificate(start, start + timedelta(days=90), "R11")
    assert certificate.renews_at == start + timedelta(days=60)


@pytest.mark.parametrize(
    "der",
    [
        b"",
        b"\x30",
        b"\x30\x82\xff\xff",
        b"\x02\x01\x00",
        b"\x30\x03\x02\x01\x00",
        b"\x30\x85" + b"\x00" * 8,
    ],
    ids=["empty", "truncated", "too long", "not a sequence", "no tbs", "five length bytes"],
)
def test_bytes_that_are_no_certificate_are_refused_not_guessed(der: bytes) -> None:
    with pytest.raises(CertificateUnreadable):
        certificate_of(der)


def test_a_certificate_cut_short_is_refused(tmp_path: Path) -> None:
    der = der_of(make_certificate(tmp_path, days=1, subject="/CN=Cut"))
    for length in (10, 40, len(der) // 2):
        with pytest.raises(CertificateUnreadable):
            certificate_of(der[:length])


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[int, Path]]:
    path = make_certificate(tmp_path, days=30, subject="/CN=Loopback Test")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(path, tmp_path / "30.key")

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port, path
    finally:
        server.close()
        await server.wait_closed()


async def test_the_handshake_reads_the_certificate_the_server_serves(
    tls_server: tuple[int, Path],
) -> None:
    port, path = tls_server
    served = await served_certificate("app.example.test", port)
    assert served == certificate_of(der_of(path))


async def test_nobody_listening_or_no_tls_is_no_certificate(tmp_path: Path) -> None:
    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(plain, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        assert await served_certificate("app.example.test", port, timeout=2.0) is None
    finally:
        server.close()
        await server.wait_closed()
    assert await served_certificate("app.example.test", port, timeout=2.0) is None
