"""The names in a service folder that the controllers must agree on, defined once.

``<base_dir>/<name>/pocketbase`` is the binary ``servicedirs`` links in from the release
cache (where it is ``<cache>/<version>/pocketbase``, the name PocketBase's own archives
and wheels give it), and the program the rendered unit's ``ExecStart`` runs;
``<base_dir>/<name>/pb_data`` is the data folder ``servicedirs`` creates and backs up and
the unit passes as ``--dir``. A rename here is a rename everywhere.
"""

from __future__ import annotations

BINARY_NAME = "pocketbase"
DATA_DIR = "pb_data"
