"""Strict grammars for every value that ends up in a unit file, a Caddy file or a path.

Each check takes untrusted input and returns the normalised value or raises
``GrammarError`` with a stable code. They are deliberately narrower than what systemd,
Caddy or DNS would accept: a value that passes here cannot change the structure of a
rendered file (no newline, brace, quote, ``#``, ``{$``, comma, space or ``%`` reaches one),
cannot name a path outside its folder, and reads the same to a human as to the machine
(ASCII only where a look-alike could deceive).
"""

from __future__ import annotations

import re

import idna

from pockestrator.specs.errors import ErrorCode

RESERVED_NAMES = frozenset(
    {"admin", "api", "www", "mail", "ftp", "root", "system", "caddy", "systemd", "pockestrator"}
)
NAME_MAX = 50
DOMAIN_MAX = 253
VERSION_MAX = 64
ENV_NAME_MAX = 128
ENV_VALUE_MAX = 4096
EMAIL_MAX = 254
MEMORY_MIN_BYTES = 16 * 1024 * 1024

_NAME_CHARS = re.compile(r"[a-z0-9-]+", re.ASCII)
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)
_VERSION = re.compile(
    r"(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})(?:-([0-9A-Za-z]+(?:\.[0-9A-Za-z]+)*))?",
    re.ASCII,
)
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*", re.ASCII)
_EMAIL = re.compile(
    r"[A-Za-z0-9.!#$&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+",
    re.ASCII,
)
_MEMORY = re.compile(r"(?:([0-9]{1,15})([KMGT]?)|([0-9]{1,3})%|infinity)", re.ASCII)
_CPU_QUOTA = re.compile(r"([1-9][0-9]{0,4})%", re.ASCII)
_ORIGIN = re.compile(
    r"\*|https?://(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
    r"(?::[0-9]{1,5})?",
    re.ASCII,
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class GrammarError(ValueError):
    """A value does not fit its grammar; ``code`` is the stable error code."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def check_project_name(value: str) -> str:
    """A project name becomes a unit name, a directory name and a DNS label."""
    if value == "":
        raise GrammarError(ErrorCode.FIELD_REQUIRED, "project name is required")
    if len(value) > NAME_MAX:
        raise GrammarError(
            ErrorCode.NAME_TOO_LONG, f"project name must be at most {NAME_MAX} characters"
        )
    if not _NAME_CHARS.fullmatch(value):
        raise GrammarError(
            ErrorCode.INVALID_CHARACTERS,
            "project name may contain only lowercase letters a-z, digits and '-'",
        )
    if not value[0].isalpha():
        raise GrammarError(
            ErrorCode.NAME_MUST_START_WITH_LETTER, "project name must start with a letter"
        )
    if value.endswith("-"):
        raise GrammarError(ErrorCode.NAME_ENDS_WITH_HYPHEN, "project name must not end with '-'")
    if value[2:4] == "--":
        raise GrammarError(
            ErrorCode.INVALID_CHARACTERS,
            "project name must not have '--' in its third and fourth characters "
            "(reserved for IDNA labels such as xn--)",
        )
    if value in RESERVED_NAMES:
        raise GrammarError(ErrorCode.RESERVED_NAME, f"'{value}' is a reserved name")
    return value


def normalize_domain(value: str) -> str:
    """IDNA (UTS 46) normalised, lowercase, ASCII hostname; at most 253 characters."""
    candidate = value.strip()
    if candidate != value or _CONTROL.search(value) or any(c.isspace() for c in value):
        raise GrammarError(
            ErrorCode.INVALID_DOMAIN, "domain must not contain spaces or control characters"
        )
    if candidate.endswith("."):
        candidate = candidate[:-1]
    if not candidate:
        raise GrammarError(ErrorCode.INVALID_DOMAIN, "domain is empty")
    if len(candidate) > DOMAIN_MAX * 4:
        raise GrammarError(
            ErrorCode.DOMAIN_TOO_LONG, f"domain must be at most {DOMAIN_MAX} characters"
        )
    try:
        ascii_form = idna.encode(candidate, uts46=True, std3_rules=True).decode("ascii")
    except idna.IDNAError as exc:
        raise GrammarError(ErrorCode.INVALID_DOMAIN, f"not a valid hostname: {exc}") from exc
    ascii_form = ascii_form.lower()
    if len(ascii_form) > DOMAIN_MAX:
        raise GrammarError(
            ErrorCode.DOMAIN_TOO_LONG, f"domain must be at most {DOMAIN_MAX} characters"
        )
    for label in ascii_form.split("."):
        if not _LABEL.fullmatch(label):
            raise GrammarError(
                ErrorCode.INVALID_DOMAIN,
                f"label '{label}' must be 1-63 characters of a-z, 0-9 and '-', "
                "not starting or ending with '-'",
            )
    if ascii_form.replace(".", "").isdigit():
        raise GrammarError(ErrorCode.INVALID_DOMAIN, "domain must be a hostname, not an IP address")
    return ascii_form


def check_version(value: str) -> str:
    """``X.Y.Z`` with an optional pre-release (``0.23.0-rc12``); no leading ``v``."""
    if len(value) > VERSION_MAX or not _VERSION.fullmatch(value):
        raise GrammarError(
            ErrorCode.INVALID_VERSION,
            "version must look like 0.29.0 (optionally with a pre-release, e.g. 0.23.0-rc1)",
        )
    return value


def version_key(value: str) -> tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]:
    """Sort key comparing versions as versions: 0.10.0 > 0.9.0, 1.0.0 > 1.0.0-rc1."""
    match = _VERSION.fullmatch(value)
    if match is None:
        raise GrammarError(ErrorCode.INVALID_VERSION, f"not a version: {value!r}")
    major, minor, patch, pre = match.groups()
    pre_parts = tuple(
        (0, int(part)) if part.isdigit() else (1, part) for part in (pre or "").split(".") if part
    )
    return int(major), int(minor), int(patch), 0 if pre else 1, pre_parts


def is_prerelease(value: str) -> bool:
    return "-" in value


def check_env_name(value: str) -> str:
    if len(value) > ENV_NAME_MAX or not _ENV_NAME.fullmatch(value):
        raise GrammarError(
            ErrorCode.INVALID_ENV_NAME,
            f"environment variable name {value[:40]!r} must match [A-Z_][A-Z0-9_]*",
        )
    return value


def check_env_value(value: str) -> str:
    if len(value) > ENV_VALUE_MAX:
        raise GrammarError(
            ErrorCode.INVALID_ENV_VALUE, f"value must be at most {ENV_VALUE_MAX} characters"
        )
    if _CONTROL.search(value):
        raise GrammarError(
            ErrorCode.INVALID_ENV_VALUE, "value must not contain newlines or control characters"
        )
    return value


def memory_limit_bytes(value: str) -> int | None:
    """Bytes of a systemd ``MemoryMax=`` value; None for ``infinity`` or a percentage."""
    match = _MEMORY.fullmatch(value)
    if match is None:
        raise GrammarError(
            ErrorCode.INVALID_MEMORY_LIMIT,
            "memory limit must be bytes with an optional K, M, G or T suffix (e.g. 512M), "
            "a percentage (e.g. 20%) or 'infinity'",
        )
    number, suffix, percent = match.groups()
    if percent is not None:
        if not 1 <= int(percent) <= 100:
            raise GrammarError(ErrorCode.INVALID_MEMORY_LIMIT, "percentage must be 1% to 100%")
        return None
    if number is None:
        return None
    size: int = int(number) * 1024 ** "_KMGT".index(suffix or "_")
    if size < MEMORY_MIN_BYTES:
        raise GrammarError(
            ErrorCode.INVALID_MEMORY_LIMIT,
            "memory limit must be at least 16M: PocketBase cannot start with less",
        )
    return size


def check_cpu_quota(value: str) -> str:
    match = _CPU_QUOTA.fullmatch(value)
    if match is None or int(match.group(1)) > 10000:
        raise GrammarError(
            ErrorCode.INVALID_CPU_QUOTA,
            "CPU quota must be a percentage from 1% to 10000% (100% = one core)",
        )
    return value


def check_email(value: str) -> str:
    if len(value) > EMAIL_MAX or not _EMAIL.fullmatch(value):
        raise GrammarError(ErrorCode.INVALID_EMAIL, "not a valid e-mail address")
    return value


def check_origin(value: str) -> str:
    if not _ORIGIN.fullmatch(value):
        raise GrammarError(
            ErrorCode.INVALID_FLAG_VALUE,
            f"origin {value[:60]!r} must be '*' or http(s)://host[:port]",
        )
    return value


def has_control_characters(value: str) -> bool:
    return _CONTROL.search(value) is not None


def check_free_text(value: str, maximum: int) -> str:
    """Text shown to humans only (descriptions): one line, printable, bounded."""
    if len(value) > maximum:
        raise GrammarError(ErrorCode.VALUE_TOO_LONG, f"must be at most {maximum} characters")
    if _CONTROL.search(value):
        raise GrammarError(ErrorCode.INVALID_CHARACTERS, "must not contain control characters")
    return value
