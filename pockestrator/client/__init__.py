"""The command-line client of a running agent: its REST API over HTTP, and what it prints.

The CLI (``pockestrator.cli``) parses arguments and hands each client command to
``client.commands``; everything here talks to the agent only through its API
(``client.http``), finds the agent and the token the documented way
(``client.connection``), reads spec files with the same parser the agent uses
(``client.specfiles``), and prints tables, JSON or YAML (``client.output``) with progress
on stderr (``client.progress``). This package imports ``specs`` and ``config`` only, never
the agent's internals, so the client sees what any other API client sees.
"""
