"""The certificate Caddy serves for a domain: asked of Caddy itself, read without trusting it.

Caddy obtains and renews certificates on its own (ACME or its local CA), keeps them in
whatever storage it is configured with, and renews each when a third of its lifetime is
left. What a client gets is what Caddy serves, so the agent asks the same way a client
does: a TLS handshake with Caddy's HTTPS port on loopback, with the domain as the server
name (``served_certificate``). Nothing is verified (the agent only reads the dates and the
issuer's name, and a staging CA's or the local CA's certificate is as readable as any), and
nothing is sent after the handshake.

When to ask is the reconciler's decision (``agent.plan.certificate_check_due``): right after
the site was written, then only once the recorded certificate is due for renewal or while
there is none yet, at most once per resync. So a steady host makes no handshakes at all.

``certificate_of`` reads the validity and issuer from the certificate's DER bytes (a small
reader of the few ASN.1 structures on the way, rather than a dependency for X.509).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime

# The issuer's commonName, else its organizationName (X.520 attribute types 2.5.4.3, .10).
_COMMON_NAME = bytes([0x55, 0x04, 0x03])
_ORGANIZATION = bytes([0x55, 0x04, 0x0A])
_TEXT_TAGS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x14: "latin-1", 0x1E: "utf-16-be"}
ISSUER_MAX = 200


class CertificateUnreadable(ValueError):
    """The bytes are not a certificate this reader understands."""


@dataclass(frozen=True)
class Certificate:
    """What the status shows of a served certificate."""

    not_before: datetime
    not_after: datetime
    issuer: str | None

    @property
    def renews_at(self) -> datetime:
        """When Caddy starts renewing it: a third of its lifetime before it expires."""
        return self.not_after - (self.not_after - self.not_before) / 3


def _element(data: bytes, offset: int) -> tuple[int, int, int]:
    """``(tag, start of the value, end of the value)`` of the DER element at ``offset``."""
    if offset + 2 > len(data):
        raise CertificateUnreadable("truncated")
    tag, length = data[offset], data[offset + 1]
    start = offset + 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or start + count > len(data):
            raise CertificateUnreadable("bad length")
        length = int.from_bytes(data[start : start + count], "big")
        start += count
    end = start + length
    if end > len(data):
        raise CertificateUnreadable("truncated")
    return tag, start, end


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    elements = []
    while start < end:
        element = _element(data, start)
        elements.append(element)
        start = element[2]
    return elements


def _time(data: bytes, tag: int, start: int, end: int) -> datetime:
    text = data[start:end].decode("ascii", errors="replace")
    formats = {0x17: "%y%m%d%H%M%SZ", 0x18: "%Y%m%d%H%M%SZ"}
    if tag not in formats:
        raise CertificateUnreadable("validity is not a time")
    try:
        return datetime.strptime(text, formats[tag]).replace(tzinfo=UTC)
    except ValueError:
        raise CertificateUnreadable(f"unreadable time {text!r}") from None


def _issuer_name(data: bytes, start: int, end: int) -> str | None:
    found: dict[bytes, str] = {}
    for _set_tag, set_start, set_end in _children(data, start, end):
        for _tag, pair_start, pair_end in _children(data, set_start, set_end):
            parts = _children(data, pair_start, pair_end)
            if len(parts) != 2 or parts[0][0] != 0x06:
                continue
            (_, oid_start, oid_end), (value_tag, value_start, value_end) = parts
            encoding = _TEXT_TAGS.get(value_tag)
            if encoding is not None:
                text = data[value_start:value_end].decode(encoding, errors="replace")
                found.setdefault(data[oid_start:oid_end], text)
    name = found.get(_COMMON_NAME) or found.get(_ORGANIZATION)
    if name is None:
        return None
    printable = "".join(c for c in name if c.isprintable())
    return printable[:ISSUER_MAX] or None


def certificate_of(der: bytes) -> Certificate:
    """The validity and the issuer's name of a DER-encoded X.509 certificate."""
    tag, start, _end = _element(der, 0)
    if tag != 0x30:
        raise CertificateUnreadable("not a sequence")
    tbs_tag, tbs_start, tbs_end = _element(der, start)
    if tbs_tag != 0x30:
        raise CertificateUnreadable("no TBSCertificate")
    fields = _children(der, tbs_start, tbs_end)
    if fields and fields[0][0] == 0xA0:  # the explicit version, absent in v1
        fields = fields[1:]
    # serialNumber, signature, issuer, validity, subject, ...
    if len(fields) < 4 or fields[2][0] != 0x30 or fields[3][0] != 0x30:
        raise CertificateUnreadable("unexpected TBSCertificate")
    times = _children(der, fields[3][1], fields[3][2])
    if len(times) != 2:
        raise CertificateUnreadable("unexpected validity")
    return Certificate(
        not_before=_time(der, *times[0]),
        not_after=_time(der, *times[1]),
        issuer=_issuer_name(der, fields[2][1], fields[2][2]),
    )


async def served_certificate(
    server_name: str, port: int, host: str = "127.0.0.1", timeout: float = 5.0
) -> Certificate | None:
    """The certificate Caddy serves for ``server_name`` on ``host:port``; None when it
    serves none (no certificate yet, nobody listening, or the handshake fails)."""
    context = ssl.create_default_context()
    # Only the dates and the issuer are read; nothing is trusted and nothing is sent.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            _reader, writer = await asyncio.open_connection(
                host, port, ssl=context, server_hostname=server_name
            )
            tls = writer.get_extra_info("ssl_object")
            der = tls.getpeercert(binary_form=True) if tls is not None else None
    except (OSError, ssl.SSLError, TimeoutError):
        return None
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                async with asyncio.timeout(timeout):
                    await writer.wait_closed()
    if not der:
        return None
    try:
        return certificate_of(der)
    except CertificateUnreadable:
        return None
