"""Text people read: one line, no control character, line separator or bidirectional
override ("Trojan Source"), so that what a human sees is what the machine stores.
"""

from __future__ import annotations

import re
from typing import Literal

from pockestrator.specs.errors import ErrorCode
from pockestrator.specs.grammar.pattern import GrammarError, Pattern

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

# Text people read (descriptions, env values): no control character, line separator or
# bidirectional override, which is what ``check_free_text`` and ``check_env_value`` refuse.
ONE_LINE = Pattern(f"[^{_CONTROL_CLASS}{_BIDI_CLASS}]*")
# Labels the API takes outside a spec (token names): no ASCII control character. Looser
# than ONE_LINE, as the token API has always been.
NO_ASCII_CONTROLS = Pattern(r"[^\x00-\x1f\x7f]*")


def has_control_characters(value: str) -> bool:
    """Any Unicode control character or line/paragraph separator (Cc, Zl, Zp)."""
    return _CONTROL.search(value) is not None


def has_bidi_controls(value: str) -> bool:
    """Any bidirectional embedding, override or isolate (U+202A-U+202E, U+2066-U+2069)."""
    return _BIDI_CONTROL.search(value) is not None


OneLineRefusal = Literal["too long", "control", "bidirectional"]


def one_line_refusal(value: str, maximum: int) -> OneLineRefusal | None:
    """What keeps ``value`` from being one bounded line that reads as it is, in the order
    the checks report it: longer than ``maximum``, a control character or line separator,
    a bidirectional override; None when nothing does. Each check words its own refusal."""
    if len(value) > maximum:
        return "too long"
    if _CONTROL.search(value):
        return "control"
    if _BIDI_CONTROL.search(value):
        return "bidirectional"
    return None


def check_free_text(value: str, maximum: int) -> str:
    """Text shown to humans only (descriptions): one line, printable, bounded, not disguised."""
    refusal = one_line_refusal(value, maximum)
    if refusal == "too long":
        raise GrammarError(ErrorCode.VALUE_TOO_LONG, f"must be at most {maximum} characters")
    if refusal == "control":
        raise GrammarError(
            ErrorCode.INVALID_CHARACTERS,
            "must be one line: no newlines, line separators or other control characters",
        )
    if refusal == "bidirectional":
        raise GrammarError(ErrorCode.INVALID_CHARACTERS, _BIDI_MESSAGE)
    return value
