"""The test bed: real systemd, journald, Caddy and PocketBase for integration tests.

``pockestrator.agent.sandbox`` boots the host (the same code as ``pockestrator up``); this
package adds what only tests need: a release mirror built from real PocketBase binaries and
helpers for waiting on real services.
"""
