"""The text Pockestrator writes for Caddy: one site per service, the catch-all, the import.

``render_site`` turns a ``ServiceSpec`` into the text of its site: one block serving the
main domain (and the aliases, unless they redirect), a second block redirecting the
aliases when ``redirect_aliases`` says so. It is pure and deterministic, so its SHA-256
(``caddy_config_hash``) identifies the desired state and a file on disk that hashes
differently is drift. What else the text depends on, the agent's TLS settings and Caddy's
ports (for a redirect's target), comes in as ``SiteSettings``. Every value it writes has
passed a strict grammar (``specs.grammar``), and it checks them again, so no spec can add
a site, a directive, an import or an environment placeholder to the file.

What a site does, from PocketBase's production guidance and issue 13:

- the body limit (``request_body max_size``) with a 413 that says so, instead of an empty
  answer;
- ``reverse_proxy`` with a read timeout longer than PocketBase's realtime connections, and
  ``lb_try_duration``: while the instance does not accept connections (a restart, an
  upgrade) Caddy holds each request and retries, so a restart looks like latency, not a
  502; when the hold runs out, the 502 says what happened;
- a stopped service answers 503 at once, rather than holding every request in vain;
- ``X-Real-IP`` and ``X-Forwarded-For`` set by Caddy to the client's address, replacing
  whatever the client sent (Caddy trusts no incoming ``X-Forwarded-For`` unless the main
  Caddyfile names ``trusted_proxies``), so PocketBase can trust either header one hop in;
- with TLS: Caddy's own certificate management (ACME, or its local CA with ``internal``),
  HSTS, and a redirect of plain HTTP to HTTPS (Caddy's automatic one on port 443; a block
  of its own when Caddy's ``https_port`` is another, which Caddy's would leave out).

The catch-all (``render_catch_all``, the file ``_catch-all.caddy``, which no project name
can clash with) answers every domain no service has with 404 and a short text, where Caddy
alone would answer an empty 200 that an uptime monitor takes for a live site. Over HTTPS
a name with no certificate cannot be answered at all (the handshake fails, which clients
report as an error, not as up); issuing certificates for any name asked would let anyone
fill the disk with them.

The main Caddyfile (the operator's) pulls every snippet in with one absolute
``import <dir>/*.caddy`` line: ``import_line`` is that line, ``has_import`` finds it and
``with_import`` appends it without changing a byte of what was there.

Neighbours: ``caddyfile`` (reading Caddyfile text), ``sites`` (the folder of snippets).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pockestrator.config import ACME_DIRECTORY, RENDERABLE_PATH, AgentConfig
from pockestrator.controllers.caddy.upstreams import (
    local_upstream,
    upstream_dir,
    upstream_placeholder,
)
from pockestrator.specs import grammar
from pockestrator.specs.errors import ErrorCode
from pockestrator.specs.grammar import TLS_MODES, GrammarError, TlsMode
from pockestrator.specs.model import ServiceSpec
from pockestrator.specs.public_url import (
    HTTPS_DEFAULT_PORT,
    PublicPorts,
    public_url,
    tls_mode,
)
from pockestrator.specs.service_parts import DEFAULT_MAX_BODY_SIZE
from pockestrator.specs.values.service import HOLD_REQUESTS_MAX

# The default body limit: PocketBase's production guidance puts one in front of it. 10MB
# admits a file field at its default 5MB limit plus the rest of a multipart form.
MAX_REQUEST_BODY = DEFAULT_MAX_BODY_SIZE
# Realtime subscriptions are Server-Sent Events that stay open; PocketBase itself ends an
# idle one after 5 minutes, so Caddy's read timeout must be longer than that.
PROXY_READ_TIMEOUT = "360s"
# How often a held request tries the instance again: a held request waits at most this
# much longer than the instance takes to listen. A new instance's first request is held
# through its boot (about 0.1 s): at 100 ms it waited 50 ms more on average; a refused
# loopback connection costs Caddy next to nothing, even 50 times a second.
HOLD_RETRY_INTERVAL = "20ms"
# One year: what HSTS preload lists ask for, and long enough to matter.
HSTS_VALUE = "max-age=31536000"
SNIPPET_SUFFIX = ".caddy"
# The catch-all's key among the sites and its file stem: not a project name (those start
# with a letter), so no service can ever own it.
CATCH_ALL = "_catch-all"
CATCH_ALL_TEXT = "No service has this domain."
# Fleet routing's sites (``routes``): ``_route-<project name>``, which no project name is.
ROUTE_PREFIX = "_route-"


@dataclass(frozen=True)
class SiteSettings:
    """What of the agent's settings and the host a site's text depends on."""

    tls: TlsMode = "auto"
    acme_email: str | None = None
    acme_ca: str | None = None
    ports: PublicPorts = field(default_factory=PublicPorts)
    # Where a sleeping service's access log goes (``access_log_path``); None: nowhere, and
    # no service is ever idle.
    access_log_dir: Path | None = None
    # A fleet node's upstream files (``upstreams``): a site's upstream is read from its
    # file, so a move switches it without a config load; None: the port, as always.
    upstream_dir: Path | None = None

    @classmethod
    def of(cls, config: AgentConfig, ports: PublicPorts) -> SiteSettings:
        return cls(
            tls=config.caddy_tls,
            acme_email=config.acme_email,
            acme_ca=config.acme_ca,
            ports=ports,
            access_log_dir=config.caddy_access_log_dir,
            upstream_dir=upstream_dir(config),
        )


def access_log_path(log_dir: Path, project_name: str) -> Path:
    """``<dir>/<name>.log``: a service's access log, whose mtime is its last request."""
    return log_dir / f"{grammar.check_project_name(project_name)}.log"


def _access_log_lines(spec: ServiceSpec, settings: SiteSettings) -> list[str]:
    """The ``log`` of a service that may sleep: one line per request, its details deleted
    (no address, URI, header or user: a query string may hold a token), rolled at 1MiB.
    Its content is never read; that Caddy wrote it, its mtime, says when the last request
    ended (agent.sleep)."""
    if spec.sleep_after is None or settings.access_log_dir is None:
        return []
    path = str(access_log_path(settings.access_log_dir, spec.project_name))
    if not RENDERABLE_PATH.fullmatch(path) or "/../" in path or "/./" in path:
        raise GrammarError(ErrorCode.INVALID_PATH, "the access log path cannot be written here")
    return [
        "log {",
        f"\toutput file {path} {{",
        "\t\troll_size 1MiB",
        "\t\troll_keep 1",
        "\t}",
        "\tformat filter {",
        "\t\trequest delete",
        "\t\tresp_headers delete",
        "\t\tuser_id delete",
        "\t}",
        "}",
    ]


def site_address(domain: str, *, tls: bool) -> str:
    """The address of the site block.

    With TLS the bare domain lets Caddy manage certificates. A single-label domain gets an
    explicit ``https://``, because a bare word at the start of a line can be read as a
    Caddyfile keyword (``import`` would turn the site into an import directive).
    """
    if not tls:
        return f"http://{domain}"
    return domain if "." in domain else f"https://{domain}"


def _checked_domain(domain: str) -> str:
    if grammar.normalize_domain(domain) != domain:
        raise GrammarError(ErrorCode.INVALID_DOMAIN, "domain is not in its normalised ASCII form")
    return domain


def _checked_hold(seconds: object) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        raise GrammarError(ErrorCode.INVALID_HOLD_REQUESTS, "hold_requests must be whole seconds")
    if not 0 <= seconds <= HOLD_REQUESTS_MAX:
        raise GrammarError(
            ErrorCode.INVALID_HOLD_REQUESTS, f"hold_requests must be 0 to {HOLD_REQUESTS_MAX}"
        )
    return seconds


def _tls_lines(mode: TlsMode, settings: SiteSettings) -> list[str]:
    """The ``tls`` directive of a site, if it needs one (the lines of its block body)."""
    if mode not in TLS_MODES:
        raise GrammarError(ErrorCode.INVALID_TLS_MODE, f"unknown TLS mode {mode!r}")
    if mode == "internal":
        return ["tls internal"]
    if mode == "off":
        return []
    email = settings.acme_email
    if email is not None:
        email = grammar.check_email(email)
    ca = settings.acme_ca
    if ca is not None and not ACME_DIRECTORY.fullmatch(ca):
        raise GrammarError(ErrorCode.INVALID_VALUE, "acme_ca is not an https URL")
    head = "tls" if email is None else f"tls {email}"
    if ca is None:
        return [] if email is None else [head]
    return [f"{head} {{", f"\tca {ca}", "}"]


def _block(addresses: list[str], body: list[str]) -> list[str]:
    return [", ".join(addresses) + " {", *(f"\t{line}" for line in body), "}"]


def render_site(spec: ServiceSpec, settings: SiteSettings, *, running: bool = True) -> str:
    """The Caddy site of one service; the same inputs always give the same bytes.

    ``running``: the desired run state; a stopped service's site answers 503 at once. The
    values are checked against their grammars again (a spec built with
    ``model_construct`` skips validation), so only a lowercase project name, ASCII
    hostnames, an integer port and a size of digits and a unit can ever reach the file.
    """
    name = grammar.check_project_name(spec.project_name)
    domain = _checked_domain(spec.domain)
    port = spec.port
    if isinstance(port, bool) or not isinstance(port, int) or not 1024 <= port <= 65535:
        raise GrammarError(ErrorCode.PORT_OUT_OF_RANGE, "port must be 1024-65535")
    proxy = spec.proxy
    aliases = [_checked_domain(alias) for alias in proxy.aliases]
    max_size = grammar.check_body_size(proxy.max_body_size)
    hold = _checked_hold(proxy.hold_requests)
    mode = tls_mode(spec, settings.tls)
    https = mode != "off"
    security = _tls_lines(mode, settings)
    if https and spec.tls.hsts:
        security.append(f'header Strict-Transport-Security "{HSTS_VALUE}"')
    if running:
        security += _access_log_lines(spec, settings)

    def addresses(domains: list[str]) -> list[str]:
        return [site_address(each, tls=https) for each in domains]

    served = [domain] if proxy.redirect_aliases else [domain, *aliases]
    target, noted = local_upstream(port), []
    if settings.upstream_dir is not None:
        # The port stays in the text, so that a change of it rewrites the file.
        noted = [f"# Upstream {target}, read from a file a move's switch rewrites."]
        target = upstream_placeholder(settings.upstream_dir, name)
    if running:
        upstream = ["header_up X-Real-IP {remote_host}"]
        if hold:
            upstream += [f"lb_try_duration {hold}s", f"lb_try_interval {HOLD_RETRY_INTERVAL}"]
        upstream += ["transport http {", f"\tread_timeout {PROXY_READ_TIMEOUT}", "}"]
        handling = [
            "request_body {",
            f"\tmax_size {max_size}",
            "}",
            "handle_errors 413 {",
            f'\trespond "The request body is larger than this service accepts ({max_size})." 413',
            "}",
            "handle_errors 502 {",
            '\trespond "The service is not answering; it may be restarting. Try again." 502',
            "}",
            *_block([f"reverse_proxy {target}"], upstream),
        ]
    else:
        handling = ['respond "This service is stopped." 503']
    lines = [
        f"# Generated by Pockestrator for service {name}. Do not edit: the agent detects",
        "# changes to this file by its hash and writes it again.",
        *noted,
        *_block(addresses(served), [*security, *handling]),
    ]
    if proxy.redirect_aliases and aliases:
        target = public_url(domain, https=https, ports=settings.ports)
        lines += _block(addresses(aliases), [*security, f"redir {target}{{uri}} 301"])
    if https and settings.ports.https != HTTPS_DEFAULT_PORT:
        # Caddy's own redirect leaves out an https_port of its global options (it assumes
        # 443 is forwarded there); the service URL has it, and so must the redirect.
        to_https = f"redir https://{{host}}:{settings.ports.https}{{uri}} 308"
        lines += _block([site_address(each, tls=False) for each in [domain, *aliases]], [to_https])
    return "\n".join(lines) + "\n"


def render_catch_all(settings: SiteSettings) -> str:
    """The site for every domain no service has: 404 and a short text, on HTTP, and on
    HTTPS for a name that shares a certificate with a service but is not one (the
    handshake for a name with no certificate fails before any request)."""
    schemes = ["http://"] if settings.tls == "off" else ["http://", "https://"]
    lines = [
        "# Generated by Pockestrator: the answer for every domain no service has. Do not edit:",
        "# the agent detects changes to this file by its hash and writes it again.",
    ]
    for scheme in schemes:
        lines += _block([scheme], [f'respond "{CATCH_ALL_TEXT}" 404'])
    return "\n".join(lines) + "\n"


def snippet_file_name(project_name: str) -> str:
    """``<project_name>.caddy``, only for a valid project name (which cannot hold a path),
    the catch-all's ``_catch-all.caddy``, or a fleet route's ``_route-<name>.caddy``."""
    if project_name == CATCH_ALL:
        return CATCH_ALL + SNIPPET_SUFFIX
    if project_name.startswith(ROUTE_PREFIX):
        served = grammar.check_project_name(project_name.removeprefix(ROUTE_PREFIX))
        return ROUTE_PREFIX + served + SNIPPET_SUFFIX
    return grammar.check_project_name(project_name) + SNIPPET_SUFFIX


def import_line(sites_dir: Path) -> str:
    """The one line the main Caddyfile needs: an absolute glob over the snippets.

    ``*.caddy`` never matches ``write_atomic``'s temporary files (``.<name>.<random>.tmp``),
    and Caddy skips hidden files in import globs as well.
    """
    return f"import {sites_dir}/*{SNIPPET_SUFFIX}"


def _import_targets(sites_dir: Path) -> set[str]:
    pattern = f"*{SNIPPET_SUFFIX}"
    return {f"{sites_dir}/{pattern}", f"{sites_dir.resolve()}/{pattern}"}


def has_import(caddyfile: str, sites_dir: Path) -> bool:
    """Whether some line of ``caddyfile`` already imports every snippet of ``sites_dir``."""
    targets = _import_targets(sites_dir)
    for line in caddyfile.splitlines():
        tokens = line.split()
        if len(tokens) >= 2 and tokens[0] == "import" and tokens[1].strip("\"'`") in targets:
            return True
    return False


def with_import(caddyfile: bytes, sites_dir: Path) -> bytes | None:
    """``caddyfile`` with the import line appended, or None when it already has one.

    Nothing before the new line changes, byte for byte: the operator's file stays theirs.
    """
    if has_import(caddyfile.decode("utf-8", errors="replace"), sites_dir):
        return None
    newline = b"\r\n" if b"\r\n" in caddyfile else b"\n"
    prefix = caddyfile if not caddyfile or caddyfile.endswith(b"\n") else caddyfile + newline
    return prefix + import_line(sites_dir).encode() + newline
