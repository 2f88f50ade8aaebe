"""How the API shows numbers to people, as the reference does: "45.2MB", "2.1%", "2h30m15s".

Each human form sits next to a raw numeric field in the responses, so scripts never parse
these strings.
"""

from __future__ import annotations

import math

_UNITS = ("B", "KB", "MB", "GB", "TB", "PB")


def human_bytes(size: int | None) -> str | None:
    """Binary multiples with one decimal, labelled as the reference does: 47395635 -> 45.2MB."""
    if size is None or size < 0:
        return None
    value = float(size)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            return f"{size}B" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")


def human_percent(value: float | None) -> str | None:
    """One decimal and a percent sign; None (unknown) stays None."""
    if value is None or math.isnan(value) or math.isinf(value):
        return None
    return f"{value:.1f}%"


def go_duration(seconds: float) -> str:
    """Whole seconds the way Go prints a duration: 9015 -> 2h30m15s, 75 -> 1m15s, 0 -> 0s."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def short_hash(digest: str | None) -> str | None:
    """The 12-hex prefix the reference shows for config hashes."""
    return digest[:12] if digest else None
