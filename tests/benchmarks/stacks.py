"""Share out py-spy's raw stacks (``record -f raw``) by the agent's own frames.

``.venv/bin/python -m tests.benchmarks.stacks /tmp/idle5.prof --depth 2``: each line of
the output is the share of the samples whose first ``depth`` frames in ``pockestrator/``
are the ones shown (samples with none, the event loop's own, are kept apart by their
innermost frame). py-spy records only samples where a thread runs, so the shares are of
the agent's CPU.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

OWN = "(pockestrator/"
ENTRY = ("pockestrator/__main__.py", "pockestrator/cli.py")


def share_out(lines: Iterable[str], depth: int = 1) -> tuple[int, Counter[str]]:
    """The number of samples, and the samples by the first ``depth`` frames of our own
    below the entry point (or ``loop: <innermost frame>`` when a stack has none)."""
    total = 0
    shares: Counter[str] = Counter()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        ours = [f for f in frames if OWN in f and not any(entry in f for entry in ENTRY)]
        key = " > ".join(f.replace(OWN, "(") for f in ours[:depth]) or f"loop: {frames[-1]}"
        shares[key] += int(count)
        total += int(count)
    return total, shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stacks", type=Path)
    parser.add_argument("--depth", type=int, default=1)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    with args.stacks.open(encoding="utf-8") as lines:
        total, shares = share_out(lines, args.depth)
    print(f"{total} samples")
    for key, count in shares.most_common(args.top):
        print(f"{100 * count / max(total, 1):5.1f} % {count:6d}  {key}")


if __name__ == "__main__":
    main()
