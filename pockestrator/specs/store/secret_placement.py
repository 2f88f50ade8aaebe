"""Secret values given through the API for a service another node runs: refused.

The store keeps such a value in a root-only file beside the receiving node's database,
never in a row (``secrets``). A service placed on another node could not read it there,
and carrying it across is not done: the row commits in the shared PostgreSQL while the
value would have to reach another host's disk in the same step (a half-done write leaves a
service whose secret is nowhere), and putting it in the shared store would put a secret in
a row. So the write is refused, naming the field, with nothing kept: send it to the owning
node's API (its value then stays on the host that uses it), or name the file in a spec
file on that node.
"""

from __future__ import annotations

from pockestrator.specs.errors import ErrorCode, FieldIssue
from pockestrator.specs.model import ServiceSpec
from pockestrator.specs.pocketbase_settings import secret_sources


def secret_values(spec: ServiceSpec) -> list[str]:
    """The settings paths of ``spec`` that carry a secret's value (not a stored tag)."""
    return [
        path for path, secret in secret_sources(spec.settings).items() if secret.value is not None
    ]


def secrets_elsewhere(valued: list[str], node: str, receiving: str) -> list[FieldIssue]:
    """One issue per secret value when ``node``, the service's, is not ``receiving``."""
    if node in ("", receiving):
        return []
    return [
        FieldIssue(
            f"settings.{path}",
            f"The service runs on node '{node}': a secret value sent to node '{receiving}' "
            f"would stay on '{receiving}'. Send this request to '{node}'s API, or name "
            f"node: {receiving}",
            ErrorCode.SECRET_ON_ANOTHER_NODE,
        )
        for path in valued
    ]
