"""The API's shapes of a spec, derived from ``ServiceSpec``'s fields: the create body, the
merge-patch body and the view.

``ServiceSpec`` is lenient where YAML needs it (a port in quotes is a port) and its parsers
give the precise codes; the API promises more: JSON types as documented (a port is a
number), no unknown fields, and an OpenAPI document that states every constraint. Each
shape here is the spec's fields with the parsers dropped and the constraints kept (see
``specs.values``), so a field added to the spec reaches every shape, and the document,
with no edit here:

- **create**: strict; the spec's defaults; a ``Derived`` field (``domain``) may be left
  out, null or empty (``""``), since ``parse_spec`` fills it in (in a patch too).
- **patch**: strict; every field optional and nullable (null resets it), recursively, as
  RFC 7396 merges sections, but a required field with nothing to reset it to (``port``,
  ``pocketbase_version``, ``project_name``) may only be left out, not null; a mapping's
  values may be null (null removes an entry), and a mapping's size bound is not checked on
  the patch (nulls remove entries), only on the merged spec.
- **view**: what an answer shows; every field present. It is filled from the whole spec
  dump, so fields the API does not show are dropped on the way in; its schema is closed,
  since what is sent is exactly its fields.

``InApi`` marks leave a field out of a shape. Sections (nested models such as
``resources``) get a model per shape, named after their field: ``ResourcesBody``,
``ResourcesPatch``, ``ResourcesView``. Request bodies are checked after ``parse_spec``
(``service_routes.checks.checked_spec``), which reports a field's grammar code first.
"""

from __future__ import annotations

import functools
import types
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from annotated_types import MaxLen, MinLen
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    WrapValidator,
    create_model,
)
from pydantic.fields import FieldInfo

from pockestrator.specs.values.parsers import Derived, InApi

Shape = Literal["create", "patch", "view"]

STRICT = ConfigDict(extra="forbid", strict=True)
# A view validates what the handler hands it and ignores fields the API does not show;
# it serializes only its own fields, which the closed schema says.
VIEW = ConfigDict(extra="ignore", json_schema_extra={"additionalProperties": False})

_PARSERS = (BeforeValidator, AfterValidator, PlainValidator, WrapValidator)
_SUFFIXES: dict[Shape, str] = {"create": "Body", "patch": "Patch", "view": "View"}
Base = TypeVar("Base", bound=BaseModel)


def in_shape(field: FieldInfo, shape: Shape) -> bool:
    """Whether ``field`` is part of ``shape`` (``InApi`` says; unmarked fields are)."""
    marks = [mark for mark in field.metadata if isinstance(mark, InApi)]
    return all(getattr(mark, shape) for mark in marks)


def _constraints(metadata: list[Any]) -> list[Any]:
    """What JSON Schema states of a value: its metadata without parsers and marks."""
    return [item for item in metadata if not isinstance(item, (*_PARSERS, InApi, Derived))]


def _json_type(annotation: Any, shape: Shape, name: str) -> Any:
    """``annotation`` as JSON carries it: parsers dropped, tuples as lists, sections as the
    shape's model of them (named after the field ``name``)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        base, *metadata = args
        kept = _constraints(metadata)
        inner = _json_type(base, shape, name)
        return Annotated[(inner, *kept)] if kept else inner
    if origin is Union or origin is types.UnionType:
        return Union[tuple(_json_type(arg, shape, name) for arg in args)]  # noqa: UP007
    if origin is dict:
        key, value = (_json_type(arg, shape, name) for arg in args)
        return dict[key, value | None] if shape == "patch" else dict[key, value]  # type: ignore[valid-type]
    if origin is tuple or origin is list:
        if origin is tuple and (len(args) != 2 or args[1] is not Ellipsis):
            raise TypeError(f"{name}: only tuple[X, ...] has a JSON shape (an array)")
        # A merge patch replaces an array whole, so its items are written out in full.
        item_shape: Shape = "create" if shape == "patch" else shape
        return list[_json_type(args[0], item_shape, name)]  # type: ignore[misc]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return section_model(annotation, shape, name)
    return annotation


def _keys_in_property_names(schema: dict[str, Any]) -> None:
    """Put a mapping's key pattern in ``propertyNames``, which binds every key; pydantic
    writes ``patternProperties``, which leaves keys that do not match it unchecked."""
    for branch in schema.get("anyOf", [schema]):
        patterns = branch.pop("patternProperties", None)
        if patterns:
            ((pattern, values),) = patterns.items()
            branch["propertyNames"] = {**branch.get("propertyNames", {}), "pattern": pattern}
            branch["additionalProperties"] = values


def _left_out_not_null(schema: dict[str, Any]) -> None:
    """A patch field that may be left out, but has no default to be reset to by null."""
    _keys_in_property_names(schema)
    schema.pop("default", None)


def _field(name: str, field: FieldInfo, shape: Shape) -> tuple[Any, FieldInfo]:
    """One spec field as a field of ``shape``: its type, default and documentation."""
    if field.json_schema_extra is not None:
        raise TypeError(f"{name}: state constraints with Field(...) on its type instead")
    annotation = _json_type(field.annotation, shape, name)
    constraints = _constraints(field.metadata)
    if shape == "patch" and get_origin(field.annotation) is dict:
        constraints = [c for c in constraints if not isinstance(c, (MaxLen, MinLen))]
    if constraints:
        annotation = Annotated[(annotation, *constraints)]
    docs: dict[str, Any] = {
        "description": field.description,
        "examples": field.examples,
        "json_schema_extra": _keys_in_property_names,
    }
    derived = any(isinstance(mark, Derived) for mark in field.metadata)
    if derived and shape != "view":
        annotation = annotation | Literal[""]
    if shape == "patch" and field.is_required() and not derived:
        return annotation, Field(default=None, **{**docs, "json_schema_extra": _left_out_not_null})
    if shape == "patch" or (shape == "create" and derived):
        return annotation | None, Field(default=None, **docs)
    if shape == "view" or field.is_required():
        return annotation, Field(**docs)
    factory = field.default_factory
    if isinstance(factory, type) and issubclass(factory, BaseModel):
        return annotation, Field(default_factory=section_model(factory, shape, name), **docs)
    if factory is not None:
        return annotation, Field(default_factory=factory, **docs)
    return annotation, Field(default=field.default, **docs)


def _fields(model: type[BaseModel], shape: Shape) -> dict[str, Any]:
    return {
        name: _field(name, field, shape)
        for name, field in model.model_fields.items()
        if in_shape(field, shape)
    }


@functools.cache
def section_model(model: type[BaseModel], shape: Shape, field: str) -> type[BaseModel]:
    """The ``shape`` of a section ``model`` held by ``field``; made once, so that every
    body that holds it refers to one schema."""
    stem = "".join(part.capitalize() for part in field.split("_"))
    return create_model(
        stem + _SUFFIXES[shape],
        __config__=VIEW if shape == "view" else STRICT,
        __doc__=model.__doc__,
        __module__=__name__,
        **_fields(model, shape),
    )


def request_body(
    model: type[BaseModel], shape: Literal["create", "patch"], name: str, doc: str
) -> type[BaseModel]:
    """The strict create or patch body of ``model`` (``ServiceSpec``), named ``name``."""
    return create_model(
        name, __config__=STRICT, __doc__=doc, __module__=__name__, **_fields(model, shape)
    )


def spec_view(model: type[BaseModel], base: type[Base], name: str) -> type[Base]:
    """The view of ``model``'s fields after ``base``'s (whose config it keeps: ``VIEW``)."""
    return create_model(name, __base__=base, __module__=__name__, **_fields(model, "view"))
