"""Reading a request: the exact 4xx answer for each way a body or query string is wrong.

``read_json`` and ``parse_query`` are driven through a real aiohttp server on loopback (the
same ``client_max_size`` guard the agent's server sets), the pure parts directly.
"""

from __future__ import annotations

import hashlib
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pockestrator.api.errors import ApiError
from pockestrator.api.inputs import (
    MAX_DEPTH,
    UPLOAD_CHUNK,
    _depth,
    not_an_object,
    parse_json,
    parse_query,
    problems_of,
    read_json,
    read_json_object,
    receive_upload,
    shape_problems,
    too_large,
    validate_model,
)

LIMIT = 64


def answer(exc: ApiError) -> tuple[int, dict[str, object]]:
    return exc.status, exc.body()


def one_problem_body(message: str, code: str, field: str, problem: str | None = None) -> dict:
    said = message if problem is None else problem
    return {
        "id": "",
        "status": "error",
        "message": message,
        "error": message,
        "code": code,
        "errors": [{"field": field, "message": said, "code": code}],
        "details": {field: [said]},
    }


def validation_body(problems: list[tuple[str, str, str]]) -> dict:
    code = problems[0][2] if len(problems) == 1 else "VALIDATION_FAILED"
    details: dict[str, list[str]] = {}
    for field, message, _ in problems:
        details.setdefault(field, []).append(message)
    return {
        "id": "",
        "status": "error",
        "message": "Validation failed",
        "error": "Validation failed",
        "code": code,
        "errors": [{"field": f, "message": m, "code": c} for f, m, c in problems],
        "details": details,
    }


# ---- parse_json: exact answers -------------------------------------------------------------


def test_a_whole_number_written_with_a_fraction_is_an_int_while_a_float_holds_it_exactly() -> None:
    numbers = parse_json(
        b"[8080.0, 1e2, 9007199254740992.0, -9007199254740992.0, 9007199254740994.0]"
    )
    assert [(type(n), n) for n in numbers] == [
        (int, 8080),
        (int, 100),
        (int, 2**53),
        (int, -(2**53)),
        (float, 2.0**53 + 2),
    ]


def test_a_duplicate_key_is_named_in_the_message_and_the_problem() -> None:
    with pytest.raises(ApiError) as caught:
        parse_json(b'{"port": 1, "port": 2}')
    assert answer(caught.value) == (
        400,
        one_problem_body(
            "The key 'port' appears twice in the body", "DUPLICATE_KEY", "port", "appears twice"
        ),
    )


def test_a_long_duplicate_key_is_cut_to_100_characters_in_both_places() -> None:
    key = "k" * 150
    with pytest.raises(ApiError) as caught:
        parse_json(f'{{"{key}": 1, "{key}": 2}}'.encode())
    status, body = answer(caught.value)
    assert status == 400
    assert body["message"] == f"The key '{'k' * 100}' appears twice in the body"
    assert body["errors"] == [
        {"field": "k" * 100, "message": "appears twice", "code": "DUPLICATE_KEY"}
    ]


def test_a_duplicate_key_inside_a_nested_object_is_refused_too() -> None:
    with pytest.raises(ApiError) as caught:
        parse_json(b'{"env": {"A": "1", "A": "2"}}')
    assert answer(caught.value)[1]["errors"] == [
        {"field": "A", "message": "appears twice", "code": "DUPLICATE_KEY"}
    ]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "The body is not valid JSON (line 1, column 1: Expecting value)"),
        (b'{"a": 1', "The body is not valid JSON (line 1, column 8: Expecting ',' delimiter)"),
        (b'{\n  "a": x}', "The body is not valid JSON (line 2, column 8: Expecting value)"),
        (b'{"a": NaN}', "The body is not valid JSON"),
        (b"[Infinity]", "The body is not valid JSON"),
        (b"[-Infinity]", "The body is not valid JSON"),
        (b"\xff\xfe", "The body is not valid JSON"),
        (b'"\xc3"', "The body is not valid JSON"),
    ],
    ids=["empty", "unclosed", "second-line", "nan", "infinity", "minus-infinity", "bom", "utf8"],
)
def test_a_body_that_is_not_json_says_where_when_the_parser_knows(raw: bytes, message: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_json(raw)
    assert answer(caught.value) == (400, one_problem_body(message, "INVALID_JSON", "body"))


def test_utf8_text_is_decoded() -> None:
    assert parse_json('{"name": "café ✓"}'.encode()) == {"name": "café ✓"}


def nested(containers: int) -> bytes:
    """``containers`` lists and objects, alternating, around one number: that many levels
    plus one for the number, as ``_depth`` counts them."""
    text = "1"
    for level in range(containers):
        text = f"[{text}]" if level % 2 else f'{{"a": {text}}}'
    return text.encode()


@pytest.mark.parametrize("containers", [MAX_DEPTH - 2, MAX_DEPTH - 1])
def test_nesting_up_to_the_limit_is_accepted(containers: int) -> None:
    value = parse_json(nested(containers))
    found = 0
    while isinstance(value, (dict, list)):
        value = value["a"] if isinstance(value, dict) else value[0]
        found += 1
    assert (found, value) == (containers, 1)


@pytest.mark.parametrize("containers", [MAX_DEPTH, MAX_DEPTH + 5, 500])
def test_nesting_past_the_limit_is_refused(containers: int) -> None:
    with pytest.raises(ApiError) as caught:
        parse_json(nested(containers))
    assert answer(caught.value) == (
        400,
        one_problem_body(
            f"The body is nested deeper than {MAX_DEPTH} levels",
            "INVALID_JSON",
            "body",
            "nested too deeply",
        ),
    )


@pytest.mark.parametrize(
    ("value", "depth"),
    [
        (1, 1),
        ("x", 1),
        ({}, 1),
        ([], 1),
        ([1], 2),
        ({"a": 1}, 2),
        ({"a": {"b": 1}}, 3),
        ([[1]], 3),
        ({"a": [1]}, 3),
        ([{"a": 1}], 3),
        ({"a": 1, "b": {"c": [1]}}, 4),
        ([1, [2, [3, [4]]]], 5),
    ],
)
def test_depth_counts_each_level_of_lists_and_objects(value: Any, depth: int) -> None:
    assert _depth(value, 100) == depth


def test_depth_stops_once_past_the_limit() -> None:
    assert _depth([[[[[[1]]]]]], 2) == 3
    assert _depth({"a": {"b": {"c": {"d": 1}}}}, 1) == 2


# ---- read_json through a real server -----------------------------------------------------


Reader = Callable[[web.Request], Awaitable[Any]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Reader], Awaitable[TestClient]]]:
    clients: list[TestClient] = []

    async def start(reader: Reader) -> TestClient:
        async def handler(request: web.Request) -> web.Response:
            try:
                value = await reader(request)
            except ApiError as exc:
                status, body = answer(exc)
                return web.json_response({"raised": body}, status=status)
            return web.json_response({"value": value})

        app = web.Application(client_max_size=LIMIT)
        app.router.add_route("*", "/", handler)
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


async def body_of(client: TestClient, **kwargs: Any) -> tuple[int, Any]:
    async with client.post("/", **kwargs) as response:
        return response.status, await response.json()


async def test_both_json_media_types_are_read(serve: Any) -> None:
    client = await serve(lambda request: read_json(request, limit=LIMIT))
    for media_type in ("application/json", "application/merge-patch+json"):
        headers = {"Content-Type": f"{media_type}; charset=utf-8"}
        assert await body_of(client, data=b'{"a": [1]}', headers=headers) == (
            200,
            {"value": {"a": [1]}},
        )


@pytest.mark.parametrize(
    ("media_type", "shown"),
    [
        ("text/plain", "text/plain"),
        ("application/x-www-form-urlencoded", "application/x-www-form-urlencoded"),
        ("application/" + "j" * 200, "application/" + "j" * 88),
    ],
)
async def test_another_media_type_is_a_415_naming_it(
    serve: Any, media_type: str, shown: str
) -> None:
    client = await serve(lambda request: read_json(request, limit=LIMIT))
    status, body = await body_of(client, data=b"{}", headers={"Content-Type": media_type})
    assert (status, body["raised"]) == (
        415,
        one_problem_body(
            "Send the body as application/json",
            "UNSUPPORTED_MEDIA_TYPE",
            "Content-Type",
            f"'{shown}' is not accepted",
        ),
    )


LARGE = one_problem_body(f"The body is larger than {LIMIT} bytes", "PAYLOAD_TOO_LARGE", "body")


async def test_a_body_declared_larger_than_the_limit_is_a_413(serve: Any) -> None:
    client = await serve(lambda request: read_json(request, limit=LIMIT))
    raw = b'{"a": "' + b"x" * LIMIT + b'"}'
    headers = {"Content-Type": "application/json"}
    assert await body_of(client, data=raw, headers=headers) == (413, {"raised": LARGE})


async def test_a_body_exactly_at_the_limit_is_read(serve: Any) -> None:
    client = await serve(lambda request: read_json(request, limit=LIMIT))
    raw = b'{"a": "' + b"x" * (LIMIT - 9) + b'"}'
    assert len(raw) == LIMIT
    headers = {"Content-Type": "application/json"}
    assert await body_of(client, data=raw, headers=headers) == (
        200,
        {"value": {"a": "x" * (LIMIT - 9)}},
    )


async def test_a_chunked_body_past_the_limit_is_a_413_too(serve: Any) -> None:
    client = await serve(lambda request: read_json(request, limit=LIMIT * 4))

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"a": "'
        yield b"x" * LIMIT
        yield b'"}'

    headers = {"Content-Type": "application/json"}
    status, body = await body_of(client, data=chunks(), headers=headers)
    assert (status, body) == (
        413,
        {
            "raised": one_problem_body(
                f"The body is larger than {LIMIT * 4} bytes", "PAYLOAD_TOO_LARGE", "body"
            )
        },
    )


async def test_a_body_that_is_not_an_object_is_refused_where_one_is_wanted(serve: Any) -> None:
    client = await serve(lambda request: read_json_object(request, limit=LIMIT))
    headers = {"Content-Type": "application/json"}
    assert await body_of(client, data=b'{"a": 1}', headers=headers) == (200, {"value": {"a": 1}})
    assert await body_of(client, data=b"[1]", headers=headers) == (
        400,
        {"raised": validation_body([("body", "must be a JSON object", "NOT_A_MAPPING")])},
    )


def test_too_large_names_the_limit() -> None:
    assert answer(too_large(10)) == (
        413,
        one_problem_body("The body is larger than 10 bytes", "PAYLOAD_TOO_LARGE", "body"),
    )


def test_not_an_object_names_the_field() -> None:
    assert answer(not_an_object("spec.env")) == (
        400,
        validation_body([("spec.env", "must be a JSON object", "NOT_A_MAPPING")]),
    )


# ---- query strings ---------------------------------------------------------------------------


class Query(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    limit: int = 10
    status: str | None = None


async def query_of(client: TestClient, query: str) -> tuple[int, Any]:
    async with client.get("/?" + query) as response:
        return response.status, await response.json()


async def answer_query(request: web.Request) -> Any:
    return parse_query(request, Query).model_dump()


async def test_each_known_parameter_is_read_once(serve: Any) -> None:
    client = await serve(answer_query)
    assert await query_of(client, "") == (200, {"value": {"limit": 10, "status": None}})
    assert await query_of(client, "limit=3&status=active") == (
        200,
        {"value": {"limit": 3, "status": "active"}},
    )


async def test_a_parameter_given_twice_is_refused_by_name(serve: Any) -> None:
    client = await serve(answer_query)
    assert await query_of(client, "status=a&status=b&limit=1&limit=2") == (
        400,
        {
            "raised": validation_body(
                [
                    ("limit", "given more than once", "INVALID_VALUE"),
                    ("status", "given more than once", "INVALID_VALUE"),
                ]
            )
        },
    )
    assert await query_of(client, "status=a&status=a") == (
        400,
        {"raised": validation_body([("status", "given more than once", "INVALID_VALUE")])},
    )


async def test_a_bad_query_value_is_reported_on_its_parameter(serve: Any) -> None:
    client = await serve(answer_query)
    status, body = await query_of(client, "limit=many")
    assert status == 400
    assert [(p["field"], p["code"]) for p in body["raised"]["errors"]] == [
        ("limit", "INVALID_TYPE")
    ]


# ---- models: problems with stable codes -------------------------------------------------------


class Shapes(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: Annotated[str, Field(pattern=r"^[a-z]+$")] = "a"
    note: Annotated[str, Field(min_length=2)] = "ab"
    env: dict[str, str] = {}
    tags: list[str] = []
    port: int = 1


@pytest.mark.parametrize(
    ("data", "field", "code"),
    [
        ({"name": "A1"}, "name", "INVALID_VALUE"),
        ({"note": "x"}, "note", "INVALID_VALUE"),
        ({"env": ["x"]}, "env", "INVALID_TYPE"),
        ({"tags": "x"}, "tags", "INVALID_VALUE"),
        ({"port": "1"}, "port", "INVALID_TYPE"),
        ({"other": 1}, "other", "UNKNOWN_FIELD"),
    ],
    ids=["pattern", "too-short", "not-a-dict", "not-a-list", "wrong-type", "unknown"],
)
def test_each_pydantic_error_kind_gets_its_stable_code(
    data: dict[str, Any], field: str, code: str
) -> None:
    problems = shape_problems(Shapes, data)
    assert [(p.field, str(p.code)) for p in problems] == [(field, code)]
    assert all(p.message for p in problems)


class Flags(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: Annotated[str, Field(pattern=r"^[a-z]+$")] = "a"
    headers: dict[str, str] = {}
    names: list[str] = []
    timeout: int = 1


class WithFlags(BaseModel):
    """A section the spec gives its own code (``flags``: INVALID_FLAG_VALUE)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    flags: Flags = Flags()


@pytest.mark.parametrize(
    ("flags", "code"),
    [
        ({"headers": ["x"]}, "INVALID_TYPE"),
        ({"names": "x"}, "INVALID_VALUE"),
        ({"name": "A"}, "INVALID_VALUE"),
        ({"timeout": "1"}, "INVALID_FLAG_VALUE"),
    ],
    ids=["not-a-dict", "not-a-list", "pattern", "other-kinds-keep-the-section-code"],
)
def test_the_api_codes_win_over_a_sections_code(flags: dict[str, Any], code: str) -> None:
    problems = shape_problems(WithFlags, {"flags": flags})
    assert [(p.field, str(p.code)) for p in problems] == [(f"flags.{next(iter(flags))}", code)]


def test_problems_keep_pydantics_message_and_the_prefix() -> None:
    with pytest.raises(ValidationError) as caught:
        Shapes.model_validate({"note": "x"})
    problems = problems_of(caught.value, "spec.")
    assert [(p.field, p.message, str(p.code)) for p in problems] == [
        ("spec.note", "String should have at least 2 characters", "INVALID_VALUE")
    ]


def test_a_model_that_accepts_the_data_has_no_problems() -> None:
    assert shape_problems(Shapes, {"name": "ok", "tags": ["a"]}) == []


def test_a_model_is_validated_with_its_field_prefix() -> None:
    assert validate_model(Shapes, {"port": 2}).port == 2
    with pytest.raises(ApiError) as caught:
        validate_model(Shapes, {"port": "2", "note": "x"}, prefix="spec.")
    status, body = answer(caught.value)
    assert status == 400
    assert [(e["field"], e["code"]) for e in body["errors"]] == [  # type: ignore[index,union-attr]
        ("spec.note", "INVALID_VALUE"),
        ("spec.port", "INVALID_TYPE"),
    ]


@pytest.mark.parametrize(
    ("prefix", "field"),
    [
        ("", "body"),
        ("spec.", "spec"),
        ("spec.backups.", "spec.backups"),
        ("env.MAX.", "env.MAX"),
        (".x.", ".x"),
    ],
)
def test_data_that_is_not_an_object_is_named_by_its_prefix(prefix: str, field: str) -> None:
    with pytest.raises(ApiError) as caught:
        validate_model(Shapes, ["x"], prefix=prefix)
    assert answer(caught.value) == (
        400,
        validation_body([(field, "must be a JSON object", "NOT_A_MAPPING")]),
    )


async def _chunks_of(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_an_upload_is_streamed_into_a_new_root_only_file_with_its_size_and_sha256(
    serve: Any, tmp_path: Path
) -> None:
    target = tmp_path / "upload.zip"
    client = await serve(lambda request: receive_upload(request, target, LIMIT * 4))
    data = b"PK" + b"z" * (LIMIT * 4 - 2)  # past the JSON reader's limit, at the upload's
    status, body = await body_of(client, data=_chunks_of(data[:100], data[100:]))
    assert (status, body) == (200, {"value": [len(data), hashlib.sha256(data).hexdigest()]})
    assert target.read_bytes() == data
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


async def test_an_upload_of_many_reads_is_counted_whole_against_its_limit(
    serve: Any, tmp_path: Path
) -> None:
    data = b"z" * (UPLOAD_CHUNK * 2 + 10)  # more than one read: no chunk alone is past it
    fits = tmp_path / "fits.zip"
    client = await serve(lambda request: receive_upload(request, fits, len(data)))
    status, body = await body_of(client, data=data)
    assert (status, body) == (200, {"value": [len(data), hashlib.sha256(data).hexdigest()]})
    assert fits.read_bytes() == data
    fits.unlink()
    over = tmp_path / "over.zip"
    client = await serve(lambda request: receive_upload(request, over, len(data) - 1))
    status, _ = await body_of(client, data=data)
    assert status == 413
    assert list(tmp_path.iterdir()) == []


class BodyWhoseFileGoes:
    """A request's body whose upload file someone removes after the first chunk."""

    def __init__(self, path: Path) -> None:
        self.content = self
        self.path = path
        self.parts = [b"PK", b"x" * LIMIT]

    def iter_chunked(self, size: int) -> BodyWhoseFileGoes:
        return self

    def __aiter__(self) -> BodyWhoseFileGoes:
        return self

    async def __anext__(self) -> bytes:
        if len(self.parts) == 1:
            self.path.unlink()
        return self.parts.pop(0)


async def test_an_upload_whose_file_went_meanwhile_still_answers_its_own_refusal(
    tmp_path: Path,
) -> None:
    target = tmp_path / "upload.zip"
    request: Any = BodyWhoseFileGoes(target)
    with pytest.raises(ApiError) as refused:
        await receive_upload(request, target, LIMIT)
    assert answer(refused.value) == (413, LARGE)


async def test_an_upload_past_its_limit_is_refused_and_its_file_removed(
    serve: Any, tmp_path: Path
) -> None:
    target = tmp_path / "upload.zip"
    client = await serve(lambda request: receive_upload(request, target, LIMIT))
    status, body = await body_of(client, data=_chunks_of(b"x" * LIMIT, b"y"))
    assert (status, body) == (413, {"raised": LARGE})
    assert list(tmp_path.iterdir()) == []


async def test_an_upload_past_its_limit_answers_the_callers_own_refusal(
    serve: Any, tmp_path: Path
) -> None:
    def refusal(limit: int) -> ApiError:
        return too_large(limit * 1000)

    target = tmp_path / "upload.tar.gz"
    client = await serve(lambda request: receive_upload(request, target, 3, refusal))
    status, body = await body_of(client, data=_chunks_of(b"abcd"))
    assert (status, body["raised"]["message"]) == (413, "The body is larger than 3000 bytes")
    assert not target.exists()


async def test_an_upload_never_writes_through_a_name_that_is_there_already(
    serve: Any, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(b"kept")
    target = tmp_path / "upload.zip"
    target.symlink_to(elsewhere)

    async def reader(request: web.Request) -> str:
        try:
            await receive_upload(request, target, LIMIT)
        except FileExistsError:
            return "refused"
        return "written"

    client = await serve(reader)
    assert await body_of(client, data=b"new") == (200, {"value": "refused"})
    assert elsewhere.read_bytes() == b"kept"
