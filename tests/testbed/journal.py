"""What a test bed's journald holds for one syslog identifier (units set SyslogIdentifier=),
and which ``journalctl --follow`` processes read it (the API's log streams)."""

from __future__ import annotations

import subprocess
from pathlib import Path

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


def journalctl_followers(journal_dir: Path, *arguments: str) -> list[int]:
    """PIDs of the ``journalctl --follow`` processes reading ``journal_dir`` whose command
    lines also hold ``arguments`` (e.g. ``--lines=2``)."""
    wanted = {"--follow", f"--directory={journal_dir}", *arguments}
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if argv and argv[0].endswith("journalctl") and wanted <= set(argv):
            found.append(int(proc.name))
    return found
