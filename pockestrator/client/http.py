"""A small synchronous client of the agent's REST API, on the standard library's urllib.

Why urllib rather than aiohttp (which the agent uses): a CLI run is one short, mostly
sequential conversation, and urllib costs about 30 ms to import where aiohttp costs about
300 ms, on every ``pockestrator get``. Blocking reads also make Ctrl-C plain: the
``KeyboardInterrupt`` arrives in the read of a log stream and the command ends there. The
one place that wants concurrency (``apply --wait`` sending several writes that each wait
for their reconcile) uses a few threads (``client.apply``).

Every request has a timeout (urllib's is per socket operation: connect and each read).
Proxies from the environment are ignored, as aiohttp does by default: the agent is on
this host or reached directly. Redirects are refused, so the token is only ever sent to
the URL the user named.

Errors become exceptions whose text is what the CLI prints: ``AgentUnreachable`` (says the
URL, where it came from and how to start an agent), ``Unauthorized`` (says where the token
came from), ``ApiError`` (status, code, and every field problem on its own line).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, urlencode

from pockestrator.client.connection import Credentials, Endpoint

DEFAULT_TIMEOUT = 30.0
# For requests the agent answers only after a reconcile (bounded to a minute there).
WAITING_TIMEOUT = 90.0
# A log stream sends a keep-alive comment every 15 s; three missed ones mean it is gone.
STREAM_READ_TIMEOUT = 45.0
USER_AGENT = "pockestrator-cli"
API_VERSION_HEADER = "Pockestrator-Api-Version"


class ClientError(Exception):
    """A failure the CLI reports as one message (exit code 1)."""


class NotFoundHere(ClientError):
    """Something the CLI itself looked for and did not find (a context by name)."""


class AgentUnreachable(ClientError):
    pass


class BadAnswer(ClientError):
    """Something answered, but not as the agent's API does."""


@dataclass(frozen=True)
class Issue:
    field: str
    message: str
    code: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message} [{self.code}]"


@dataclass(eq=False)
class ApiError(ClientError):
    """The API answered with an error status and its error body."""

    status: int
    code: str
    message: str
    issues: list[Issue] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.describe())

    def describe(self) -> str:
        head = f"{self.message} ({self.status} {self.code})"
        # One problem that repeats the message, or says less than it (a 404's "id: not
        # found"), adds nothing; field problems of a rejected request are each worth a line.
        if len(self.issues) == 1 and (self.issues[0].message == self.message or self.status != 400):
            return head
        return "\n".join([head, *(f"  {issue}" for issue in self.issues)])


@dataclass(eq=False)
class Unauthorized(ApiError):
    credentials: Credentials | None = None

    def describe(self) -> str:
        creds = self.credentials
        if creds is None or creds.token is None:
            where = creds.source if creds else "no token was given"
            return (
                f"the agent wants an API token, and none was found ({where}). Pass --token, "
                "set POCKESTRATOR_TOKEN, or use the token file that `pockestrator up` and "
                "`pockestrator token create --save` write"
            )
        return (
            f"the agent refused the token from {creds.source}: {self.message} "
            f"({self.status} {self.code}); it may be revoked or belong to another agent"
        )


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any


@dataclass
class SseEvent:
    event: str
    data: str
    id: str | None


class SseParser:
    """Server-sent events, line by line (the WHATWG event-stream format)."""

    def __init__(self) -> None:
        self.last_id: str | None = None
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> SseEvent | None:
        """One line without its end; returns an event when a blank line completes one."""
        if line == "":
            if not self._data:
                self._event = ""
                return None
            event = SseEvent(self._event or "message", "\n".join(self._data), self.last_id)
            self._event, self._data = "", []
            return event
        if line.startswith(":"):
            return None  # a comment: the agent's keep-alive
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self.last_id = value
        return None  # "retry" and unknown fields are ignored


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None  # the 3xx then surfaces as an HTTPError


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over the agent's Unix socket; the host names only the Host header."""

    def __init__(self, host: str, path: str, timeout: float) -> None:
        super().__init__(host, timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class _UnixHandler(urllib.request.HTTPHandler):
    """Every ``http://`` request of this opener goes to one Unix socket."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._path = str(path)

    def _connection(
        self,
        host: str,
        /,
        *,
        port: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        source_address: tuple[str, int] | None = None,
        blocksize: int = 8192,
    ) -> http.client.HTTPConnection:
        return _UnixConnection(host, self._path, timeout)

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self._connection, req)


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None


def _error_body(exc: urllib.error.HTTPError) -> bytes:
    with exc:
        try:
            return exc.read()
        except OSError:
            return b""


def _issues(body: Mapping[str, Any]) -> list[Issue]:
    found = []
    for item in body.get("errors") or []:
        if isinstance(item, Mapping):
            found.append(
                Issue(
                    str(item.get("field", "")),
                    str(item.get("message", "")),
                    str(item.get("code", "")),
                )
            )
    return found


class ApiClient:
    """Requests to one agent with one token; paths are relative to ``/api/pockestrator``."""

    def __init__(
        self, endpoint: Endpoint, credentials: Credentials, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.endpoint = endpoint
        self.credentials = credentials
        self.timeout = timeout
        handlers: list[urllib.request.BaseHandler] = [
            urllib.request.ProxyHandler({}),
            _NoRedirects(),
        ]
        if endpoint.socket is not None:
            handlers.append(_UnixHandler(endpoint.socket))
        self._opener = urllib.request.build_opener(*handlers)
        # Told once of the agent's API version (``Pockestrator-Api-Version``), e.g. to warn
        # on a major version this client does not speak (``client.version``).
        self.on_api_version: Callable[[str], None] | None = None
        self.agent_api_version: str | None = None

    def _note_version(self, headers: Message | None) -> None:
        value = headers.get(API_VERSION_HEADER) if headers is not None else None
        if value is None or self.agent_api_version is not None:
            return
        self.agent_api_version = str(value)[:40]
        if self.on_api_version is not None:
            self.on_api_version(self.agent_api_version)

    def url(self, path: str, query: Mapping[str, str | int | bool] | None = None) -> str:
        url = self.endpoint.api + path
        if query:
            encoded = {
                key: ("true" if value else "false") if isinstance(value, bool) else str(value)
                for key, value in query.items()
            }
            url += "?" + urlencode(encoded)
        return url

    def _request(
        self,
        method: str,
        url: str,
        body: Any,
        headers: Mapping[str, str] | None = None,
        upload: tuple[bytes, str] | None = None,
    ) -> urllib.request.Request:
        sent = {"User-Agent": USER_AGENT, "Accept": "application/json", **(headers or {})}
        if self.credentials.token is not None:
            sent["Authorization"] = f"Bearer {self.credentials.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            sent["Content-Type"] = "application/json"
        elif upload is not None:
            data, sent["Content-Type"] = upload
        # The scheme is http or https: normalize_url refuses any other.
        return urllib.request.Request(url, data=data, headers=sent, method=method)  # noqa: S310

    def _unreachable(self, reason: object) -> AgentUnreachable:
        return AgentUnreachable(
            f"cannot reach the agent at {self.endpoint.where} ({reason}); the "
            f"{'socket' if self.endpoint.socket else 'URL'} came from "
            f"{self.endpoint.source}. Start one with `pockestrator up` (a sandbox on this "
            "machine) or `pockestrator agent --config FILE`, or point --url or "
            "POCKESTRATOR_URL at a running agent"
        )

    @contextlib.contextmanager
    def _reaching(self, timeout: float | None) -> Iterator[None]:
        """A request that cannot reach the agent (no route, refused, silent for ``timeout``
        seconds when given) raises ``AgentUnreachable`` saying where the address came
        from; an HTTP error status is the caller's to handle inside."""
        try:
            yield
        except urllib.error.HTTPError:
            raise
        except urllib.error.URLError as exc:
            raise self._unreachable(exc.reason) from None
        except TimeoutError as exc:
            if timeout is None:
                raise self._unreachable(exc) from None
            raise self._unreachable(f"no answer within {timeout:g} s") from None
        except OSError as exc:
            raise self._unreachable(exc) from None

    def _error(self, status: int, raw: bytes) -> ClientError:
        body = _decode(raw)
        if not isinstance(body, Mapping) or "code" not in body:
            return BadAnswer(
                f"{self.endpoint.url} answered {status} without the API's error body; "
                f"is it a Pockestrator agent? (the URL came from {self.endpoint.source})"
            )
        code = str(body.get("code"))
        message = str(body.get("message") or body.get("error") or "")
        issues = _issues(body)
        if status == 401:
            return Unauthorized(status, code, message, issues, self.credentials)
        return ApiError(status, code, message, issues)

    def call(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | int | bool] | None = None,
        body: Any = None,
        timeout: float | None = None,
        accept: Collection[int] = (),
        upload: tuple[bytes, str] | None = None,
    ) -> Reply:
        """One request; a 2xx JSON answer comes back, and so does an error status listed in
        ``accept`` (e.g. 503 of ``/system/health``, whose body is a report); the rest raise.
        ``upload`` is a body that is not JSON: its bytes and media type (an app's tar.gz)."""
        request = self._request(method, self.url(path, query), body, upload=upload)
        with self._reaching(timeout or self.timeout):
            try:
                with self._opener.open(request, timeout=timeout or self.timeout) as response:
                    status, raw = response.status, response.read()
                    self._note_version(response.headers)
            except urllib.error.HTTPError as exc:
                self._note_version(exc.headers)
                raw = _error_body(exc)
                if exc.code not in accept:
                    raise self._error(exc.code, raw) from None
                status = exc.code
        decoded = _decode(raw)
        if decoded is None:
            raise BadAnswer(
                f"{self.endpoint.url} answered {status} with something that is not JSON; "
                f"is it a Pockestrator agent? (the URL came from {self.endpoint.source})"
            )
        return Reply(status, decoded)

    def upload(
        self,
        path: str,
        file: Path,
        *,
        query: Mapping[str, str | int | bool] | None = None,
        content_type: str = "application/zip",
        timeout: float | None = None,
    ) -> Reply:
        """A file as the body of a POST (streamed from disk); answers as ``call`` does."""
        request = self._request("POST", self.url(path, query), None, {"Content-Type": content_type})
        size = file.stat().st_size
        request.add_header("Content-Length", str(size))
        with self._reaching(timeout or self.timeout):
            try:
                with file.open("rb") as body:
                    request.data = body
                    with self._opener.open(request, timeout=timeout or self.timeout) as response:
                        status, raw = response.status, response.read()
            except urllib.error.HTTPError as exc:
                raise self._error(exc.code, _error_body(exc)) from None
        decoded = _decode(raw)
        if decoded is None:
            raise BadAnswer(f"{self.endpoint.url} answered {status} with something not JSON")
        return Reply(status, decoded)

    def events(
        self,
        path: str,
        query: Mapping[str, str | int | bool] | None = None,
        *,
        last_event_id: str | None = None,
    ) -> Generator[SseEvent, None, None]:
        """Server-sent events of ``path`` until the agent ends the stream; a stream that
        resumes sends ``last_event_id`` (Last-Event-ID).

        The caller ends it early by closing the generator (or by Ctrl-C in the read).
        """
        extra = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            extra["Last-Event-ID"] = last_event_id
        request = self._request("GET", self.url(path, query), None, extra)
        with self._reaching(None):
            try:
                response = self._opener.open(request, timeout=STREAM_READ_TIMEOUT)
            except urllib.error.HTTPError as exc:
                raise self._error(exc.code, _error_body(exc)) from None
        parser = SseParser()
        with response:
            while True:
                try:
                    raw_line = response.readline()
                except TimeoutError:
                    raise ClientError(
                        f"the stream from {self.endpoint.where} went silent for "
                        f"{STREAM_READ_TIMEOUT:g} s (no keep-alive); giving up"
                    ) from None
                except OSError as exc:
                    raise ClientError(f"the stream broke: {exc}") from None
                if not raw_line:
                    return
                event = parser.feed(raw_line.decode("utf-8", "replace").rstrip("\r\n"))
                if event is not None:
                    yield event


def service_path(name: str, *rest: str) -> str:
    """``/services/<name>[/rest...]`` with the name escaped (it is user input)."""
    return "/".join(["/services", quote(name, safe=""), *rest])


def decoded_events(stream: Iterable[SseEvent], kind: str) -> Iterator[tuple[SseEvent, Any]]:
    """The events of ``stream`` named ``kind``, each with its JSON data; any other event,
    and one whose data is not JSON, is passed over (a keep-alive, a newer agent's kind)."""
    for event in stream:
        if event.event != kind:
            continue
        try:
            data = json.loads(event.data)
        except ValueError:
            continue
        yield event, data
