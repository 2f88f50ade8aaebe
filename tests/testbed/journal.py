"""What a test bed's journald holds for one syslog identifier (units set SyslogIdentifier=)."""

from __future__ import annotations

import subprocess

from pockestrator.agent.sandbox import Sandbox


def journal_text(sandbox: Sandbox, identifier: str) -> str:
    """The messages logged under ``identifier``, one per line (``journalctl -o cat``)."""
    return subprocess.run(
        [
            "journalctl",
            "-D",
            str(sandbox.systemd.paths.journal_dir),
            "--no-pager",
            "-o",
            "cat",
            f"SYSLOG_IDENTIFIER={identifier}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
