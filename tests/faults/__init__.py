"""Fault injection on the real test bed: the agent killed with SIGKILL mid-workload.

``killpoints`` holds the workload, the kill and the checks of a converged host; the suite
runs a handful of kill points (tests/integration/test_faults_kill.py) and
``python -m tests.faults`` (``make faults``) runs the full 100 and writes the figures that
docs/reliability.md reports.
"""
