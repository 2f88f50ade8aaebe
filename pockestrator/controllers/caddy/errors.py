"""Caddy's failures: ``CaddyError``, and reading Caddy's error text.

``caddy validate`` reports in JSON log lines (or a plain ``Error:`` line);
``caddy_error_text`` keeps the useful part, bounded, because it is shown to users in a
service's status. The admin API answers a refused ``/load`` or ``/adapt`` with
``{"error": "..."}`` (``admin_error_text``); the text says whether the Caddyfile did not
adapt or the adapted config failed to provision (``refused_while_adapting``).

When a wave is refused, the text often names the culprit:
a snippet file and line (``files_in_error``) or an ambiguous site address
(``ambiguous_addresses``); the wave drops those services first and bisects only when
nothing is named.

Neighbours: ``wave`` (uses these to find offenders), ``sites`` (raises ``CaddyError``).
"""

from __future__ import annotations

import contextlib
import json
import re

# Caddy's error text is shown to users in a service's status; keep it readable.
ERROR_TEXT_MAX = 2000

# A snippet path followed by ":<line>", as Caddy names the file an error is in.
_FILE_IN_ERROR = re.compile(r"([^\s:'\"\[\]()]+\.caddy):\d+")
_AMBIGUOUS_SITE = re.compile(r"ambiguous site definition: (\S+)")


class CaddyError(Exception):
    """Caddy could not be run or reached at all (not a problem of one service's site)."""


def caddy_error_text(stdout: str, stderr: str) -> str:
    """The useful line(s) of a failed Caddy command: its error log entries, else the tail."""
    messages = []
    for raw in stderr.splitlines():
        raw = raw.strip()
        if raw.startswith("{"):
            with contextlib.suppress(ValueError):
                entry = json.loads(raw)
                if isinstance(entry, dict) and entry.get("level") in ("error", "fatal"):
                    messages.append(str(entry.get("msg", "")) + _error_suffix(entry))
                continue
        elif raw.startswith("Error:"):
            messages.append(raw.removeprefix("Error:").strip())
    if not messages:
        tail = [line for line in (stderr + "\n" + stdout).splitlines() if line.strip()]
        messages = tail[-3:] or ["caddy failed without a message"]
    text = "; ".join(dict.fromkeys(messages))
    return text if len(text) <= ERROR_TEXT_MAX else text[: ERROR_TEXT_MAX - 3] + "..."


# Caddy's prefix for a Caddyfile that did not adapt (answered before anything provisions).
_ADAPT_FAILED = "adapting config using"


def admin_error_text(body: str) -> str:
    """The ``error`` of an admin API answer (the body's start when it is not Caddy's JSON)."""
    text = body.strip()
    with contextlib.suppress(ValueError):
        answer = json.loads(text)
        if isinstance(answer, dict) and isinstance(answer.get("error"), str):
            text = answer["error"]
    text = text or "Caddy refused without a message"
    return text if len(text) <= ERROR_TEXT_MAX else text[: ERROR_TEXT_MAX - 3] + "..."


def refused_while_adapting(error: str) -> bool:
    """True when Caddy refused a config because the Caddyfile did not adapt, which
    ``/adapt`` sees too; False for a failure while provisioning, which only a load (or
    ``caddy validate``) meets."""
    return _ADAPT_FAILED in error


def _error_suffix(entry: dict[str, object]) -> str:
    detail = entry.get("error")
    return f": {detail}" if isinstance(detail, str) and detail else ""


def files_in_error(error: str) -> list[str]:
    """The ``*.caddy`` file paths Caddy's error text points at (as Caddy spelled them)."""
    return _FILE_IN_ERROR.findall(error)


def ambiguous_addresses(error: str) -> list[str]:
    """The site addresses Caddy's error text calls ambiguous (defined twice)."""
    return _AMBIGUOUS_SITE.findall(error)
