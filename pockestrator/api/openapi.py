"""The OpenAPI 3.1 document, generated from the route table and its pydantic models.

Every operation lists each status code it can answer (``Operation.answers``: its own and
those the server adds around every handler) with that code's body schema, query
parameters come from the operation's query model, and request bodies from its body model,
so a fuzzer (the test suite runs schemathesis against this document) can hold the server to
it exactly. Response schemas use pydantic's serialization mode, request schemas its
validation mode.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from pockestrator import API_VERSION
from pockestrator.api.routing import Operation
from pockestrator.specs import grammar

REF_TEMPLATE = "#/components/schemas/{model}"
# The contract's version, not the agent's: the document is public and reveals nothing.
DOCUMENT_VERSION = API_VERSION
_PATH_PARAMETER = re.compile(r"\{([a-z_]+)\}")

_PATH_DESCRIPTIONS = {
    "id": "A service's id or project name (services), or a token's id (tokens).",
    "backup_id": "A backup's id: the UTC second it was taken (20261202T031500Z).",
    "archive_id": "An archived folder's id: <project_name>-<UTC second it was deleted>.",
    "operation_id": "An operation's number.",
    "move_id": "A move's number.",
    "webhook_id": "A webhook's id (wh_ and 16 hex digits).",
}
# The grammar of a path parameter, where it has one (the handler checks the same).
_PATH_SCHEMAS: dict[str, dict[str, object]] = {
    "backup_id": {"type": "string", "pattern": grammar.SNAPSHOT_ID.json},
    "archive_id": {"type": "string", "pattern": grammar.ARCHIVE_ID.json},
    "webhook_id": {"type": "string", "pattern": grammar.WEBHOOK_ID.json},
}
_HEADERS = {
    401: {
        "WWW-Authenticate": {
            "description": "Bearer realm, with error=invalid_token when a token was refused.",
            "required": True,
            "schema": {"type": "string"},
        }
    },
}

_TAGS = [
    {"name": "system", "description": "The agent and its host."},
    {"name": "services", "description": "PocketBase services: desired state and runtime."},
    {"name": "validation", "description": "Pre-flight checks."},
    {"name": "access", "description": "API tokens and admin sessions."},
    {"name": "backups", "description": "Snapshots of a service: take, verify, restore."},
    {"name": "releases", "description": "App releases of a service: deploy, list, roll back."},
    {"name": "events", "description": "Every service's events, live, and the webhooks."},
]


def _models(operations: Sequence[Operation]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    wanted: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {}
    for operation in operations:
        for models in operation.answers().values():
            for model in models if isinstance(models, tuple) else (models,):
                wanted[(model, "serialization")] = None
        for _name, model in operation.events:
            wanted[(model, "serialization")] = None
        if operation.body is not None:
            wanted[(operation.body, "validation")] = None
        if operation.query is not None:
            wanted[(operation.query, "validation")] = None
    return list(wanted)


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is present or absent, never null: drop ``null`` from ``anyOf``."""
    if "default" in schema and schema["default"] is None:
        schema = {key: value for key, value in schema.items() if key != "default"}
    options = schema.get("anyOf")
    if not isinstance(options, list):
        return schema
    kept = [option for option in options if option.get("type") != "null"]
    rest = {key: value for key, value in schema.items() if key != "anyOf"}
    if len(kept) == 1:
        return {**rest, **kept[0]}
    return {**rest, "anyOf": kept}


def _query_parameters(model: type[BaseModel], schema: dict[str, Any]) -> list[dict[str, Any]]:
    properties = schema.get("properties", {})
    required = set(schema.get("required", []))
    parameters = []
    for name, field in model.model_fields.items():
        property_schema = _without_null(dict(properties[name]))
        property_schema.pop("title", None)
        description = property_schema.pop("description", None) or field.description
        parameter: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": property_schema,
        }
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


def _header_parameters(operation: Operation) -> list[dict[str, Any]]:
    """Idempotency-Key on creating writes, If-Match on conditional ones (docs/api.md)."""
    parameters: list[dict[str, Any]] = []
    if operation.idempotent:
        parameters.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "A key of the client's making (a UUID): a retry with the same key"
                " and request within the window gets the first answer again (with"
                " Idempotent-Replayed: true); the same key with another request is 422"
                " IDEMPOTENCY_KEY_REUSED.",
                "schema": {"type": "string", "pattern": "^[!-~]{1,255}$"},
            }
        )
    if operation.conditional:
        parameters.append(
            {
                "name": "If-Match",
                "in": "header",
                "required": False,
                "description": "The ETag of GET /services/{id} (its generation, quoted) or *;"
                " when the service is at another generation: 412 PRECONDITION_FAILED.",
                "schema": {"type": "string", "minLength": 1, "maxLength": 1000},
            }
        )
    return parameters


def event_schema(events: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """One server-sent event as OpenAPI 3.1 describes an event stream's items: an object of
    its fields (``event``, ``data``, ``id``, ``retry``), ``data`` holding JSON of the event's
    schema (``contentMediaType``/``contentSchema``). Comment lines are not events."""
    shapes = [
        {
            "type": "object",
            "properties": {
                "event": {"const": name},
                "data": {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": data,
                },
                "id": {
                    "type": "string",
                    "minLength": 1,
                    "description": "Resume after it with Last-Event-ID.",
                },
                "retry": {"type": "integer", "minimum": 0},
            },
            "required": ["event", "data"],
            "additionalProperties": False,
        }
        for name, data in events
    ]
    return shapes[0] if len(shapes) == 1 else {"anyOf": shapes}


def _response(
    operation: Operation,
    status: int,
    schemas: list[dict[str, Any]],
    events: list[tuple[str, dict[str, Any]]],
) -> dict[str, Any]:
    schema = schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
    content: dict[str, Any] = {"application/json": {"schema": schema}}
    if events and status == 200:
        names = ", ".join(f"`{name}`" for name, _data in events)
        content["text/event-stream"] = {
            "schema": event_schema(events),
            "description": f"Server-sent events ({names}), each described by this schema;"
            " `: keepalive` comment lines between them.",
        }
    response: dict[str, Any] = {"description": HTTPStatus(status).phrase, "content": content}
    headers = dict(_HEADERS.get(status, {})) if not operation.public or status != 401 else {}
    if operation.location is not None and status == 201:
        headers["Location"] = {
            "description": "Where the created resource (or the operation) can be read.",
            "required": True,
            "schema": {"type": "string", "minLength": 1},
        }
    for name, description in operation.response_headers.get(status, {}).items():
        headers[name] = {"description": description, "required": True, "schema": {"type": "string"}}
    if headers:
        response["headers"] = headers
    links = {link.name: link.document() for link in operation.links if link.status == status}
    if links:
        response["links"] = links
    return response


def build_openapi(operations: Sequence[Operation]) -> dict[str, Any]:
    """The whole document for ``operations``."""
    key_map, definitions = models_json_schema(_models(operations), ref_template=REF_TEMPLATE)
    schemas: dict[str, Any] = definitions.get("$defs", {})

    def ref(model: type[BaseModel], mode: JsonSchemaMode) -> dict[str, Any]:
        return dict(key_map[(model, mode)])

    def resolved(model: type[BaseModel]) -> dict[str, Any]:
        reference = key_map[(model, "validation")]["$ref"]
        return dict(schemas[reference.rsplit("/", 1)[1]])

    paths: dict[str, dict[str, Any]] = {}
    for operation in operations:
        item: dict[str, Any] = {
            "operationId": operation.operation_id,
            "summary": operation.summary,
            "tags": [operation.tag],
        }
        if operation.description:
            item["description"] = operation.description
        parameters = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": _PATH_SCHEMAS.get(name, {"type": "string", "minLength": 1}),
                "description": _PATH_DESCRIPTIONS.get(name, name),
            }
            for name in _PATH_PARAMETER.findall(operation.path)
        ]
        if operation.query is not None:
            parameters += _query_parameters(operation.query, resolved(operation.query))
        parameters += _header_parameters(operation)
        if parameters:
            item["parameters"] = parameters
        if operation.body is not None:
            item["requestBody"] = {
                "required": True,
                "content": {
                    media_type: {"schema": ref(operation.body, "validation")}
                    for media_type in operation.body_types
                },
            }
        elif operation.body_types != ("application/json",):  # a file as the body
            item["requestBody"] = {
                "required": True,
                "content": {
                    media_type: {"schema": {"type": "string", "format": "binary"}}
                    for media_type in operation.body_types
                },
            }
        responses = {}
        events = [(name, ref(model, "serialization")) for name, model in operation.events]
        for status, models in sorted(operation.answers().items()):
            listed = models if isinstance(models, tuple) else (models,)
            responses[str(status)] = _response(
                operation, status, [ref(model, "serialization") for model in listed], events
            )
        for status, media_type in operation.binary.items():
            responses[str(status)] = {
                "description": HTTPStatus(status).phrase,
                "content": {media_type: {"schema": {"type": "string", "format": "binary"}}},
            }
        item["responses"] = dict(sorted(responses.items()))
        if operation.public:
            item["security"] = []
        elif operation.sessions_only:
            item["security"] = [{"sessionAuth": []}]
        paths.setdefault(operation.url, {})[operation.method.lower()] = item

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Pockestrator API",
            "version": DOCUMENT_VERSION,
            "description": "Runs many PocketBase instances on one host. Every endpoint but"
            " /healthz and /auth/login needs `Authorization: Bearer <token>`.",
        },
        "tags": _TAGS,
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API token (pks_...) or a dashboard session (pkss_...).",
                },
                "sessionAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A dashboard session (pkss_...) from POST /auth/login; an"
                    " API token is refused there with 400 NOT_A_SESSION.",
                },
            },
        },
        "security": [{"bearerAuth": []}],
    }
