"""Where a fleet node's Caddy sends a service's requests, in a file Caddy reads per request,
so that a move's switch changes it without a config load.

Any Caddy config load replaces its HTTP servers, and the old server closes, unanswered,
a connection it accepted just before it stopped (seen with Caddy 2.11: the request read,
the connection closed, nothing written). A move whose source loaded a forward at its
cutover therefore dropped the requests that arrived at that moment. On a node of a fleet
(a shared PostgreSQL store) a service's own site names its upstream as
``tcp/{file.<caddy_sites_dir>/upstreams/<name>.upstream}``; Caddy reads that file each
time it dials, retries included, so a request held while the instance is down
(``proxy.hold_requests``) follows the file too. The file holds ``127.0.0.1:<port>``
while the service runs here, and the target's Caddy (``HOST:PORT``) from a move's cutover
on (``agent.mover_sites``). It is replaced atomically (a reader sees the old address or
the new one, never half), written before the site that names it, and validated like
everything that reaches Caddy.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from pockestrator.config import RENDERABLE_PATH, AgentConfig
from pockestrator.files import write_atomic
from pockestrator.specs import grammar
from pockestrator.specs.errors import ErrorCode
from pockestrator.specs.grammar import GrammarError

UPSTREAMS_FOLDER = "upstreams"
UPSTREAM_SUFFIX = ".upstream"
# An address is ``HOST:PORT``; a file longer than this is not one of ours.
UPSTREAM_READ_MAX = 300


def upstream_dir(config: AgentConfig) -> Path | None:
    """The folder of a fleet node's upstream files; None on a host of its own (SQLite),
    whose sites name their instance's port as always."""
    if config.store.backend != "postgresql":
        return None
    return config.caddy_sites_dir / UPSTREAMS_FOLDER


def upstream_file(directory: Path, project_name: str) -> Path:
    return directory / (grammar.check_project_name(project_name) + UPSTREAM_SUFFIX)


def upstream_placeholder(directory: Path, project_name: str) -> str:
    """The upstream a site names: a TCP dial to whatever the service's file says."""
    path = str(upstream_file(directory, project_name))
    if not RENDERABLE_PATH.fullmatch(path) or "/../" in path or "/./" in path:
        raise GrammarError(ErrorCode.INVALID_PATH, "the upstream file cannot be named here")
    return f"tcp/{{file.{path}}}"


def local_upstream(port: int) -> str:
    """The address of this node's instance on ``port``."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1024 <= port <= 65535:
        raise GrammarError(ErrorCode.PORT_OUT_OF_RANGE, "port must be 1024-65535")
    return f"127.0.0.1:{port}"


def read_upstream(directory: Path, project_name: str) -> str | None:
    """What the service's file says now (None: no file)."""
    try:
        with upstream_file(directory, project_name).open("rb") as file:
            return file.read(UPSTREAM_READ_MAX).decode("ascii", errors="replace").strip()
    except FileNotFoundError:
        return None


def write_upstream(directory: Path, project_name: str, address: str) -> bool:
    """Point the service's site at ``address`` (``HOST:PORT``, checked by the caller's
    grammar: ``local_upstream`` or ``routes.checked_upstream``); whether it changed."""
    if not address.isascii() or any(c.isspace() or c in "{}" for c in address):
        raise GrammarError(ErrorCode.INVALID_VALUE, "an upstream is HOST:PORT")
    if read_upstream(directory, project_name) == address:
        return False
    write_atomic(upstream_file(directory, project_name), address + "\n")
    return True


def remove_upstream(directory: Path, project_name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        upstream_file(directory, project_name).unlink()


_PLACEHOLDER = re.compile(r"tcp/\{file\.(/[A-Za-z0-9._/+@-]*)\}", re.ASCII)


def resolve_placeholders(counts: Mapping[str, int]) -> dict[str, int]:
    """Caddy's requests in flight per upstream with a file-read upstream counted under
    the address its file names now (Caddy keys it by the placeholder), so that a count
    of ``127.0.0.1:<port>`` means what it means on a host of its own."""
    resolved: dict[str, int] = {}
    for address, number in counts.items():
        match = _PLACEHOLDER.fullmatch(address)
        if match is not None:
            path = Path(match.group(1))
            try:
                named = read_upstream(path.parent, path.name.removesuffix(UPSTREAM_SUFFIX))
            except (GrammarError, OSError):
                named = None  # not one of ours (an operator's own site): its key as it is
            address = named or address
        resolved[address] = resolved.get(address, 0) + number
    return resolved


def resolving(
    in_flight: Callable[[], Awaitable[dict[str, int] | None]],
) -> Callable[[], Awaitable[dict[str, int] | None]]:
    """``in_flight`` (``CaddySites.requests_in_flight``) with ``resolve_placeholders``."""

    async def counts() -> dict[str, int] | None:
        found = await in_flight()
        return None if found is None else resolve_placeholders(found)

    return counts
