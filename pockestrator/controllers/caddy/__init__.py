"""Caddy sites: one rendered snippet per service, validated and reloaded in waves.

- ``render``: ``render_site(spec, settings)`` and the catch-all, pure; the import line the
  main Caddyfile needs.
- ``caddyfile``: Caddyfile text as Caddy's lexer splits it (tokens, braces, addresses).
- ``errors``: ``CaddyError`` and reading Caddy's error text (which file, which address).
- ``wave``: one wave of changes, one ``caddy validate`` and one reload, offenders put back.
- ``sites``: ``CaddySites``, the snippet folder: ``observe`` and ``apply(wave)``.

The names below are re-exported so that callers can import from the package.
"""

from pockestrator.controllers.caddy.caddyfile import (
    brace_problem,
    caddyfile_tokens,
    host_of,
    public_ports,
    site_addresses,
)
from pockestrator.controllers.caddy.errors import CaddyError, caddy_error_text
from pockestrator.controllers.caddy.render import (
    CATCH_ALL,
    MAX_REQUEST_BODY,
    PROXY_READ_TIMEOUT,
    SNIPPET_SUFFIX,
    SiteSettings,
    access_log_path,
    has_import,
    import_line,
    render_catch_all,
    render_site,
    site_address,
    snippet_file_name,
    with_import,
)
from pockestrator.controllers.caddy.sites import CaddyObservation, CaddySites
from pockestrator.controllers.caddy.wave import SiteOutcome, WaveResult

__all__ = [
    "CATCH_ALL",
    "MAX_REQUEST_BODY",
    "PROXY_READ_TIMEOUT",
    "SNIPPET_SUFFIX",
    "CaddyError",
    "CaddyObservation",
    "CaddySites",
    "SiteOutcome",
    "SiteSettings",
    "WaveResult",
    "access_log_path",
    "brace_problem",
    "caddy_error_text",
    "caddyfile_tokens",
    "has_import",
    "host_of",
    "import_line",
    "public_ports",
    "render_catch_all",
    "render_site",
    "site_address",
    "site_addresses",
    "snippet_file_name",
    "with_import",
]
