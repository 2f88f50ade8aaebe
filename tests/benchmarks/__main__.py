"""``python -m tests.benchmarks [--quick]``: run the benchmarks, print and save the figures."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from tests.benchmarks.bench import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--idle", type=float, default=60.0)
    parser.add_argument("--restarts", type=int, default=10)
    parser.add_argument("--upgrades", type=int, default=3)
    parser.add_argument("--scrape-services", type=int, default=500)
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument(
        "--only", choices=["all", "deploy", "restarts", "scrape", "watch", "fleet"], default="all"
    )
    parser.add_argument(
        "--fleet-services",
        type=int,
        default=100,
        help="idle services per node of the three-node fleet (0: no fleet figures)",
    )
    parser.add_argument(
        "--large",
        type=int,
        nargs="*",
        default=[],
        help="larger bursts to measure after the idle figure, e.g. --large 200 500",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="3 runs, burst 10, idle 5 s, 3 restarts, 1 upgrade, a scrape of 50, 10 changes, "
        "a fleet of 3 x 5",
    )
    parser.add_argument("--output", type=Path, default=Path("test-artifacts/benchmarks.json"))
    args = parser.parse_args()
    if args.quick:
        args.runs, args.burst, args.idle, args.restarts, args.upgrades = 3, 10, 5.0, 3, 1
        args.scrape_services = 50
        args.changes = 10
        args.fleet_services = 5
    report = asyncio.run(
        run(
            args.runs,
            args.burst,
            args.idle,
            restarts=args.restarts,
            upgrades=args.upgrades,
            scrape_services=args.scrape_services,
            only=args.only,
            changes=args.changes,
            large=tuple(args.large),
            fleet_services=args.fleet_services,
        )
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report.as_json() + "\n")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
