"""The API's shapes of a spec (create body, merge patch, view) are derived from
``ServiceSpec``: a field declared once reaches all of them and the OpenAPI document, and
each shape keeps the API's promises (JSON types, no unknown fields, the grammar's
patterns) with exact fields and codes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, get_args

import pytest
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from pockestrator.api.inputs import shape_problems
from pockestrator.api.models.requests import ServiceCreateBody, ServicePatchBody
from pockestrator.api.models.services import Service
from pockestrator.api.openapi import build_openapi
from pockestrator.api.routing import Operation
from pockestrator.api.spec_shapes import VIEW, in_shape, request_body, spec_view
from pockestrator.api.views import service_view
from pockestrator.config import AgentConfig
from pockestrator.specs import grammar
from pockestrator.specs.model import ServiceSpec, parse_spec
from pockestrator.specs.public_url import PublicPorts
from pockestrator.specs.service_parts import PocketBaseFlags, Resources
from pockestrator.specs.store import ServiceRecord, ServiceStatus
from pockestrator.specs.values.parsers import InApi

GOOD: dict[str, Any] = {"project_name": "my-app", "port": 8080, "pocketbase_version": "0.29.0"}
AT = datetime(2025, 7, 31, 19, 30, tzinfo=UTC)


def problems(model: type[BaseModel], body: dict[str, Any]) -> dict[str, str]:
    """``field: code`` of what the strict ``model`` alone refuses in ``body``."""
    return {problem.field: str(problem.code) for problem in shape_problems(model, body)}


def properties(
    model: type[BaseModel], mode: Literal["validation", "serialization"] = "validation"
) -> dict[str, Any]:
    return dict(model.model_json_schema(mode=mode)["properties"])


# --- one edit: a field added to the spec reaches every shape and the document ------------


def _sleep_after(value: Any) -> Any:
    return int(value) if isinstance(value, str) and value.isdigit() else value


SleepAfter = Annotated[int, Field(ge=60, le=86400), BeforeValidator(_sleep_after)]


class Backups(BaseModel):
    """A section the spec does not have yet."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    keep: int = Field(ge=1, description="How many backups to keep.")
    target: Annotated[str | None, InApi(create=False, patch=False, view=False)] = None


class SpecWithMore(ServiceSpec):
    """ServiceSpec plus the one field (and one section) a later issue might add."""

    sleep_after: SleepAfter | None = Field(
        default=None, description="Stop the instance after this many idle seconds."
    )
    backups: Backups | None = None


class _Id(BaseModel):
    model_config = VIEW

    id: str


CREATE = request_body(SpecWithMore, "create", "MoreCreateBody", "create")
PATCH = request_body(SpecWithMore, "patch", "MorePatchBody", "patch")
VIEW_MODEL = spec_view(SpecWithMore, _Id, "MoreView")


def test_a_field_added_to_the_spec_is_in_the_create_body_with_its_constraints() -> None:
    assert properties(CREATE)["sleep_after"] == {
        "anyOf": [{"maximum": 86400, "minimum": 60, "type": "integer"}, {"type": "null"}],
        "default": None,
        "description": "Stop the instance after this many idle seconds.",
        "title": "Sleep After",
    }
    assert problems(CREATE, {**GOOD, "sleep_after": 600}) == {}
    assert problems(CREATE, {**GOOD, "sleep_after": "600"}) == {"sleep_after": "INVALID_TYPE"}
    assert problems(CREATE, {**GOOD, "sleep_after": 59}) == {"sleep_after": "INVALID_VALUE"}


def test_a_field_added_to_the_spec_is_in_the_patch_body_optional_and_nullable() -> None:
    assert problems(PATCH, {}) == {}
    assert problems(PATCH, {"sleep_after": None}) == {}
    assert problems(PATCH, {"sleep_after": 90000}) == {"sleep_after": "INVALID_VALUE"}
    assert "sleep_after" not in PATCH.model_json_schema().get("required", [])


def test_a_field_added_to_the_spec_is_in_the_view_and_always_present() -> None:
    spec = SpecWithMore.model_validate({**GOOD, "domain": "a.example.com", "sleep_after": "600"})
    view = VIEW_MODEL.model_validate({**spec.model_dump(mode="json"), "id": "x"})
    assert view.model_dump(mode="json")["sleep_after"] == 600
    assert "sleep_after" in VIEW_MODEL.model_json_schema(mode="serialization")["required"]


def test_a_section_added_to_the_spec_gets_a_body_a_patch_and_a_view_of_its_own() -> None:
    assert problems(CREATE, {**GOOD, "backups": {"keep": 3}}) == {}
    assert problems(CREATE, {**GOOD, "backups": {}}) == {"backups.keep": "FIELD_REQUIRED"}
    # A merge patch of a section merges into the current one: nothing in it is required.
    assert problems(PATCH, {"backups": {}}) == {}
    # ... but a required field of it has no default for null to reset it to.
    assert problems(PATCH, {"backups": {"keep": None}}) == {"backups.keep": "INVALID_TYPE"}
    assert problems(PATCH, {"backups": None}) == {}
    assert problems(PATCH, {"backups": {"keep": "3"}}) == {"backups.keep": "INVALID_TYPE"}
    view = VIEW_MODEL.model_validate(
        {**GOOD, "domain": "a.example.com", "id": "x", **_defaults(), "backups": {"keep": 3}}
    )
    assert view.model_dump(mode="json")["backups"] == {"keep": 3}


def test_a_field_marked_file_only_inside_a_section_stays_out_of_every_api_shape() -> None:
    for model in (CREATE, PATCH):
        assert problems(model, {**GOOD, "backups": {"keep": 1, "target": "/x"}}) == {
            "backups.target": "UNKNOWN_FIELD"
        }
    view = VIEW_MODEL.model_validate(
        {**GOOD, "domain": "a.example.com", "id": "x", **_defaults()}
        | {"backups": {"keep": 1, "target": "/srv/backups"}}
    )
    assert view.model_dump(mode="json")["backups"] == {"keep": 1}


def _defaults() -> dict[str, Any]:
    return SpecWithMore.model_validate({**GOOD, "domain": "a.example.com"}).model_dump(mode="json")


async def _never(request: Any) -> Any:
    raise AssertionError("not called")


def test_a_field_added_to_the_spec_is_in_the_openapi_document() -> None:
    operations = [
        Operation("POST", "/more", _never, "createMore", "s", {201: VIEW_MODEL}, "t", body=CREATE),
        Operation("PATCH", "/more", _never, "patchMore", "s", {200: VIEW_MODEL}, "t", body=PATCH),
    ]
    schemas = build_openapi(operations)["components"]["schemas"]
    for name in ("MoreCreateBody", "MorePatchBody", "MoreView"):
        assert "sleep_after" in schemas[name]["properties"], name
        assert "backups" in schemas[name]["properties"], name
    assert schemas["BackupsBody"]["required"] == ["keep"]
    assert "required" not in schemas["BackupsPatch"]
    assert set(schemas["BackupsView"]["properties"]) == {"keep"}


# --- the real shapes hold every field of the spec, except where InApi says -----------------

SHAPES = [("create", ServiceCreateBody), ("patch", ServicePatchBody), ("view", Service)]


@pytest.mark.parametrize(("shape", "model"), SHAPES, ids=[shape for shape, _ in SHAPES])
def test_every_field_of_the_spec_is_in_each_shape_unless_marked_out(
    shape: Any, model: type[BaseModel]
) -> None:
    wanted = [name for name, field in ServiceSpec.model_fields.items() if in_shape(field, shape)]
    assert [name for name in model.model_fields if name in ServiceSpec.model_fields] == wanted
    for name, section in {"resources": Resources, "flags": PocketBaseFlags}.items():
        held = section_held(model, name)
        assert held.__name__ == name.capitalize() + {"create": "Body", "patch": "Patch"}.get(
            shape, "View"
        )
        assert list(held.model_fields) == list(section.model_fields)


def section_held(model: type[BaseModel], field: str) -> type[BaseModel]:
    """The section model ``field`` holds, through ``| None``."""
    annotation = model.model_fields[field].annotation
    return next(
        arg
        for arg in (annotation, *get_args(annotation))
        if isinstance(arg, type) and issubclass(arg, BaseModel)
    )


def test_the_api_leaves_out_exactly_the_fields_the_spec_marks() -> None:
    assert "superuser_password_file" not in ServiceCreateBody.model_fields
    assert "superuser_password_file" not in ServicePatchBody.model_fields
    assert "superuser_password_file" not in Service.model_fields
    assert "created_by" in ServiceCreateBody.model_fields
    assert "created_by" not in ServicePatchBody.model_fields
    assert "created_by" in Service.model_fields


def test_the_create_body_requires_what_the_spec_requires_but_the_derived_domain() -> None:
    assert ServiceCreateBody.model_json_schema()["required"] == [
        "project_name",
        "port",
        "pocketbase_version",
    ]
    assert problems(ServiceCreateBody, {**GOOD, "domain": None}) == {}
    assert problems(ServiceCreateBody, {}) == {
        "project_name": "FIELD_REQUIRED",
        "port": "FIELD_REQUIRED",
        "pocketbase_version": "FIELD_REQUIRED",
    }


def test_the_view_of_a_record_is_the_spec_as_stored_with_the_desired_state_it_enforces() -> None:
    spec = parse_spec(
        {
            **GOOD,
            "desired_state": "stopped",
            "superuser_password_file": "/run/secrets/pw",
            "flags": {"origins": ["*"], "dev": True},
            "extra_dirs": ["pb_public", "pb_hooks"],
        },
        "example.com",
    )
    record = ServiceRecord("5e1f0c9a2b7d", spec, "file:/specs/a.yaml", "running", AT, AT, 2)
    status = ServiceStatus("my-app", "active", "a" * 64, "b" * 64, observed_generation=2)
    config = AgentConfig.model_validate({"caddy_tls": False})
    shown = service_view(record, status, config, PublicPorts(http=8080)).model_dump(mode="json")
    stored = spec.model_dump(mode="json", exclude={"superuser_password_file", "secret_env", "app"})
    # The node is where it runs (a record of no node yet: this host's), not null.
    assert {key: shown[key] for key in stored} == {
        **stored,
        "desired_state": "running",
        "node": config.node,
    }
    assert list(shown) == list(Service.model_fields)
    assert shown["flags"]["origins"] == ["*"] and shown["extra_dirs"] == ["pb_hooks", "pb_public"]
    assert (shown["id"], shown["status"], shown["source"], shown["source_file"]) == (
        "5e1f0c9a2b7d",
        "active",
        "file",
        "/specs/a.yaml",
    )
    assert (shown["systemd_config_hash"], shown["url"]) == (
        "aaaaaaaaaaaa",
        "http://my-app.example.com:8080",
    )


def test_the_views_schema_is_closed_and_lists_every_field_as_present() -> None:
    schema = Service.model_json_schema(mode="serialization")
    assert schema["additionalProperties"] is False
    assert schema["required"] == list(Service.model_fields)
    assert list(Service.model_fields)[:3] == ["id", "project_name", "port"]


# --- strict JSON types, closed bodies and the grammar's patterns, field by field -----------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"port": "8080"}, {"port": "INVALID_TYPE"}),
        ({"port": True}, {"port": "INVALID_TYPE"}),
        ({"port": 8080.0}, {"port": "INVALID_TYPE"}),
        ({"port": 80}, {"port": "INVALID_VALUE"}),
        ({"env": {"GOMAXPROCS": 2}}, {"env.GOMAXPROCS": "INVALID_TYPE"}),
        ({"env": {"lower": "x"}}, {"env.lower": "INVALID_VALUE"}),
        ({"env": {"A": "a\u2028b"}}, {"env.A": "INVALID_VALUE"}),
        ({"description": "a\u202eb"}, {"description": "INVALID_VALUE"}),
        ({"description": "a\x85b"}, {"description": "INVALID_VALUE"}),
        ({"created_by": "x" * 255}, {"created_by": "VALUE_TOO_LONG"}),
        ({"project_name": "my-app-"}, {"project_name": "INVALID_VALUE"}),
        ({"pocketbase_version": "v0.29.0"}, {"pocketbase_version": "INVALID_VALUE"}),
        ({"superuser_email": "a@b"}, {"superuser_email": "INVALID_VALUE"}),
        ({"resources": {"memory_max": 512}}, {"resources.memory_max": "INVALID_VALUE"}),
        ({"resources": {"memory_max": "512MB"}}, {"resources.memory_max": "INVALID_VALUE"}),
        ({"resources": {"cpu_quota": "0%"}}, {"resources.cpu_quota": "INVALID_VALUE"}),
        ({"resources": "512M"}, {"resources": "INVALID_TYPE"}),
        ({"flags": {"query_timeout": "60"}}, {"flags.query_timeout": "INVALID_FLAG_VALUE"}),
        ({"flags": {"dev": "true"}}, {"flags.dev": "INVALID_FLAG_VALUE"}),
        ({"flags": {"origins": ["https://a.com/"]}}, {"flags.origins.0": "INVALID_VALUE"}),
        ({"flags": {"http": "x"}}, {"flags.http": "FLAG_NOT_ALLOWED"}),
        ({"extra_dirs": ["pb_data"]}, {"extra_dirs.0": "INVALID_VALUE"}),
        ({"desired_state": "Running"}, {"desired_state": "INVALID_VALUE"}),
        ({"superuser_password_file": "/x"}, {"superuser_password_file": "UNKNOWN_FIELD"}),
        ({"replicas": 3}, {"replicas": "UNKNOWN_FIELD"}),
    ],
)
def test_the_create_body_alone_refuses_what_json_must_not_carry(
    body: dict[str, Any], expected: dict[str, str]
) -> None:
    assert problems(ServiceCreateBody, {**GOOD, **body}) == expected


def test_the_create_body_takes_a_spec_written_in_plain_json() -> None:
    body = {
        **GOOD,
        "domain": "Shop.Example.COM.",
        "description": "Customer records — EU",
        "superuser_email": "admin@example.com",
        "created_by": "ops",
        "desired_state": "stopped",
        "env": {"GOMEMLIMIT": "400MiB"},
        "resources": {"memory_max": "512M", "cpu_quota": "50%"},
        "flags": {"origins": ["*", "https://a.example.com:8443"], "query_timeout": 60},
        "extra_dirs": ["pb_hooks"],
    }
    assert problems(ServiceCreateBody, body) == {}


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({}, {}),
        ({"domain": None, "description": None, "extra_dirs": None}, {}),
        ({"domain": ""}, {}),
        ({"port": None}, {"port": "INVALID_TYPE"}),
        ({"pocketbase_version": None}, {"pocketbase_version": "INVALID_TYPE"}),
        ({"env": {"A": None, "B": "1"}}, {}),
        ({"env": {f"K{i}": "v" for i in range(150)}}, {}),
        ({"resources": None, "flags": {"origins": None}}, {}),
        ({"project_name": "my-app"}, {}),
        ({"port": "9000"}, {"port": "INVALID_TYPE"}),
        ({"env": {"A": 1}}, {"env.A": "INVALID_TYPE"}),
        ({"flags": {"hooks_pool": 0}}, {"flags.hooks_pool": "INVALID_VALUE"}),
        ({"created_by": "me"}, {"created_by": "UNKNOWN_FIELD"}),
        ({"superuser_password_file": "/x"}, {"superuser_password_file": "UNKNOWN_FIELD"}),
    ],
)
def test_the_patch_body_takes_nulls_and_partial_sections_but_still_json_types(
    patch: dict[str, Any], expected: dict[str, str]
) -> None:
    assert problems(ServicePatchBody, patch) == expected


def test_the_bodies_are_held_to_the_grammars_own_patterns() -> None:
    create = properties(ServiceCreateBody)
    assert create["project_name"]["pattern"] == grammar.PROJECT_NAME.json
    assert create["env"]["propertyNames"]["pattern"] == grammar.ENV_NAME.json
    assert create["env"]["additionalProperties"]["pattern"] == grammar.ONE_LINE.json
    assert "patternProperties" not in create["env"]
