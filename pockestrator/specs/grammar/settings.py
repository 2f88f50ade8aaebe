"""PocketBase's own settings (``specs.pocketbase_settings``): these values go to
PocketBase through its API, not into a unit or Caddy file, but they reach its e-mails (the
app URL and name), its request handling (trusted headers, rate limit labels) and its
connections (SMTP, S3), so they are held to grammars as narrow.
"""

from __future__ import annotations

from pockestrator.specs.errors import ErrorCode
from pockestrator.specs.grammar.pattern import GrammarError, Pattern, check_pattern, decimal_range
from pockestrator.specs.grammar.text import (
    has_bidi_controls,
    has_control_characters,
    one_line_refusal,
)

PATH_MAX = 4096
# Kernel and device file systems: never a secret file, and reading some of them as root
# (the agent reads the file) has effects or discloses host state.
PSEUDO_FILE_SYSTEMS = ("proc", "sys", "dev")
URL_HOST_TEXT = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
# A host of a setting (SMTP, S3, app URL): a lowercase host name or IPv4 address.
SETTING_HOST = Pattern(URL_HOST_TEXT)
HOSTNAME_MAX = 253
# A base URL: scheme, host, optional port and path; no query, fragment, credentials,
# quote, space or brace (PocketBase writes the app URL into the HTML of its e-mails).
HTTP_URL = Pattern(rf"(https?)://({URL_HOST_TEXT})(?::([0-9]{{1,5}}))?(/[A-Za-z0-9._~%+/-]*)?")
# The same with the port's range, as JSON Schema can state it (``check_http_url`` checks it).
HTTP_URL_STATED = Pattern(
    rf"https?://{URL_HOST_TEXT}(?::(?:{decimal_range(1, 65535)}))?(?:/[A-Za-z0-9._~%+/-]*)?"
)
URL_MAX = 2048
# An HTTP header name as PocketBase looks it up (letters, digits, '-').
HEADER_NAME = Pattern(r"[A-Za-z][A-Za-z0-9-]{0,63}")
# PocketBase's rate limit labels (its own rule, in ASCII): a tag, "collection:action",
# "*:action", a path prefix, or a method and a path.
RATE_LIMIT_LABEL = Pattern(
    r"[A-Za-z0-9_]+ /[A-Za-z0-9_/-]*|/[A-Za-z0-9_/-]*|[A-Za-z0-9_]+:[A-Za-z0-9_]+"
    r"|\*:[A-Za-z0-9_]+|[A-Za-z0-9_]+"
)
RATE_LIMIT_LABEL_MAX = 200
S3_BUCKET = Pattern(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
S3_REGION = Pattern(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
S3_ACCESS_KEY = Pattern(r"[A-Za-z0-9+/=._~-]{1,256}")
# A systemd credential of the agent's unit (LoadCredential=NAME:...): a plain file name.
CREDENTIAL_NAME = Pattern(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
SECRET_MAX = 4096


def secret_file_problem(path: str) -> str | None:
    """Why ``path`` cannot name a root-only secret file (a password file), or None.

    Only the shape is checked here; whether the file is a regular file that only root can
    read is a question for the moment it is read.
    """
    if not path.startswith("/"):
        return "must be an absolute path (starting with '/')"
    if len(path) > PATH_MAX:
        return f"must be at most {PATH_MAX} characters"
    if has_control_characters(path) or has_bidi_controls(path):
        return "must not contain control, line-separator or bidirectional formatting characters"
    parts = path.split("/")
    if any(part in ("..", ".") for part in parts):
        return "must not have '.' or '..' components"
    if parts[-1] == "":
        return "must name a file: it must not end with '/'"
    top = next(part for part in parts if part)
    if top in PSEUDO_FILE_SYSTEMS:
        return f"must not be under /{top}: kernel and device files are not secret files"
    return None


def check_http_url(value: str, code: ErrorCode, what: str) -> str:
    """``http(s)://host[:port][/path]``, lowercase host, port 1-65535 without leading zero."""
    match = HTTP_URL.fullmatch(value) if len(value) <= URL_MAX else None
    if match is None:
        raise GrammarError(
            code,
            f"{what} must be http(s)://host[:port][/path] with a lowercase host name or IPv4 "
            "address, and no query, fragment, space or quote",
        )
    host, port = match.group(2), match.group(3)
    if len(host) > HOSTNAME_MAX:
        raise GrammarError(code, f"{what}'s host must be at most {HOSTNAME_MAX} characters")
    if port is not None and (port.startswith("0") or int(port) > 65535):
        raise GrammarError(code, f"{what}'s port must be 1 to 65535, without leading zeros")
    return value


def check_hostname(value: str, code: ErrorCode, what: str) -> str:
    """A lowercase host name or IPv4 address (``smtp.example.com``, ``192.0.2.25``)."""
    why = f"{what} must be a lowercase host name or IPv4 address, e.g. smtp.example.com"
    return check_pattern(value, SETTING_HOST, code, why, longest=HOSTNAME_MAX)


def check_secret_text(value: str) -> str:
    """A secret given as a value: one line, printable, at most SECRET_MAX characters."""
    if not value:
        raise GrammarError(ErrorCode.INVALID_SECRET, "the secret is empty")
    refusal = one_line_refusal(value, SECRET_MAX)
    if refusal == "too long":
        raise GrammarError(
            ErrorCode.INVALID_SECRET, f"the secret must be at most {SECRET_MAX} characters"
        )
    if refusal is not None:
        raise GrammarError(
            ErrorCode.INVALID_SECRET,
            "the secret must be one line without control or bidirectional characters",
        )
    return value
