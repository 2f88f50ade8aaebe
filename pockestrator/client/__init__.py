"""The command-line client of a running agent: its REST API over HTTP, and what it prints.

The CLI (``pockestrator.cli``) parses arguments (``client.command_arguments``) and hands
each client command to ``client.commands`` (``client.dispatch``); everything here talks to
the agent only through its API (``client.http``), finds the agent and the token the
documented way
(``client.connection``, with named agents in ``client.contexts``), reads spec files with
the same parser the agent uses (``client.specfiles``), and prints tables, JSON, YAML,
names or JSONPath (``client.output``, ``client.jsonpath``) with progress on stderr
(``client.progress``). The command groups keep their own parsing and commands beside
them: ``backup_arguments``, ``config_commands``, ``version``, ``completion`` (generated
from the parser), ``local`` (the first admin and token, straight into the agent's
database); ``arguments`` and ``times`` hold the argument types, ``examples`` the
examples of every ``--help``, ``exits`` the exit codes. This package imports ``specs``,
``config`` and (for the local commands) ``accounts`` only, never the agent's internals,
so the client sees what any other API client sees.
"""
