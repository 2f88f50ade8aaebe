"""Reading what clients send: JSON bodies and query strings, all untrusted.

Every failure becomes a 4xx ``ApiError`` with ``field`` and ``code`` for each problem; none
can escape as a 500. JSON is parsed strictly: duplicate keys, ``NaN``/``Infinity`` and
absurd nesting are refused, since a second ``"port"`` key silently winning is how two
parsers come to disagree about one request. A number is what JSON Schema says it is:
``8080.0`` is the integer 8080, as the document's ``"type": "integer"`` promises.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from pockestrator.api.errors import ApiError, Problem, field_error, validation_failed
from pockestrator.specs.errors import ErrorCode
from pockestrator.specs.model import issues_from_validation_error

Model = TypeVar("Model", bound=BaseModel)

JSON_TYPES = ("application/json", "application/merge-patch+json")
MAX_DEPTH = 32
UPLOAD_CHUNK = 256 * 1024


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# Integers up to here are exact as floats; beyond, a number written with a fraction or an
# exponent stays a float (every integer of a body has a far smaller bound anyway).
_EXACT_INTEGER = 2**53


def _number(text: str) -> float | int:
    """A JSON number with a fraction or exponent: an int when its value is whole."""
    value = float(text)
    if value.is_integer() and abs(value) <= _EXACT_INTEGER:
        return int(value)
    return value


def _depth(value: Any, limit: int) -> int:
    """Nesting depth, stopping as soon as it passes ``limit``."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((child, level + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, level + 1) for child in item)
    return deepest


def parse_json(raw: bytes) -> Any:
    """Strict JSON: UTF-8, no duplicate keys, no NaN, bounded nesting."""
    try:
        text = raw.decode("utf-8")
        value = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constants,
            parse_float=_number,
        )
    except _DuplicateKey as exc:
        raise ApiError(
            400,
            ErrorCode.DUPLICATE_KEY,
            f"The key '{exc.key[:100]}' appears twice in the body",
            [Problem(exc.key[:100], "appears twice", ErrorCode.DUPLICATE_KEY)],
        ) from None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        message = "The body is not valid JSON"
        if isinstance(exc, json.JSONDecodeError):
            message += f" (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        raise field_error(400, ErrorCode.INVALID_JSON, "body", message) from None
    if _depth(value, MAX_DEPTH) > MAX_DEPTH:
        raise ApiError(
            400,
            ErrorCode.INVALID_JSON,
            f"The body is nested deeper than {MAX_DEPTH} levels",
            [Problem("body", "nested too deeply", ErrorCode.INVALID_JSON)],
        )
    return value


async def read_json(request: web.Request, *, limit: int) -> Any:
    """The request's JSON body; 415 for another media type, 413 past ``limit`` bytes."""
    media_type = request.content_type
    if media_type not in JSON_TYPES:
        raise ApiError(
            415,
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            "Send the body as application/json",
            [
                Problem(
                    "Content-Type",
                    f"'{media_type[:100]}' is not accepted",
                    ErrorCode.UNSUPPORTED_MEDIA_TYPE,
                )
            ],
        )
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large(limit) from None
    return parse_json(raw)


def too_large(limit: int) -> ApiError:
    return field_error(
        413, ErrorCode.PAYLOAD_TOO_LARGE, "body", f"The body is larger than {limit} bytes"
    )


async def receive_upload(
    request: web.Request,
    path: Path,
    limit: int,
    refusal: Callable[[int], ApiError] = too_large,
) -> tuple[int, str]:
    """The body streamed into ``path``, a new root-only file, and its size and SHA-256 (what
    tells a retried upload from another, ``api.idempotency``). Past ``limit`` bytes it is
    ``refusal(limit)`` (a 413); on any failure the file is removed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    size = 0
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in request.content.iter_chunked(UPLOAD_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise refusal(limit)
                digest.update(chunk)
                await asyncio.to_thread(out.write, chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return size, digest.hexdigest()


def problems_of(exc: ValidationError, prefix: str = "") -> list[Problem]:
    """pydantic errors as problems with the spec's stable codes."""
    problems = []
    kinds = [error["type"] for error in exc.errors(include_url=False)]
    for issue, kind in zip(issues_from_validation_error(exc, prefix), kinds, strict=True):
        code = issue.code
        if kind in ("string_pattern_mismatch", "string_too_short", "dict_type", "list_type"):
            code = ErrorCode.INVALID_VALUE if kind != "dict_type" else ErrorCode.INVALID_TYPE
        problems.append(Problem(issue.field, issue.message, code))
    return problems


def not_an_object(field: str = "body") -> ApiError:
    """400 ``NOT_A_MAPPING``: ``field`` (the body, unless said) is not a JSON object."""
    return validation_failed([Problem(field, "must be a JSON object", ErrorCode.NOT_A_MAPPING)])


async def read_json_object(request: web.Request, *, limit: int) -> Mapping[str, Any]:
    """The request's JSON body (``read_json``), which must be an object."""
    body = await read_json(request, limit=limit)
    if not isinstance(body, Mapping):
        raise not_an_object()
    return body


def validate_model(model: type[Model], data: Any, *, prefix: str = "") -> Model:
    """``data`` as ``model``; 400 with every problem otherwise."""
    if not isinstance(data, Mapping):
        raise not_an_object(prefix.rstrip(".") or "body")
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        raise validation_failed(problems_of(exc, prefix)) from None


def shape_problems(model: type[BaseModel], data: Mapping[str, Any]) -> list[Problem]:
    """What the strict ``model`` refuses in ``data`` (empty when it accepts it)."""
    try:
        model.model_validate(dict(data))
    except ValidationError as exc:
        return problems_of(exc)
    return []


def parse_query(request: web.Request, model: type[Model]) -> Model:
    """The query string as ``model``, each parameter at most once (the server middleware has
    already refused parameters the operation does not know)."""
    values: dict[str, str] = {}
    problems = []
    for name in model.model_fields:
        given = request.query.getall(name, [])
        if len(given) > 1:
            problems.append(Problem(name, "given more than once", ErrorCode.INVALID_VALUE))
        elif given:
            values[name] = given[0]
    if problems:
        raise validation_failed(problems)
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise validation_failed(problems_of(exc)) from None
