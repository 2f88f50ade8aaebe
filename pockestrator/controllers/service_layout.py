"""The names in a service folder that the controllers must agree on, defined once.

``<cache>/<version>/pocketbase`` is the binary the rendered unit's ``ExecStart`` runs (the
name PocketBase's own archives and wheels give it; an earlier agent also linked it into
each service folder, which ``servicedirs`` now removes); ``<base_dir>/<name>/pb_data`` is
the data folder the unit passes as ``--dir`` and ``servicedirs`` backs up. A rename here is
a rename everywhere.
"""

from __future__ import annotations

BINARY_NAME = "pocketbase"
DATA_DIR = "pb_data"
# Where the app releases are, root-owned, in the service folder (controllers.apps).
RELEASES_DIR = ".releases"
