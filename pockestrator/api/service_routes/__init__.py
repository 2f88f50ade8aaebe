"""Services: create, list, read, change, delete, control, status, events, validation.

Writes go to the store and become reconciles (``agent.enqueue``); the API never drives
systemd itself except for the one-off restart the agent offers. A service is addressed by
its id or its project name. One module per job, each declaring its operations next to
their handlers (``api.routing.Operation``):

- ``reads``: the list, one service with its runtime status, the status alone, the events;
- ``writes``: create, change (JSON merge patch) and delete, each answered after the
  reconcile when asked to wait (bounded);
- ``control``: start, stop and restart;
- ``validation``: the pre-flight check of a new service, which never writes;
- ``checks``: what they share: the service a request names (404), and a spec that is
  valid alone (400 with the grammar's codes) and beside the others and the host.

``log_routes`` serves the one service operation left, the logs, from the journal.
"""

from __future__ import annotations

from pockestrator.api.routing import Operation
from pockestrator.api.service_routes import control, reads, validation, writes

OPERATIONS: list[Operation] = [
    *reads.OPERATIONS,
    *writes.OPERATIONS,
    *control.OPERATIONS,
    *validation.OPERATIONS,
]
