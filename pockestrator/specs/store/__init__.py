"""The specs store: desired services and what the agent observed of them.

Every desired service lives here whatever its source (the spec directory syncs files in,
the API writes), next to its status and events. ``Store`` is the one interface the agent,
the API and the spec directory use; it is assembled from one class per job, each in its
own module with its own SQL:

- ``services``: desired services, ownership between sources, deletions until done;
- ``claims``: uniqueness of name, port and domain, the one place that decides it;
- ``status``: what the reconciler and the health prober last observed;
- ``events``: the append-only history of each service;
- ``handoff``: one-time superuser passwords from the API to the reconciler;
- ``secrets``: secret values given through the API, in root-only files beside the database;
- ``file_issues``: the current problems of each spec file;
- ``operations``: snapshots, verifications, restores asked of a service;
- ``seeds``: where a new service's first data comes from (a clone, an import);
- ``webhooks`` and ``outbox``: where events are delivered, and each event waiting for each
  webhook until it is acknowledged.
- ``idempotency``: the first answer of a creating write, for its retries (sealed).
- ``changes``: a version for every committed change to a service or its status, and the
  wake-up of the API's watch streams.
- ``nodes``: the nodes of a fleet, their leases, and which node each service runs on;
  ``node_loss``: the news of a node's loss and return, written once;
  ``moves``: a service's move to another node, step by recorded step.

Records and errors are in ``records``; ``rows`` reads a row into its record. The file,
its connection discipline (WAL, ``BEGIN IMMEDIATE``, busy timeout) and the migration
history are ``pockestrator.database``, shared with the account store
(``pockestrator.accounts``), which is not desired state and lives apart. Timestamps come
from the ``Clock`` the store is given.
"""

from __future__ import annotations

from pathlib import Path

from pockestrator.clock import SYSTEM_CLOCK, Clock, utc_now
from pockestrator.database import Database, StoreDatabase
from pockestrator.specs.store.changes import ChangeFeed
from pockestrator.specs.store.claims import Claims, NameTakenCode
from pockestrator.specs.store.events import NO_SERVICE, TEST_KIND, EventListener, Events
from pockestrator.specs.store.file_issues import FileIssues
from pockestrator.specs.store.handoff import SuperuserPasswords
from pockestrator.specs.store.idempotency import IdempotencyClaim, IdempotencyKeys
from pockestrator.specs.store.moves import FINISHED, Move, Moves, MoveState
from pockestrator.specs.store.node_loss import NODE_LOST, NodeLoss
from pockestrator.specs.store.nodes import NodeInfo, NodeRecord, Nodes, NodeState
from pockestrator.specs.store.operations import (
    BACKUP_KINDS,
    DEPLOY_KINDS,
    Operation,
    OperationKind,
    Operations,
)
from pockestrator.specs.store.outbox import Claimed, Outbox
from pockestrator.specs.store.records import (
    API_OWNER,
    FILE_OWNER_PREFIX,
    STATUS_FIELDS,
    STATUS_STATES,
    Conflict,
    Deletion,
    Event,
    NotFound,
    ServiceRecord,
    ServiceStatus,
    ServiceSummary,
    StoreError,
    file_owner,
    owner_file,
)
from pockestrator.specs.store.secrets import SecretFiles, SecretMissing
from pockestrator.specs.store.seeds import Seed, Seeds, SeedSource
from pockestrator.specs.store.services import Services
from pockestrator.specs.store.status import Statuses
from pockestrator.specs.store.webhooks import Delivery, Webhook, Webhooks

__all__ = [
    "API_OWNER",
    "BACKUP_KINDS",
    "DEPLOY_KINDS",
    "FILE_OWNER_PREFIX",
    "FINISHED",
    "NODE_LOST",
    "NO_SERVICE",
    "STATUS_FIELDS",
    "STATUS_STATES",
    "TEST_KIND",
    "Claimed",
    "Conflict",
    "Deletion",
    "Delivery",
    "Event",
    "EventListener",
    "IdempotencyClaim",
    "Move",
    "MoveState",
    "NameTakenCode",
    "NodeInfo",
    "NodeRecord",
    "NodeState",
    "NotFound",
    "Operation",
    "OperationKind",
    "SecretMissing",
    "Seed",
    "SeedSource",
    "ServiceRecord",
    "ServiceStatus",
    "ServiceSummary",
    "Store",
    "StoreError",
    "Webhook",
    "file_owner",
    "owner_file",
    "utc_now",  # from pockestrator.clock; agent/reconciler.py still imports it from here
]


# Beside the database file: the root-only folder of secret values (``secrets``).
SECRETS_FOLDER = "secrets"


class Store(
    Services,
    Claims,
    Statuses,
    Events,
    SuperuserPasswords,
    FileIssues,
    Operations,
    Seeds,
    Webhooks,
    Outbox,
    IdempotencyKeys,
    Nodes,
    NodeLoss,
    Moves,
):
    """The specs store on one database; safe to share between threads.

    Given a path it opens (and on ``close`` closes) the SQLite file itself; given an open
    ``StoreDatabase`` (SQLite's or PostgreSQL's) it shares it (with the account store, in
    the agent) and leaves closing it to whoever opened it.
    """

    def __init__(
        self, database: StoreDatabase | Path, *, clock: Clock = SYSTEM_CLOCK, node: str = ""
    ) -> None:
        self._owns_database = isinstance(database, Path)
        # The node this store's new services are placed on (the agent's own; '' for a
        # store opened outside an agent, whose services the next agent adopts).
        self.node = node
        self._database = Database(database) if isinstance(database, Path) else database
        self._clock = clock
        self._event_listeners = []
        self.path = self._database.path
        self._secrets = SecretFiles(self.path.parent / SECRETS_FOLDER)
        self.changes = ChangeFeed()

    @property
    def shared(self) -> bool:
        """Whether the agents of other hosts write this store too (a fleet's PostgreSQL)."""
        return self._database.backend != "sqlite"

    @property
    def schema_version(self) -> int:
        return self._database.schema_version

    def read_secret(self, name: str, path: str, tag: str) -> str:
        """The value the API gave for ``name``'s secret ``settings.<path>`` (tag ``tag``)."""
        return self._secrets.read(name, path, tag)

    def close(self) -> None:
        if self._owns_database:
            self._database.close()
