"""Controllers: one package per thing the agent manages on the host.

- ``systemd``: unit files rendered from specs, observed, written; the D-Bus protocol;
- ``caddy``: one site snippet per service, applied in waves (one validate, one reload);
- ``releases``: PocketBase binaries by version, downloaded once, verified, cached;
- ``servicedirs``: each service's folder, its binary, backups, its first superuser.

Each offers a pure render (where there is text to render), an ``observe`` that changes
nothing, and the apply steps; deciding which steps to take is the reconciler's
(``agent``). Mechanics several of them share live beside them, once each: ``files``
(atomic writes, content hashes), ``hashed_copy`` (copying a binary while hashing it),
``stamped_paths`` (unique timestamped names) and ``service_layout`` (the names in a
service folder). Short-lived programs run through ``pockestrator.subprocesses``.

Controllers may import ``specs``, ``config`` and ``subprocesses``, never ``agent`` or
``api`` (docs/architecture.md).
"""
