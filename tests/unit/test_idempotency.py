"""Idempotency keys: the store's invariants (specs/store/idempotency.py) and the pure parts
of api/idempotency.py, each named by what it proves."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from pockestrator.api import idempotency
from pockestrator.api.errors import ApiError
from pockestrator.api.paging import page_of
from pockestrator.api.routing import PREFIX, etag_of, if_match_holds, location_of
from pockestrator.specs.store import Store
from tests.testbed.store_backends import StoreBackend


class SteppedClock:
    def __init__(self) -> None:
        self.moment = datetime(2026, 12, 2, 7, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.moment

    def monotonic(self) -> float:
        return self.moment.timestamp()


@pytest.fixture
def clock() -> SteppedClock:
    return SteppedClock()


@pytest.fixture
def store(store_backend: StoreBackend, clock: SteppedClock) -> Iterator[Store]:
    opened = Store(store_backend.open(), clock=clock)
    yield opened
    opened.close()


def test_the_first_claim_wins_and_a_second_sees_it_pending(store: Store) -> None:
    assert store.claim_idempotency("k", "body", 60).state == "new"
    assert store.claim_idempotency("k", "body", 60).state == "pending"


def test_a_finished_key_answers_its_stored_answer_to_the_same_body(store: Store) -> None:
    store.claim_idempotency("k", "body", 60)
    store.finish_idempotency("k", 201, b"sealed")
    claim = store.claim_idempotency("k", "body", 60)
    assert (claim.state, claim.status, claim.sealed) == ("replay", 201, b"sealed")


def test_another_body_with_the_key_is_a_mismatch_without_the_answer(store: Store) -> None:
    store.claim_idempotency("k", "body", 60)
    store.finish_idempotency("k", 201, b"sealed")
    claim = store.claim_idempotency("k", "other body", 60)
    assert (claim.state, claim.sealed) == ("mismatch", None)


def test_after_the_window_the_key_is_free_and_its_answer_gone(
    store: Store, clock: SteppedClock
) -> None:
    store.claim_idempotency("k", "body", 60)
    store.finish_idempotency("k", 201, b"sealed")
    clock.moment += timedelta(seconds=61)
    assert store.claim_idempotency("k", "body", 60).state == "new"
    rows = store._database.read("SELECT sealed FROM idempotency_keys WHERE lookup = 'k'")
    assert [row["sealed"] for row in rows] == [None]


def test_a_released_key_can_be_claimed_again_but_a_finished_one_is_not_released(
    store: Store,
) -> None:
    store.claim_idempotency("k", "body", 60)
    store.release_idempotency("k")
    assert store.claim_idempotency("k", "body", 60).state == "new"
    store.finish_idempotency("k", 200, b"x")
    store.release_idempotency("k")
    assert store.claim_idempotency("k", "body", 60).state == "replay"


def test_a_sealed_answer_opens_only_with_its_key_and_caller() -> None:
    answer: dict[str, object] = {"status": 201, "headers": {}, "body": '{"password": "s3cret"}'}
    sealed = idempotency.seal("key-1", "token:a", answer)
    assert b"s3cret" not in sealed
    assert idempotency.unseal("key-1", "token:a", sealed) == answer
    assert idempotency.unseal("key-2", "token:a", sealed) is None
    assert idempotency.unseal("key-1", "token:b", sealed) is None
    assert idempotency.seal("key-1", "token:a", answer) != sealed  # a fresh salt and nonce


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        (None, None),
        ("3f2c9a1e-0b7d-4c1a-9e2f-5d6b7a8c9d0e", "3f2c9a1e-0b7d-4c1a-9e2f-5d6b7a8c9d0e"),
        ("!~", "!~"),
        ("x" * 255, "x" * 255),
    ],
)
def test_usable_keys_are_kept(value: str | None, kept: str | None) -> None:
    assert idempotency.check_key(value) == kept


@pytest.mark.parametrize("value", ["", "a b", "x" * 256, "caf\u00e9", "tab\there", "nl\n"])
def test_unusable_keys_are_a_400_naming_the_header(value: str) -> None:
    with pytest.raises(ApiError) as caught:
        idempotency.check_key(value)
    assert caught.value.status == 400
    assert [p.field for p in caught.value.problems] == ["Idempotency-Key"]


def test_the_lookup_depends_on_caller_method_path_and_key_and_hides_the_key() -> None:
    base = idempotency.lookup_of("token:a", "POST", "/x", "key")
    assert "key" not in base and len(base) == 64
    others = {
        idempotency.lookup_of("token:b", "POST", "/x", "key"),
        idempotency.lookup_of("token:a", "PUT", "/x", "key"),
        idempotency.lookup_of("token:a", "POST", "/y", "key"),
        idempotency.lookup_of("token:a", "POST", "/x", "key2"),
    }
    assert base not in others and len(others) == 4


def test_the_body_hash_tells_query_media_type_and_body_apart() -> None:
    same = idempotency.body_hash("wait=true", "application/json", b"{}")
    assert same == idempotency.body_hash("wait=true", "application/json", b"{}")
    assert same != idempotency.body_hash("", "application/json", b"{}")
    assert same != idempotency.body_hash("wait=true", "text/plain", b"{}")
    assert same != idempotency.body_hash("wait=true", "application/json", b"{ }")
    # The parts are length-prefixed: moving a character between them changes the hash.
    assert idempotency.body_hash("ab", "c", b"") != idempotency.body_hash("a", "bc", b"")


@pytest.mark.parametrize(
    ("template", "body", "expected"),
    [
        ("/services/{id}", {"id": "abc"}, "/services/abc"),
        ("/tokens/{id}", {"id": "a/b"}, "/tokens/a%2Fb"),
        (
            "/services/{service_id}/operations/{operation.id}",
            {"service_id": "s1", "operation": {"id": 7}},
            "/services/s1/operations/7",
        ),
        ("/services/{id}", {}, None),
        ("/services/{id}", None, None),
        ("/services/{operation.id}", {"operation": None}, None),
        ("/services/{id}", {"id": {"nested": 1}}, None),
    ],
)
def test_a_location_comes_from_the_answers_fields_or_not_at_all(
    template: str, body: object, expected: str | None
) -> None:
    assert location_of(template, body) == (PREFIX + expected if expected else None)


@pytest.mark.parametrize(
    ("header", "generation", "holds"),
    [
        (None, 3, True),
        ("*", 3, True),
        ('"3"', 3, True),
        ('"2"', 3, False),
        ('"2", "3"', 3, True),
        ('W/"3"', 3, False),
        ("3", 3, False),
        ("", 3, False),
    ],
)
def test_if_match_is_a_strong_comparison_with_the_generation(
    header: str | None, generation: int, holds: bool
) -> None:
    assert if_match_holds(header, generation) is holds
    assert etag_of(generation) == f'"{generation}"'


@pytest.mark.parametrize(
    ("count", "limit", "cursor", "page", "after"),
    [
        (5, 2, None, [0, 1], "2"),
        (5, 2, "2", [2, 3], "4"),
        (5, 2, "4", [4], None),
        (4, 2, "2", [2, 3], None),
        (0, 2, None, [], None),
        (3, 2, "9", [], None),
    ],
)
def test_a_page_of_a_list_and_the_cursor_of_the_next(
    count: int, limit: int, cursor: str | None, page: list[int], after: str | None
) -> None:
    assert page_of(list(range(count)), limit, cursor) == (page, after)


def test_a_call_keeps_a_2xx_answer_and_frees_its_key_after_a_failure(store: Store) -> None:
    from aiohttp import web

    def call() -> idempotency.Call:
        return idempotency.Call(store, 60, "key", "token:a", lookup="L")

    failed = call()
    assert failed.claim("body") is None
    failed.settle(None)  # the handler raised: the key is free again
    first = call()
    assert first.claim("body") is None
    first.settle(
        web.json_response({"password": "s3cret"}, status=201, headers={"Location": "/x/1"})
    )
    replayed = call().claim("body")
    assert replayed is not None and replayed.status == 201
    assert replayed.body == b'{"password": "s3cret"}'
    assert replayed.headers["Location"] == "/x/1"
    assert replayed.headers["Idempotent-Replayed"] == "true"
    with pytest.raises(ApiError) as caught:
        call().claim("another body")
    assert caught.value.status == 422


def test_a_refused_answer_is_not_kept(store: Store) -> None:
    from aiohttp import web

    refused = idempotency.Call(store, 60, "key", "token:a", lookup="L")
    assert refused.claim("body") is None
    refused.settle(web.json_response({"code": "PORT_IN_USE"}, status=400))
    assert store.claim_idempotency("L", "body", 60).state == "new"
