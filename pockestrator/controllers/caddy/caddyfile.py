"""Reading Caddyfile text the way Caddy's lexer splits it: tokens, braces, site addresses.

Pure and dependency-free (only ``re``), so that anything that must understand a
Caddyfile can use it: the wave checks each snippet's braces on its own
(``brace_problem``) and finds which snippet declares an address Caddy calls ambiguous
(``site_addresses``); the API reads the main Caddyfile's public port (``http_port``)
(``public_ports``). It understands structure (quotes, comments, heredocs,
blocks), not directives: validating a config is ``caddy validate``'s job.

Neighbours: ``render`` writes the text this reads; ``sites`` and ``wave`` apply it.
"""

from __future__ import annotations

import re

from pockestrator.specs.public_url import PublicPorts


def caddyfile_tokens(text: str) -> list[tuple[str, int]]:
    """``(token, line)`` pairs the way Caddy's lexer splits a file, enough to see structure.

    Whitespace separates tokens; ``#`` at the start of a token comments out the rest of the
    line; ``"..."`` (with ``\\"``) and backticks quote; ``<<MARKER`` heredocs run to the line
    that starts with the marker. Quoted tokens come back with their quotes, so a quoted ``{``
    never counts as a brace.
    """
    tokens: list[tuple[str, int]] = []
    index, line, length = 0, 1, len(text)
    while index < length:
        char = text[index]
        if char == "\n":
            line += 1
            index += 1
        elif char.isspace():
            index += 1
        elif char == "#":
            while index < length and text[index] != "\n":
                index += 1
        elif char in '"`':
            start, start_line = index, line
            index += 1
            while index < length and text[index] != char:
                if char == '"' and text[index] == "\\" and index + 1 < length:
                    index += 1
                if text[index] == "\n":
                    line += 1
                index += 1
            index += 1
            tokens.append((text[start:index], start_line))
        elif _heredoc_marker(text, index):
            marker = _heredoc_marker(text, index)
            start, start_line = index, line
            cursor = text.find("\n", index)
            cursor = length if cursor < 0 else cursor
            closed_at = None
            while cursor < length:
                cursor += 1
                line += 1
                end = text.find("\n", cursor)
                end = length if end < 0 else end
                body = text[cursor:end].lstrip()
                # The closing marker may be indented and followed by more words.
                if body == marker or (body.startswith(marker) and body[len(marker)].isspace()):
                    closed_at = end - len(body) + len(marker)
                    break
                cursor = end
            index = closed_at if closed_at is not None else cursor
            tokens.append((text[start:index], start_line))
        else:
            start = index
            while index < length and not text[index].isspace():
                index += 1
            tokens.append((text[start:index], line))
    return tokens


def _heredoc_marker(text: str, index: int) -> str:
    """The marker of a ``<<MARKER`` heredoc starting at ``index``, or ""."""
    if not text.startswith("<<", index):
        return ""
    end = text.find("\n", index)
    marker = text[index + 2 : len(text) if end < 0 else end].strip()
    return marker if re.fullmatch(r"[A-Za-z0-9_-]+", marker) else ""


def brace_problem(text: str) -> str | None:
    """Why the braces of a snippet do not balance, or None when they do.

    An import glob splices every file into one token stream, so an unclosed block in one
    snippet makes Caddy blame the next file; checking each snippet on its own keeps the
    blame where it belongs.
    """
    depth = 0
    for word, line in caddyfile_tokens(text):
        if word == "{":
            depth += 1
        elif word == "}":
            depth -= 1
            if depth < 0:
                return f"line {line}: '}}' closes a block that was never opened"
    if depth:
        return f"{depth} block(s) opened with '{{' are never closed"
    return None


def site_addresses(text: str) -> set[str]:
    """Host names of the top-level site blocks a snippet declares (scheme and port cut)."""
    hosts: set[str] = set()
    depth = 0
    pending: list[tuple[str, int]] = []
    for word, line in caddyfile_tokens(text):
        if word == "{":
            if depth == 0:
                hosts.update(host_of(address) for address, _ in pending)
            depth += 1
            pending = []
        elif word == "}":
            depth = max(depth - 1, 0)
            pending = []
        elif depth == 0:
            if pending and pending[-1][1] != line and not pending[-1][0].endswith(","):
                pending = []
            pending.append((word, line))
    hosts.discard("")
    return hosts


def host_of(address: str) -> str:
    """The host of a site address: no scheme, path or port (``http://a.b:80/x`` -> ``a.b``)."""
    address = address.rstrip(",").strip("\"'`")
    if "://" in address:
        address = address.split("://", 1)[1]
    address = address.split("/", 1)[0]
    return address.rsplit(":", 1)[0] if address.count(":") == 1 else address


# Caddy's admin endpoint when the global options name none (its documented default).
DEFAULT_ADMIN_ADDRESS = "localhost:2019"


def admin_address(text: str) -> str:
    """The ``admin`` address of a main Caddyfile's global options (``off``, ``unix//path``,
    ``host:port``), or Caddy's default when it names none.

    The global options block is the first block of the file when it has no address: ``{``
    as the first token.
    """
    tokens = caddyfile_tokens(text)
    if not tokens or tokens[0][0] != "{":
        return DEFAULT_ADMIN_ADDRESS
    depth = 0
    for index, (word, line) in enumerate(tokens):
        if word == "{":
            depth += 1
        elif word == "}":
            depth -= 1
            if depth == 0:
                break
        elif depth == 1 and word == "admin" and tokens[index - 1][1] != line:
            following = tokens[index + 1] if index + 1 < len(tokens) else None
            if following is None or following[1] != line or following[0] in "{}":
                return DEFAULT_ADMIN_ADDRESS
            return following[0].strip('"`')
    return DEFAULT_ADMIN_ADDRESS


def admin_reachable_by_instances(address: str) -> bool:
    """True for an admin endpoint on TCP: any local process, every instance included, can
    connect and replace Caddy's whole configuration. A unix socket (``unix//path``, with
    Caddy's ``|0600``-style mode so only its owner may connect) or ``off`` is not."""
    return address != "off" and not address.startswith("unix/")


def _global_options(text: str) -> list[tuple[str, str]]:
    """``(option, value)`` of each option of the global options block written with one
    value on its own line (``http_port 8080``); nested blocks are not read.

    The global options block is the first block of the file when it has no address: ``{``
    as the first token.
    """
    tokens = caddyfile_tokens(text)
    if not tokens or tokens[0][0] != "{":
        return []
    options = []
    depth = 0
    for index, (word, line) in enumerate(tokens):
        if word == "{":
            depth += 1
        elif word == "}":
            depth -= 1
            if depth == 0:
                break
        elif depth == 1 and tokens[index - 1][1] != line and index + 1 < len(tokens):
            value, value_line = tokens[index + 1]
            if value_line == line and value not in ("{", "}"):
                options.append((word, value))
    return options


def _port(value: str) -> int | None:
    if value.isascii() and value.isdigit() and len(value) <= 5 and 0 < int(value) < 65536:
        return int(value)
    return None


def public_ports(text: str) -> PublicPorts:
    """The ``http_port`` and ``https_port`` a main Caddyfile's global options set; Caddy's
    defaults (80, 443) for what they leave out or write as something else than a number
    (a placeholder, a second line)."""
    found: dict[str, int] = {}
    for option, value in _global_options(text):
        port = _port(value)
        if option in ("http_port", "https_port") and port is not None:
            found.setdefault(option, port)
    defaults = PublicPorts()
    return PublicPorts(
        http=found.get("http_port", defaults.http), https=found.get("https_port", defaults.https)
    )
