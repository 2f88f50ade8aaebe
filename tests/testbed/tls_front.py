"""A TLS front for a node's API, as docs/fleet.md has an operator publish it: a Caddy
serving ``https://127.0.0.1:PORT`` with a certificate of a CA made here (openssl), and
passing every request on to the agent's plain loopback listener. The calling node trusts
that CA through ``fleet_ca_file``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from pockestrator.agent.sandbox import find_tool
from tests.testbed.waiting import port_listens, wait_until

_SERVER_EXTENSIONS = (
    "subjectAltName=IP:127.0.0.1\n"
    "basicConstraints=critical,CA:FALSE\n"
    "keyUsage=critical,digitalSignature\n"
    "extendedKeyUsage=serverAuth\n"
)


@dataclass(frozen=True)
class Certificates:
    ca: Path
    certificate: Path
    key: Path


def make_certificates(folder: Path) -> Certificates:
    """A CA of its own and a server certificate for 127.0.0.1 it signed (two days)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = folder / "ca.pem", folder / "ca.key"
    certificate, key, request = folder / "cert.pem", folder / "key.pem", folder / "req.csr"
    extensions = folder / "server.ext"
    extensions.write_text(_SERVER_EXTENSIONS)
    curve = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    ca_subject = ("-subj", "/CN=pockestrator test fleet CA")
    signed_by_ca = ("-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-extfile", extensions)
    for command in (
        ("req", "-x509", *curve, "-keyout", ca_key, "-out", ca, "-days", "2", *ca_subject),
        ("req", *curve, "-keyout", key, "-out", request, "-subj", "/CN=127.0.0.1"),
        ("x509", "-req", "-in", request, *signed_by_ca, "-out", certificate, "-days", "2"),
    ):
        subprocess.run(["openssl", *map(str, command)], check=True, capture_output=True)
    return Certificates(ca, certificate, key)


@contextlib.asynccontextmanager
async def tls_front(
    folder: Path, certificates: Certificates, port: int, upstream_port: int
) -> AsyncIterator[str]:
    """Caddy on ``https://127.0.0.1:port`` in front of ``127.0.0.1:upstream_port``, until
    the block ends; the address is given once the port takes connections."""
    folder.mkdir(parents=True, exist_ok=True)
    caddyfile = folder / "Caddyfile"
    caddyfile.write_text(
        # A stop waits 2 s for open connections, not forever (Caddy's default).
        "{\n\tadmin off\n\tpersist_config off\n\tskip_install_trust\n\tgrace_period 2s\n}\n\n"
        f"https://127.0.0.1:{port} {{\n"
        f"\ttls {certificates.certificate} {certificates.key}\n"
        f"\treverse_proxy 127.0.0.1:{upstream_port}\n"
        "}\n"
    )
    home = {"HOME": str(folder), "XDG_DATA_HOME": str(folder / "data")}
    home["XDG_CONFIG_HOME"] = str(folder / "config")
    log = (folder / "caddy.log").open("wb")
    caddy = await asyncio.create_subprocess_exec(
        str(find_tool("caddy") or "caddy"),
        *("run", "--config", str(caddyfile), "--adapter", "caddyfile"),
        env={**os.environ, **home},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        async def listening() -> bool:
            if caddy.returncode is not None:
                raise AssertionError(f"the TLS front's Caddy ended: {folder / 'caddy.log'}")
            return await port_listens(port)

        assert await wait_until(listening, 60, 0.05), f"the TLS front on port {port} listens"
        yield f"https://127.0.0.1:{port}"
    finally:
        if caddy.returncode is None:
            caddy.terminate()
            try:
                await asyncio.wait_for(caddy.wait(), 30)
            except TimeoutError:
                caddy.kill()  # a front that does not stop must not hold the fixture up
        await caddy.wait()
        log.close()
