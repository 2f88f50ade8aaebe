"""The API's request and response bodies as pydantic models; the OpenAPI document is built
from these same classes (``api.openapi``), so what is documented is what is sent.

One module per kind, and the answers per area, as the route modules are split:

- ``requests``: query parameters (strings on the wire, parsed strictly) and request bodies;
- ``problems``: ``Issue`` and ``ErrorResponse``, the error body every operation may answer;
- ``services``, ``logs``, ``system``, ``access``: the answers of ``service_routes``,
  ``log_routes``, ``system_routes`` and ``access_routes``.

Responses answer with the union of the reference's two variants of each endpoint, so that
a client written against either works: e.g. a service comes back both as ``data`` (variant
one) and as ``service`` (variant two). Every response model is a ``ClosedModel``, which
forbids extra fields, so the document is exact and a handler cannot send an undocumented
field by accident.

The service bodies (create, patch) and the spec's part of the ``Service`` view are not
written here: they are derived from ``ServiceSpec``'s fields (``api.spec_shapes``), so a
new spec field reaches them, and the document, without an edit here. Request bodies are
checked twice: the spec's own parser (``specs.model.parse_spec``) gives the precise codes
(``NAME_MUST_START_WITH_LETTER``, ``INVALID_DOMAIN``, ...); the strict derived bodies add
what the API promises beyond YAML: JSON types as documented (a port is a number, not the
string "8080"), no unknown fields.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

# A service's state as the store records it, in answers and in the list's filter; and
# sleeping (beyond the reference's four): active, but asleep until a request wakes it
# (sleep_after). The filter status=active includes the sleeping ones. node_lost: the
# service's node has lost its lease (a fleet's: docs/fleet.md), whatever it last recorded.
ServiceState = Literal["deploying", "active", "inactive", "error", "sleeping", "node_lost"]

# The cursor a paged list answers (``api.paging``): newest-first lists page to older items.
NextCursor = Annotated[
    str | None,
    Field(description="The cursor of the next page (pass as `cursor`); null on the last."),
]
OlderCursor = Annotated[
    str | None,
    Field(description="The cursor of the next, older page (pass as `cursor`); null on the last."),
]


class ClosedModel(BaseModel):
    """A model with exactly its declared fields: anything else is refused on the way in and
    cannot be sent on the way out; its schema says so (``additionalProperties: false``)."""

    model_config = ConfigDict(extra="forbid")
