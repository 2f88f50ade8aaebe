"""The decision of one reconcile, as a value: what should change on the host, and why.

After kubelet's ``computePodActions``: from the desired service (its spec, rendered), its last
status and a fresh observation of the host, ``plan_service`` returns a ``Plan``: the steps
that converge the host, the drift it found (what differs from what the agent itself last
wrote), and what the status will say once the steps are done. ``plan_removal`` does the same
for a name that has no spec any more. Nothing here does I/O; ``agent.reconciler`` observes,
calls these, and carries the steps out (``agent.apply``). So every decision the reconciler
makes has a row in ``tests/unit/test_plan.py`` that runs in milliseconds, and a plan can be
logged, compared and tested before anything changes (Terraform's plan and apply).

A plan's steps come in four groups. ``prepare`` (folder, binary, unit file, daemon-reload,
enablement, first superuser) always runs first; ``run`` (start, stop, restart) and ``route``
(the Caddy site) follow in the order the daemon-reload wave's size and the run steps give
(``start_before_route``): instances that only start do so before Caddy loads, in a
wave of any size, so they boot meanwhile; restarts do too in a small wave, and in a large
one wait for Caddy to have the new site. ``finish`` (a removal's data) comes last.

An upgrade is a plan too: it stops the service itself (no drift: the stop is its own),
backs the data up, converges on the new version and gates on health with the longer
upgrade deadline. If that fails, the reconciler restores the data and plans again with the
failed version recorded, which pins the target to the version that ran before.

PocketBase's own settings are planned once the instance is healthy, by ``plan_settings``
(with ``settings_due`` deciding whether to look at all): they live behind the instance's
API, so they can be observed only once it answers, and their drift is found only by
looking, at most every ``settings_interval``.

The package by job: ``model`` (``Desired``, ``Observed``, ``Policy``, ``Plan``), ``versions``
(which version runs), ``service`` (``plan_service``, ``plan_removal``, ``plan_catch_all``),
``conclude`` (the status after the steps) and ``settings`` (``plan_settings``). Import
from the module that defines a name.
"""
