"""Strict grammars for every value that ends up in a unit file, a Caddy file or a path.

Each check takes untrusted input and returns the normalised value or raises
``GrammarError`` with a stable code. They are deliberately narrower than what systemd,
Caddy or DNS would accept: a value that passes here cannot change the structure of a
rendered file (no newline, brace, quote, ``#``, ``{$``, comma, space or ``%`` reaches one),
cannot name a path outside its folder, and reads the same to a human as to the machine
(ASCII only where a look-alike could deceive; no Unicode line break or bidirectional
override in text that people read).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

import idna
from croniter import croniter

from pockestrator.specs.errors import ErrorCode

# How Caddy serves a site: ACME certificates, its own local CA, or plain HTTP.
TlsMode = Literal["auto", "internal", "off"]
TLS_MODES: tuple[TlsMode, ...] = ("auto", "internal", "off")

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
# systemd parses MemoryMax= into a uint64 and ignores the whole directive (no limit at all)
# when the value does not fit; 2^63 - 1 keeps well inside that and inside the kernel's
# page counters, and is far beyond any real host.
MEMORY_MAX_BYTES = 2**63 - 1
# The dynamic loader's variables (LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT, LD_DEBUG_OUTPUT,
# ...) load code into the instance or write files as it; PocketBase needs none of them.
RESERVED_ENV_PREFIX = "LD_"
# Caddy's request body limit: below 1 KB not even a login form fits; above 1 GiB one HTTP
# request is the wrong tool (PocketBase spools a multipart upload to its temporary folder
# before its own per-field limit applies; large files go to S3 storage).
BODY_SIZE_MIN_BYTES = 1000
BODY_SIZE_MAX_BYTES = 1024**3
_BODY_SIZE_UNITS = {
    "": 1,
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
}


class Pattern:
    """One regular expression, written once, for the grammar's check and for JSON Schema.

    ``regex`` is the compiled check; ``json`` is the same text anchored as JSON Schema's
    ``pattern`` wants it (``^(?:...)$``: a JSON Schema pattern matches anywhere, a check
    here matches the whole value). The API's strict bodies and the OpenAPI document state
    ``json`` (through the spec's types), so what clients are told is what is checked.
    Keep the text within what ECMA-262, Python's ``re`` and pydantic's Rust regex read
    alike: classes, groups, counted repeats and four-digit Unicode escapes; no
    look-arounds, no back-references.
    """

    __slots__ = ("json", "regex", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.regex = re.compile(text, re.ASCII)
        self.json = f"^(?:{text})$"

    def fullmatch(self, value: str) -> re.Match[str] | None:
        return self.regex.fullmatch(value)

    def __repr__(self) -> str:
        return f"Pattern({self.text!r})"


# Every Unicode control character (category Cc: C0, DEL and C1, which includes U+0085 NEXT
# LINE and U+009B, the 8-bit escape sequence introducer) and the line and paragraph
# separators (Zl, Zp). Unicode's stability policy fixes the Cc set, so a literal class is
# exact. Any of these can end a line in a unit file, a log line, JSON or a terminal.
_CONTROL_CLASS = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
# Bidirectional embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069): they
# reorder what a human sees without changing the text ("Trojan Source"). The marks
# U+200E/U+200F only set the direction of neutral characters and stay allowed.
_BIDI_CLASS = r"\u202a-\u202e\u2066-\u2069"
_CONTROL = re.compile(f"[{_CONTROL_CLASS}]")
_BIDI_CONTROL = re.compile(f"[{_BIDI_CLASS}]")
_BIDI_MESSAGE = (
    "must not contain bidirectional override or isolate characters "
    "(U+202A-U+202E, U+2066-U+2069): they make text display differently from what it is"
)

# The patterns JSON Schema states (see ``Pattern``), one for each check below that has one.
# What a project name's rules 3 to 5 say (characters, first letter, last character); the
# other rules (no "--" in third and fourth place, reserved names) need look-arounds, so the
# schema states them with ``not`` (``PROJECT_NAME_NOT``, ``RESERVED_NAMES``).
PROJECT_NAME = Pattern(r"[a-z](?:[a-z0-9-]*[a-z0-9])?")
# The rest of those rules, for JSON Schema's ``not``: "--" in third and fourth place.
PROJECT_NAME_NOT = Pattern(r".{2}--.*")
VERSION = Pattern(
    r"(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})"
    r"(?:-([0-9A-Za-z]+(?:\.[0-9A-Za-z]+)*))?"
)
ENV_NAME = Pattern(r"[A-Z_][A-Z0-9_]*")
# An address PocketBase takes too (its validator refuses a top-level label that does not
# start and end with a letter, 0@0.0, and dots at either end of the local part or two in
# a row): a spec it refuses would never start. The local part's 64 characters are
# ``EMAIL_LOCAL_TOO_LONG``, stated as JSON Schema's ``not``.
_EMAIL_ATOM = r"[A-Za-z0-9!#$&'*+/=?^_`{|}~-]+"
EMAIL = Pattern(
    rf"{_EMAIL_ATOM}(?:\.{_EMAIL_ATOM})*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{{0,61}}[A-Za-z0-9])?\.)+"
    r"[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z])?"
)
EMAIL_LOCAL_MAX = 64
EMAIL_LOCAL_TOO_LONG = Pattern(f"[^@]{{{EMAIL_LOCAL_MAX + 1},}}@.*")
# An IPv4 or IPv6 address or network, or "any"; ``check_egress`` holds the exact rules.
EGRESS = Pattern(r"any|[0-9A-Fa-f:.]{2,39}(?:/[0-9]{1,3})?")
# ``check_egress``'s exact rules where a pattern can hold them: an IPv4 address as Python
# writes it (no leading zeros), and every IPv4 network with no host bits set, for each
# prefix length its own octets (a /20's third octet is a multiple of 16). IPv6 is stated
# as JSON Schema's "ipv6" format, which is looser than the canonical form checked.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
IPV4_ADDRESS = Pattern(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


def _ipv4_networks() -> str:
    alternatives = []
    for prefix in range(1, 33):
        whole, rest = divmod(prefix, 8)
        octets = [_OCTET] * whole
        if rest:
            octets.append("(?:" + "|".join(map(str, range(0, 256, 2 ** (8 - rest)))) + ")")
        octets += ["0"] * (4 - len(octets))
        alternatives.append(r"\.".join(octets) + f"/{prefix}")
    return "|".join(alternatives)


IPV4_NETWORK = Pattern(_ipv4_networks())
MEMORY_LIMIT = Pattern(r"([0-9]{1,15})([KMGT]?)|([0-9]{1,3})%|infinity")
CPU_QUOTA = Pattern(r"([1-9][0-9]{0,4})%")
# A request body limit as Caddy reads it (go-humanize): bytes, or a number with an SI
# (KB = 1000) or binary (KiB = 1024) unit.
BODY_SIZE = Pattern(r"([1-9][0-9]{0,9})(B|KB|MB|GB|KiB|MiB|GiB)?")
_ORIGIN_HOST = (
    r"\*|https?://(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
)
ORIGIN = Pattern(_ORIGIN_HOST + r"(?::([0-9]{1,5}))?")
# A hostname as ``normalize_domain`` takes it in ASCII: two or more labels of letters (either
# case), digits and '-', 1 to 63 characters, neither starting nor ending with '-' and without
# '--' in third and fourth place (IDNA reserves that for A-labels such as xn--), then an
# optional final dot. What it cannot say (not all digits, at most 253 characters without
# the final dot) is in ``HOSTNAME_NOT``; Unicode names (IDNA) are taken too, beyond it.
_LD = "[A-Za-z0-9]"
_LDH = "[A-Za-z0-9-]"
_HOSTNAME_LABEL = (
    f"{_LD}(?:{_LD}|{_LDH}{_LD}|{_LDH}{{2}}{_LD}|{_LDH}(?:{_LD}{_LDH}|-{_LD}){_LDH}{{0,58}}{_LD})?"
)
HOSTNAME = Pattern(rf"(?:{_HOSTNAME_LABEL}\.)+{_HOSTNAME_LABEL}\.?")
# A hostname as ``normalize_domain`` returns it: lowercase ASCII labels, no final dot.
STORED_HOSTNAME = Pattern(
    r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
)
# What a HOSTNAME must not also be: digits and dots only (an IP address, or like one), or
# longer than DOMAIN_MAX without its final dot.
HOSTNAME_NOT = (
    Pattern(r"[0-9.]*"),
    Pattern(f".{{{DOMAIN_MAX}}}[^.].*"),
)


def _digit_class(low: int, high: int) -> str:
    return str(low) if low == high else f"[{low}-{high}]"


def _any_digits(count: int) -> str:
    return "" if count == 0 else "[0-9]" if count == 1 else f"[0-9]{{{count}}}"


def _same_length_range(low: str, high: str) -> str:
    """A regex for the numbers from ``low`` to ``high``, both written with as many digits."""
    if low == high:
        return low
    rest = len(low) - 1
    if low[0] == high[0]:
        return low[0] + _same_length_range(low[1:], high[1:])
    first, last = int(low[0]), int(high[0])
    parts = []
    if low[1:] != "0" * rest:  # the first digit's numbers that are not all of them
        parts.append(low[0] + _same_length_range(low[1:], "9" * rest))
        first += 1
    whole_last = high[1:] == "9" * rest
    top = last if whole_last else last - 1
    if first <= top:
        parts.append(_digit_class(first, top) + _any_digits(rest))
    if not whole_last:
        parts.append(high[0] + _same_length_range("0" * rest, high[1:]))
    return parts[0] if len(parts) == 1 else "(?:" + "|".join(parts) + ")"


def decimal_range(low: int, high: int, *, digits: int | None = None) -> str:
    """A regex for the whole numbers from ``low`` (at least 1) to ``high``, in decimal.

    With ``digits``, leading zeros are allowed up to that many digits in all (``0512`` in
    four); without, none is. For JSON Schema, which cannot compare numbers inside text.
    """
    alternatives = []
    for length in range(len(str(low)), len(str(high)) + 1):
        if digits is not None and length > digits:
            break
        first, last = max(low, 10 ** (length - 1)), min(high, 10**length - 1)
        padding = (digits or length) - length
        zeros = f"0{{0,{padding}}}" if padding > 1 else "0?" if padding == 1 else ""
        alternatives.append(zeros + _same_length_range(str(first), str(last)))
    return "(?:" + "|".join(alternatives) + ")"


def _memory_limit_stated() -> Pattern:
    """Every value ``memory_limit_bytes`` takes: 16M up to 2^63 - 1 bytes in each unit, 1%
    to 100%, or infinity (numbers of at most 15 digits, leading zeros allowed)."""
    sized = []
    for power, unit in enumerate(("", "K", "M", "G", "T")):
        least = max(1, -(-MEMORY_MIN_BYTES // 1024**power))  # rounded up
        most = min(10**15 - 1, MEMORY_MAX_BYTES // 1024**power)
        sized.append(decimal_range(least, most, digits=15) + unit)
    return Pattern("|".join([*sized, decimal_range(1, 100, digits=3) + "%", "infinity"]))


# What the schema states where a check goes beyond its pattern (numbers in ranges), so that
# every value the document admits is taken: memory limits, CPU quotas (1% to 10000%).
MEMORY_LIMIT_STATED = _memory_limit_stated()
CPU_QUOTA_STATED = Pattern(decimal_range(1, 10000) + "%")
ORIGIN_STATED = Pattern(_ORIGIN_HOST + f"(?::{decimal_range(1, 65535)})?")
# An environment variable's name the dynamic loader would read (``RESERVED_ENV_PREFIX``).
RESERVED_ENV_NAME = Pattern(f"{RESERVED_ENV_PREFIX}.*")

# Text people read (descriptions, env values): no control character, line separator or
# bidirectional override, which is what ``check_free_text`` and ``check_env_value`` refuse.
ONE_LINE = Pattern(f"[^{_CONTROL_CLASS}{_BIDI_CLASS}]*")
# Labels the API takes outside a spec (token names): no ASCII control character. Looser
# than ONE_LINE, as the token API has always been.
NO_ASCII_CONTROLS = Pattern(r"[^\x00-\x1f\x7f]*")

_NAME_CHARS = re.compile(r"[a-z0-9-]+", re.ASCII)
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)


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
    """IDNA (UTS 46) normalised, lowercase, ASCII hostname of two or more labels.

    The length is checked on the encoded form, label by label, before the name as a whole
    is judged, so an overlong name is ``DOMAIN_TOO_LONG`` whatever the idna library's own
    limits. A single label is refused: Caddy reads a bare word at the start of a site
    block as a directive (``import {``), and a real site name has a dot.
    """
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
        # Mapping first (fullwidth letters, the ideographic full stop, case), then each
        # label on its own: the same steps as idna.encode, minus its length verdict.
        mapped = idna.uts46_remap(candidate, std3_rules=True)
        labels = mapped.split(".")
        if "" in labels:
            raise GrammarError(ErrorCode.INVALID_DOMAIN, "domain has an empty label ('..')")
        encoded = [idna.alabel(label).decode("ascii").lower() for label in labels]
    except idna.IDNAError as exc:
        raise GrammarError(ErrorCode.INVALID_DOMAIN, f"not a valid hostname: {exc}") from exc
    ascii_form = ".".join(encoded)
    if len(ascii_form) > DOMAIN_MAX:
        raise GrammarError(
            ErrorCode.DOMAIN_TOO_LONG,
            f"domain must be at most {DOMAIN_MAX} characters once encoded "
            f"(this one has {len(ascii_form)})",
        )
    for label in encoded:
        if not _LABEL.fullmatch(label):
            raise GrammarError(
                ErrorCode.INVALID_DOMAIN,
                f"label '{label}' must be 1-63 characters of a-z, 0-9 and '-', "
                "not starting or ending with '-'",
            )
    if len(encoded) < 2:
        raise GrammarError(
            ErrorCode.INVALID_DOMAIN,
            f"'{ascii_form}' is a single label; a hostname needs a dot, "
            "e.g. app.example.com or app.localhost",
        )
    if ascii_form.replace(".", "").isdigit():
        raise GrammarError(ErrorCode.INVALID_DOMAIN, "domain must be a hostname, not an IP address")
    return ascii_form


def check_version(value: str) -> str:
    """``X.Y.Z`` with an optional pre-release (``0.23.0-rc12``); no leading ``v``."""
    if len(value) > VERSION_MAX or not VERSION.fullmatch(value):
        raise GrammarError(
            ErrorCode.INVALID_VERSION,
            "version must look like 0.29.0 (optionally with a pre-release, e.g. 0.23.0-rc1)",
        )
    return value


_LETTERS_NUMBER = re.compile(r"([A-Za-z]+)([0-9]+)", re.ASCII)
PreReleasePart = tuple[int, int] | tuple[int, str] | tuple[int, str, int, str]


def _pre_release_part(part: str) -> PreReleasePart:
    """Numbers numerically; ``rc12`` as ("rc", 12), so rc12 > rc2; other text as text.

    PocketBase tags pre-releases ``v0.23.0-rc12`` (no dot before the number), which plain
    semver would order as text, putting rc12 before rc2. The part itself breaks ties, so
    that ``rc02`` and ``rc2`` are never equal.
    """
    if part.isdigit():
        return (0, int(part))
    match = _LETTERS_NUMBER.fullmatch(part)
    if match is not None:
        return (1, match.group(1), int(match.group(2)), part)
    return (1, part)


def version_key(value: str) -> tuple[int, int, int, int, tuple[PreReleasePart, ...]]:
    """Sort key comparing versions as versions: 0.10.0 > 0.9.0, 1.0.0 > 1.0.0-rc1."""
    match = VERSION.fullmatch(value)
    if match is None:
        raise GrammarError(ErrorCode.INVALID_VERSION, f"not a version: {value!r}")
    major, minor, patch, pre = match.groups()
    pre_parts = tuple(_pre_release_part(part) for part in (pre or "").split(".") if part)
    return int(major), int(minor), int(patch), 0 if pre else 1, pre_parts


def is_prerelease(value: str) -> bool:
    return "-" in value


# A node of a fleet (docs/fleet.md): a host name's label, as the agents' node_name.
NODE_NAME_MAX = 63
NODE_NAME = Pattern(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def check_node_name(value: str) -> str:
    if len(value) > NODE_NAME_MAX or not NODE_NAME.fullmatch(value):
        raise GrammarError(
            ErrorCode.INVALID_VALUE,
            f"node {value[:70]!r} must be 1 to 63 lowercase letters, digits and '-', not "
            "starting or ending with '-' (a node_name of the fleet)",
        )
    return value


def check_env_name(value: str) -> str:
    if len(value) > ENV_NAME_MAX or not ENV_NAME.fullmatch(value):
        raise GrammarError(
            ErrorCode.INVALID_ENV_NAME,
            f"environment variable name {value[:40]!r} must match [A-Z_][A-Z0-9_]*",
        )
    if value.startswith(RESERVED_ENV_PREFIX):
        raise GrammarError(
            ErrorCode.RESERVED_ENV_NAME,
            f"{value} is reserved: variables starting with {RESERVED_ENV_PREFIX} steer the "
            "dynamic loader (they could load code into the instance)",
        )
    return value


def check_env_value(value: str) -> str:
    if len(value) > ENV_VALUE_MAX:
        raise GrammarError(
            ErrorCode.INVALID_ENV_VALUE, f"value must be at most {ENV_VALUE_MAX} characters"
        )
    if _CONTROL.search(value):
        raise GrammarError(
            ErrorCode.INVALID_ENV_VALUE,
            "value must not contain newlines, line separators or other control characters",
        )
    if _BIDI_CONTROL.search(value):
        raise GrammarError(ErrorCode.INVALID_ENV_VALUE, _BIDI_MESSAGE)
    return value


def memory_limit_bytes(value: str) -> int | None:
    """Bytes of a systemd ``MemoryMax=`` value; None for ``infinity`` or a percentage."""
    match = MEMORY_LIMIT.fullmatch(value)
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
    if size > MEMORY_MAX_BYTES:
        raise GrammarError(
            ErrorCode.INVALID_MEMORY_LIMIT,
            "memory limit must be below 8388608T (2^63 bytes), or systemd would silently "
            "apply no limit; write 'infinity' for no limit",
        )
    return size


def _body_size_stated() -> Pattern:
    """BODY_SIZE within 1 KB and 1 GiB, per unit, as JSON Schema can state it."""
    alternatives = []
    for unit, factor in _BODY_SIZE_UNITS.items():
        low = max(1, -(-BODY_SIZE_MIN_BYTES // factor))
        high = BODY_SIZE_MAX_BYTES // factor
        if low <= high:
            alternatives.append(f"(?:{decimal_range(low, high)}){unit}")
    return Pattern("|".join(alternatives))


BODY_SIZE_STATED = _body_size_stated()


def body_size_bytes(value: str) -> int:
    """Bytes of a request body limit (``10MB`` is 10,000,000, ``10MiB`` 10,485,760, as
    Caddy reads them), within 1 KB and 1 GiB."""
    match = BODY_SIZE.fullmatch(value)
    if match is None:
        raise GrammarError(
            ErrorCode.INVALID_BODY_SIZE,
            "max_body_size must be a number with an optional unit B, KB, MB, GB (powers of "
            "1000) or KiB, MiB, GiB (powers of 1024), e.g. 10MB or 50MiB",
        )
    number, unit = match.groups()
    size = int(number) * _BODY_SIZE_UNITS[unit or ""]
    if not BODY_SIZE_MIN_BYTES <= size <= BODY_SIZE_MAX_BYTES:
        raise GrammarError(
            ErrorCode.INVALID_BODY_SIZE,
            f"max_body_size must be from 1KB to 1GiB (this is {size} bytes)",
        )
    return size


def check_body_size(value: str) -> str:
    body_size_bytes(value)
    return value


def check_cpu_quota(value: str) -> str:
    match = CPU_QUOTA.fullmatch(value)
    if match is None or int(match.group(1)) > 10000:
        raise GrammarError(
            ErrorCode.INVALID_CPU_QUOTA,
            "CPU quota must be a percentage from 1% to 10000% (100% = one core)",
        )
    return value


def check_egress(value: str) -> str:
    """``any``, or one IPv4/IPv6 address or network, written the way Python and systemd
    write it (so that a spec compares equal to what the unit says): ``192.0.2.10``,
    ``10.0.0.0/8``, ``2001:db8::/32``. Host names are refused: systemd filters by address."""
    if value == "any":
        return value
    try:
        network = ipaddress.ip_network(value, strict=True) if EGRESS.fullmatch(value) else None
    except ValueError:
        network = None
    if network is None:
        raise GrammarError(
            ErrorCode.INVALID_EGRESS,
            f"{value[:60]!r} must be 'any' or an IP address or network such as 192.0.2.10 "
            "or 10.0.0.0/8 (with no host bits set); host names cannot be filtered",
        )
    canonical = str(network) if "/" in value else str(network.network_address)
    if canonical != value:
        raise GrammarError(ErrorCode.INVALID_EGRESS, f"write {value[:60]!r} as {canonical}")
    if network.prefixlen == 0:
        raise GrammarError(ErrorCode.INVALID_EGRESS, "write 'any' to allow every address")
    return value


# A snapshot's id: the UTC second it was taken, with -1, -2 ... for two in one second.
SNAPSHOT_ID = Pattern(r"[0-9]{8}T[0-9]{6}Z(?:-[0-9]{1,4})?")


def check_snapshot_id(value: str) -> str:
    if not SNAPSHOT_ID.fullmatch(value):
        raise GrammarError(
            ErrorCode.INVALID_VALUE,
            f"{value[:40]!r} is not a backup id (the UTC second it was taken: 20261202T031500Z)",
        )
    return value


# A backup target's name (the agent's ``backup_targets``); "local" is the snapshot folder.
TARGET_NAME = Pattern(r"[a-z](?:[a-z0-9-]{0,30}[a-z0-9])?")
LOCAL_TARGET = "local"


def check_target_name(value: str) -> str:
    if not TARGET_NAME.fullmatch(value):
        raise GrammarError(
            ErrorCode.INVALID_TARGET_NAME,
            f"{value[:40]!r} is not a backup target's name: lowercase letters, digits and "
            "'-', starting with a letter, at most 32 characters",
        )
    return value


ARCHIVE_ID = Pattern(
    r"(?P<service>[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?)-(?P<stamp>[0-9]{8}T[0-9]{6}Z)(?:-[0-9]{1,4})?"
)


def check_archive_id(value: str) -> str:
    """The name of a deleted service's archived folder: ``<name>-<UTC stamp>[-n]``."""
    if not ARCHIVE_ID.fullmatch(value):
        raise GrammarError(
            ErrorCode.INVALID_VALUE,
            f"{value[:80]!r} is not an archive id (<name>-<UTC second>: blog-20261202T031500Z)",
        )
    return value


# How long an instance may go without a request through Caddy before it is put to sleep
# (``sleep_after``): a whole number of seconds, minutes, hours or days, from 5s to 30d.
SLEEP_AFTER = Pattern(r"([1-9][0-9]{0,6})(s|m|h|d)")
SLEEP_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
SLEEP_AFTER_MIN = 5
SLEEP_AFTER_MAX = 30 * 86400


def _sleep_after_stated() -> Pattern:
    """Every value ``sleep_seconds`` takes, each unit's numbers within the bounds."""
    return Pattern(
        "|".join(
            decimal_range(max(1, -(-SLEEP_AFTER_MIN // size)), SLEEP_AFTER_MAX // size) + unit
            for unit, size in SLEEP_UNITS.items()
        )
    )


SLEEP_AFTER_STATED = _sleep_after_stated()


def sleep_seconds(value: str) -> int:
    """``15m`` -> 900: the seconds of a ``sleep_after``, within 5s to 30d."""
    match = SLEEP_AFTER.fullmatch(value)
    seconds = int(match.group(1)) * SLEEP_UNITS[match.group(2)] if match else 0
    if not SLEEP_AFTER_MIN <= seconds <= SLEEP_AFTER_MAX:
        raise GrammarError(
            ErrorCode.INVALID_SLEEP_AFTER,
            f"{value[:40]!r} is not a sleep_after: a whole number and s, m, h or d "
            "(such as 15m), from 5s to 30d",
        )
    return seconds


def check_sleep_after(value: str) -> str:
    sleep_seconds(value)
    return value


SCHEDULE_MACROS = ("@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly")


_CRON_FIELD = r"[0-9A-Za-z*,/?#-]+"
SCHEDULE_SHAPE = Pattern(
    rf"@(?:hourly|daily|midnight|weekly|monthly|yearly)|{_CRON_FIELD}(?: {_CRON_FIELD}){{4}}"
)


def check_schedule(value: str) -> str:
    """A five-field cron expression (minute hour day month weekday, UTC) or a macro.

    Six and seven fields (seconds, years) are refused: a snapshot a second is not a
    schedule. croniter (a maintained library, not a parser of ours) judges the fields.
    """
    fields = value.split()
    valid = SCHEDULE_SHAPE.fullmatch(value) is not None and (
        (len(fields) == 1 and value in SCHEDULE_MACROS)
        or (len(fields) == 5 and len(value) <= 100 and croniter.is_valid(value))
    )
    if not valid:
        raise GrammarError(
            ErrorCode.INVALID_SCHEDULE,
            f"{value[:60]!r} is not a schedule: five cron fields such as '0 3 * * *' "
            "(minute hour day month weekday, UTC) or @hourly, @daily, @weekly, @monthly",
        )
    return value


def check_email(value: str) -> str:
    if (
        len(value) > EMAIL_MAX
        or not EMAIL.fullmatch(value)
        or len(value.partition("@")[0]) > EMAIL_LOCAL_MAX
    ):
        raise GrammarError(ErrorCode.INVALID_EMAIL, "not a valid e-mail address")
    return value


def check_origin(value: str) -> str:
    match = ORIGIN.fullmatch(value)
    if match is None:
        raise GrammarError(
            ErrorCode.INVALID_FLAG_VALUE,
            f"origin {value[:60]!r} must be '*' or http(s)://host[:port]",
        )
    port = match.group(1)
    if port is not None and (port.startswith("0") or int(port) > 65535):
        raise GrammarError(
            ErrorCode.INVALID_FLAG_VALUE,
            f"origin {value[:60]!r} has port {port}; a port is 1 to 65535, "
            "without leading zeros (browsers send it that way)",
        )
    return value


def has_control_characters(value: str) -> bool:
    """Any Unicode control character or line/paragraph separator (Cc, Zl, Zp)."""
    return _CONTROL.search(value) is not None


def has_bidi_controls(value: str) -> bool:
    """Any bidirectional embedding, override or isolate (U+202A-U+202E, U+2066-U+2069)."""
    return _BIDI_CONTROL.search(value) is not None


def check_free_text(value: str, maximum: int) -> str:
    """Text shown to humans only (descriptions): one line, printable, bounded, not disguised."""
    if len(value) > maximum:
        raise GrammarError(ErrorCode.VALUE_TOO_LONG, f"must be at most {maximum} characters")
    if _CONTROL.search(value):
        raise GrammarError(
            ErrorCode.INVALID_CHARACTERS,
            "must be one line: no newlines, line separators or other control characters",
        )
    if _BIDI_CONTROL.search(value):
        raise GrammarError(ErrorCode.INVALID_CHARACTERS, _BIDI_MESSAGE)
    return value


# -- PocketBase's own settings (``specs.pocketbase_settings``) ------------------------------
# These values go to PocketBase through its API, not into a unit or Caddy file, but they
# reach its e-mails (the app URL and name), its request handling (trusted headers, rate
# limit labels) and its connections (SMTP, S3), so they are held to grammars as narrow.

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
# An event's kind as the agent names them (``reconciled``, ``process_restarted``, ...).
EVENT_KIND = Pattern(r"[a-z][a-z0-9_]{0,63}")
# A webhook's id as the store makes them (``wh_`` and 16 hex digits).
WEBHOOK_ID = Pattern(r"wh_[0-9a-f]{16}")
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
    if len(value) > HOSTNAME_MAX or not SETTING_HOST.fullmatch(value):
        raise GrammarError(
            code, f"{what} must be a lowercase host name or IPv4 address, e.g. smtp.example.com"
        )
    return value


def check_pattern(value: str, pattern: Pattern, code: ErrorCode, message: str) -> str:
    """``value`` when ``pattern`` matches it whole, else ``GrammarError(code, message)``."""
    if not pattern.fullmatch(value):
        raise GrammarError(code, message)
    return value


def check_secret_text(value: str) -> str:
    """A secret given as a value: one line, printable, at most SECRET_MAX characters."""
    if not value:
        raise GrammarError(ErrorCode.INVALID_SECRET, "the secret is empty")
    if len(value) > SECRET_MAX:
        raise GrammarError(
            ErrorCode.INVALID_SECRET, f"the secret must be at most {SECRET_MAX} characters"
        )
    if _CONTROL.search(value) or _BIDI_CONTROL.search(value):
        raise GrammarError(
            ErrorCode.INVALID_SECRET,
            "the secret must be one line without control or bidirectional characters",
        )
    return value
