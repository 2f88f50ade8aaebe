"""Which agent to talk to and with which token, in the documented order.

Local socket first: when neither a URL nor a token was given (no ``--url``, ``--token``,
``POCKESTRATOR_URL`` or ``POCKESTRATOR_TOKEN``) and the agent's Unix socket exists
(``POCKESTRATOR_SOCKET``, else ``/run/pockestrator/api.sock``), the CLI talks there with no
token: the agent knows the caller from the kernel (root, or its group's members), as
``docker`` does with docker.sock. So ``sudo pockestrator get`` works right after install.

URL: ``--url``, then ``POCKESTRATOR_URL``, then the local default the agent and
``pockestrator up`` listen on. Token: ``--token``, then ``POCKESTRATOR_TOKEN``, then the
token file that ``pockestrator up`` and ``pockestrator token create --save`` write. Each
answer remembers where it came from, so that an error (an unreachable agent, a 401) can
say which setting to fix.
"""

from __future__ import annotations

import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from pockestrator.config import client_file

DEFAULT_URL = "http://127.0.0.1:8091"
DEFAULT_SOCKET = Path("/run/pockestrator/api.sock")
SOCKET_ENV = "POCKESTRATOR_SOCKET"
# Requests on the socket name this host; the agent's Host guard takes loopback names.
SOCKET_URL = "http://localhost"
URL_ENV = "POCKESTRATOR_URL"
TOKEN_ENV = "POCKESTRATOR_TOKEN"  # noqa: S105 - a variable's name, not a secret
API_PREFIX = "/api/pockestrator"
TOKEN_MAX = 512


class SettingError(ValueError):
    """A URL or token given by the user cannot be used; the message names the setting."""


@dataclass(frozen=True)
class Endpoint:
    """The agent's origin (``http://host:port``, no path) and where that came from."""

    url: str
    source: str
    socket: Path | None = None  # the agent's Unix socket, when the requests go there

    @property
    def api(self) -> str:
        return self.url + API_PREFIX

    @property
    def where(self) -> str:
        """The agent's address as a person reads it: the URL, or the socket's path."""
        return f"the socket {self.socket}" if self.socket is not None else self.url


def local_socket(
    url_flag: str | None, token_flag: str | None, environ: Mapping[str, str]
) -> Endpoint | None:
    """The agent's socket on this host, when nothing names another agent or a token."""
    if url_flag or token_flag:
        return None
    if environ.get(URL_ENV, "").strip() or environ.get(TOKEN_ENV, "").strip():
        return None
    given = environ.get(SOCKET_ENV, "").strip()
    path = Path(given) if given else DEFAULT_SOCKET
    try:
        if not stat.S_ISSOCK(path.stat().st_mode):
            return None
    except OSError:
        return None
    source = f"{SOCKET_ENV}" if given else "the default (no --url or --token, the socket exists)"
    return Endpoint(SOCKET_URL, source, socket=path)


@dataclass(frozen=True)
class Credentials:
    """The bearer token (None when none was found) and a phrase saying where it came from."""

    token: str | None = field(repr=False)
    source: str


def token_file(environ: Mapping[str, str] | None = None) -> Path:
    """Where ``up`` and ``token create --save`` keep the CLI's token (mode 0600)."""
    return client_file("token", environ)


def url_file(environ: Mapping[str, str] | None = None) -> Path:
    """Where a running ``pockestrator up`` says its address (it may not be the default)."""
    return client_file("url", environ)


def normalize_url(text: str, source: str) -> str:
    """``http(s)://host[:port]`` with no trailing slash; a pasted ``.../api/pockestrator``
    (the API root the docs show) is accepted and trimmed to the origin."""
    value = text.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingError(
            f"{source}: {text!r} is not an http:// or https:// URL of an agent (e.g. {DEFAULT_URL})"
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise SettingError(f"{source}: {text!r} must be only scheme, host and port")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise SettingError(f"{source}: {text!r} has an invalid port") from None
    path = parts.path.rstrip("/")
    if path.endswith(API_PREFIX):
        path = path[: -len(API_PREFIX)]
    return f"{parts.scheme}://{parts.netloc}{path}"


def resolve_url(flag: str | None, environ: Mapping[str, str]) -> Endpoint:
    if flag:
        return Endpoint(normalize_url(flag, "--url"), "--url")
    from_env = environ.get(URL_ENV, "").strip()
    if from_env:
        return Endpoint(normalize_url(from_env, URL_ENV), URL_ENV)
    sandbox = url_file(environ)
    try:
        written = sandbox.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        written = ""
    if written:
        return Endpoint(normalize_url(written, str(sandbox)), f"{sandbox} (pockestrator up)")
    return Endpoint(DEFAULT_URL, f"the default (no --url, {URL_ENV} unset)")


def _checked_token(text: str, source: str) -> str:
    token = text.strip()
    if len(token) > TOKEN_MAX or any(not (33 <= ord(c) <= 126) for c in token):
        raise SettingError(f"{source}: not a token (one line of printable ASCII expected)")
    return token


def resolve_token(flag: str | None, environ: Mapping[str, str], file: Path) -> Credentials:
    """The first token found; an unreadable file is not fatal, its reason is kept."""
    if flag:
        return Credentials(_checked_token(flag, "--token"), "--token")
    from_env = environ.get(TOKEN_ENV, "").strip()
    if from_env:
        return Credentials(_checked_token(from_env, TOKEN_ENV), TOKEN_ENV)
    unset = f"--token not given, {TOKEN_ENV} unset"
    try:
        first_line = file.read_text(encoding="utf-8").strip().splitlines()[:1]
    except FileNotFoundError:
        return Credentials(None, f"{unset}, no token file at {file}")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        return Credentials(None, f"{unset}, token file {file} unreadable: {reason}")
    if not first_line or not first_line[0].strip():
        return Credentials(None, f"{unset}, token file {file} is empty")
    source = f"the token file {file}"
    return Credentials(_checked_token(first_line[0], source), source)


def resolve(
    url_flag: str | None,
    token_flag: str | None,
    context_flag: str | None,
    environ: Mapping[str, str],
) -> tuple[Endpoint, Credentials]:
    """The agent and token of a command, contexts included (``client.contexts``).

    URL: ``--url``, then ``--context``'s, then ``POCKESTRATOR_URL``, then the current
    context's, then the sandbox's file and the default. Token: ``--token``, then the token
    file of the context whose URL is used (explicit before the environment, current after
    it), then ``POCKESTRATOR_TOKEN`` and the token file. A context's token is only ever
    sent to that context's URL: with ``--url`` or ``POCKESTRATOR_URL`` in force, it is not
    used.
    """
    from pockestrator.client.contexts import chosen, load_contexts

    contexts = load_contexts(environ)
    context, explicit = chosen(context_flag, environ, contexts)
    env_url = environ.get(URL_ENV, "").strip()
    if context is None or url_flag or (env_url and not explicit):
        return resolve_url(url_flag, environ), resolve_token(
            token_flag, environ, token_file(environ)
        )
    endpoint = Endpoint(context.url, f"the context {context.name!r} ({contexts.path})")
    if token_flag or (not explicit and environ.get(TOKEN_ENV, "").strip()):
        return endpoint, resolve_token(token_flag, environ, token_file(environ))
    if context.token_file is None:  # the CLI's own token file, never the environment's
        return endpoint, resolve_token(None, {}, token_file(environ))
    found = resolve_token(None, {}, context.token_file)
    if found.token is None:
        return endpoint, Credentials(None, f"{found.source} (context {context.name!r})")
    source = f"the token file {context.token_file} of the context {context.name!r}"
    return endpoint, Credentials(found.token, source)
