"""Values a unit file or a Caddy site states: environment variables, memory and CPU
limits, egress addresses, CORS origins, request body sizes, TLS modes and how long an
instance may sleep. Each written the one way systemd and Caddy read it.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from pockestrator.specs.errors import ErrorCode
from pockestrator.specs.grammar.pattern import (
    GrammarError,
    Pattern,
    check_pattern,
    decimal_range,
    value_once_parsed,
)
from pockestrator.specs.grammar.text import _BIDI_MESSAGE, OneLineRefusal, one_line_refusal

# How Caddy serves a site: ACME certificates, its own local CA, or plain HTTP.
TlsMode = Literal["auto", "internal", "off"]
TLS_MODES: tuple[TlsMode, ...] = ("auto", "internal", "off")
ENV_NAME_MAX = 128
ENV_VALUE_MAX = 4096
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
ENV_NAME = Pattern(r"[A-Z_][A-Z0-9_]*")
# An IPv4 or IPv6 address or network, or "any"; ``check_egress`` holds the exact rules.
EGRESS = Pattern(r"any|[0-9A-Fa-f:.]{2,39}(?:/[0-9]{1,3})?")
# ``check_egress``'s exact rules where a pattern can hold them: an IPv4 address as Python
# writes it (no leading zeros), and every IPv4 network with no host bits set, for each
# prefix length its own octets (a /20's third octet is a multiple of 16). IPv6 is stated
# as JSON Schema's "ipv6" format, which is looser than the canonical form checked.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
IPV4_ADDRESS = Pattern(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


# The patterns a loop of their own builds (``ipv4_network``, ``memory_limit_stated``, ...)
# are built by the call that states them, not once at import: a test that calls one judges
# the code that builds it (tests/mutants.md: mutmut cannot reach work done at import).
def ipv4_network() -> Pattern:
    """Every IPv4 network ``check_egress`` takes, with its prefix (/1 to /32)."""
    alternatives = []
    for prefix in range(1, 33):
        whole, rest = divmod(prefix, 8)
        octets = [_OCTET] * whole
        if rest:
            octets.append("(?:" + "|".join(map(str, range(0, 256, 2 ** (8 - rest)))) + ")")
        octets += ["0"] * (4 - len(octets))
        alternatives.append(r"\.".join(octets) + f"/{prefix}")
    return Pattern("|".join(alternatives))


MEMORY_LIMIT = Pattern(r"([0-9]{1,15})([KMGT]?)|([0-9]{1,3})%|infinity")
CPU_QUOTA = Pattern(r"([1-9][0-9]{0,4})%")
# A request body limit as Caddy reads it (go-humanize): bytes, or a number with an SI
# (KB = 1000) or binary (KiB = 1024) unit.
BODY_SIZE = Pattern(r"([1-9][0-9]{0,9})(B|KB|MB|GB|KiB|MiB|GiB)?")
_ORIGIN_HOST = (
    r"\*|https?://(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
)
ORIGIN = Pattern(_ORIGIN_HOST + r"(?::([0-9]{1,5}))?")


def memory_limit_stated() -> Pattern:
    """Every value ``memory_limit_bytes`` takes: 16M up to 2^63 - 1 bytes in each unit, 1%
    to 100%, or infinity (numbers of at most 15 digits, leading zeros allowed)."""
    sized = []
    for power, unit in enumerate(("", "K", "M", "G", "T")):
        least = max(1, -(-MEMORY_MIN_BYTES // 1024**power))  # rounded up
        most = min(10**15 - 1, MEMORY_MAX_BYTES // 1024**power)
        sized.append(decimal_range(least, most, digits=15) + unit)
    return Pattern("|".join([*sized, decimal_range(1, 100, digits=3) + "%", "infinity"]))


# What the schema states where a check goes beyond its pattern (numbers in ranges), so that
# every value the document admits is taken: memory limits (``memory_limit_stated``), CPU
# quotas (1% to 10000%).
CPU_QUOTA_STATED = Pattern(decimal_range(1, 10000) + "%")
ORIGIN_STATED = Pattern(_ORIGIN_HOST + f"(?::{decimal_range(1, 65535)})?")
# An environment variable's name the dynamic loader would read (``RESERVED_ENV_PREFIX``).
RESERVED_ENV_NAME = Pattern(f"{RESERVED_ENV_PREFIX}.*")


def check_env_name(value: str) -> str:
    why = f"environment variable name {value[:40]!r} must match [A-Z_][A-Z0-9_]*"
    check_pattern(value, ENV_NAME, ErrorCode.INVALID_ENV_NAME, why, longest=ENV_NAME_MAX)
    if value.startswith(RESERVED_ENV_PREFIX):
        raise GrammarError(
            ErrorCode.RESERVED_ENV_NAME,
            f"{value} is reserved: variables starting with {RESERVED_ENV_PREFIX} steer the "
            "dynamic loader (they could load code into the instance)",
        )
    return value


_ENV_VALUE_REFUSALS: dict[OneLineRefusal, str] = {
    "too long": f"value must be at most {ENV_VALUE_MAX} characters",
    "control": "value must not contain newlines, line separators or other control characters",
    "bidirectional": _BIDI_MESSAGE,
}


def check_env_value(value: str) -> str:
    refusal = one_line_refusal(value, ENV_VALUE_MAX)
    if refusal is not None:
        raise GrammarError(ErrorCode.INVALID_ENV_VALUE, _ENV_VALUE_REFUSALS[refusal])
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


def body_size_stated() -> Pattern:
    """BODY_SIZE within 1 KB and 1 GiB, per unit, as JSON Schema can state it."""
    alternatives = []
    for unit, factor in _BODY_SIZE_UNITS.items():
        low = max(1, -(-BODY_SIZE_MIN_BYTES // factor))
        high = BODY_SIZE_MAX_BYTES // factor
        if low <= high:
            alternatives.append(f"(?:{decimal_range(low, high)}){unit}")
    return Pattern("|".join(alternatives))


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


check_body_size = value_once_parsed(body_size_bytes)


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


# How long an instance may go without a request through Caddy before it is put to sleep
# (``sleep_after``): a whole number of seconds, minutes, hours or days, from 5s to 30d.
SLEEP_AFTER = Pattern(r"([1-9][0-9]{0,6})(s|m|h|d)")
SLEEP_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
SLEEP_AFTER_MIN = 5
SLEEP_AFTER_MAX = 30 * 86400


def sleep_after_stated() -> Pattern:
    """Every value ``sleep_seconds`` takes, each unit's numbers within the bounds."""
    return Pattern(
        "|".join(
            decimal_range(max(1, -(-SLEEP_AFTER_MIN // size)), SLEEP_AFTER_MAX // size) + unit
            for unit, size in SLEEP_UNITS.items()
        )
    )


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


check_sleep_after = value_once_parsed(sleep_seconds)


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
