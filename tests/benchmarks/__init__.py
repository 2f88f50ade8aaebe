"""Benchmarks: `make bench` (or `python -m tests.benchmarks`) prints figures and ratios."""
