"""Names: a project's name (a unit, a folder and a DNS label), domains, versions and
their order, a fleet's node names, e-mail addresses, event kinds and webhook ids.
"""

from __future__ import annotations

import re

import idna

from pockestrator.specs.errors import ErrorCode
from pockestrator.specs.grammar.pattern import GrammarError, Pattern, check_pattern
from pockestrator.specs.grammar.text import _CONTROL

RESERVED_NAMES = frozenset(
    {"admin", "api", "www", "mail", "ftp", "root", "system", "caddy", "systemd", "pockestrator"}
)
NAME_MAX = 50
DOMAIN_MAX = 253
VERSION_MAX = 64
EMAIL_MAX = 254

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

_NAME_CHARS = re.compile(r"[a-z0-9-]+", re.ASCII)
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)


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
    why = "version must look like 0.29.0 (optionally with a pre-release, e.g. 0.23.0-rc1)"
    return check_pattern(value, VERSION, ErrorCode.INVALID_VERSION, why, longest=VERSION_MAX)


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
    why = (
        f"node {value[:70]!r} must be 1 to 63 lowercase letters, digits and '-', not "
        "starting or ending with '-' (a node_name of the fleet)"
    )
    return check_pattern(value, NODE_NAME, ErrorCode.INVALID_VALUE, why, longest=NODE_NAME_MAX)


def check_email(value: str) -> str:
    if (
        len(value) > EMAIL_MAX
        or not EMAIL.fullmatch(value)
        or len(value.partition("@")[0]) > EMAIL_LOCAL_MAX
    ):
        raise GrammarError(ErrorCode.INVALID_EMAIL, "not a valid e-mail address")
    return value


# An event's kind as the agent names them (``reconciled``, ``process_restarted``, ...).
EVENT_KIND = Pattern(r"[a-z][a-z0-9_]{0,63}")
# A webhook's id as the store makes them (``wh_`` and 16 hex digits).
WEBHOOK_ID = Pattern(r"wh_[0-9a-f]{16}")
