"""The pure parts of watches and the local socket: the change feed, event framing, the
peer verdict and the CLI's watch columns. Table tests, no agent."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pockestrator.api import sse
from pockestrator.api.peers import DYNAMIC_UIDS, judge_peer
from pockestrator.client.connection import SOCKET_ENV, TOKEN_ENV, URL_ENV, local_socket
from pockestrator.client.http import SseParser
from pockestrator.client.watch import Columns
from pockestrator.specs.model import ServiceSpec, parse_spec
from pockestrator.specs.store import API_OWNER, Conflict, Store
from pockestrator.specs.store.changes import ChangeFeed

# -- the change feed -----------------------------------------------------------------------


def test_each_change_gets_the_next_version_and_since_gives_each_name_its_latest() -> None:
    feed = ChangeFeed(epoch="e")
    feed.record(["a", "b"])
    feed.record(["a"])
    assert feed.version == 3
    assert feed.since(0) == {"b": 2, "a": 3}
    assert feed.since(2) == {"a": 3}
    assert feed.since(3) == {}


def test_since_is_none_past_what_the_log_kept_or_ahead_of_it() -> None:
    feed = ChangeFeed(kept=2, epoch="e")
    feed.record(["a", "b", "c"])  # version 1 has left the log
    assert feed.since(0) is None
    assert feed.since(1) == {"b": 2, "c": 3}
    assert feed.since(4) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("e-5", 5),
        ("e-0", 0),
        (" e-5 ", 5),
        ("f-5", None),  # another run of the agent
        ("e-", None),
        ("e-x", None),
        ("e--1", None),
        ("e-١٢", None),  # digits, but not ASCII ones
        ("e-" + "9" * 19, None),
        ("", None),
        (None, None),
    ],
)
def test_a_resource_version_is_read_only_from_this_run(
    text: str | None, expected: int | None
) -> None:
    assert ChangeFeed(epoch="e").parse(text) == expected


def test_a_resource_version_names_the_epoch_and_reads_back() -> None:
    feed = ChangeFeed()
    assert feed.parse(feed.resource_version(42)) == 42
    assert ChangeFeed().parse(feed.resource_version(42)) is None  # a new epoch each run


async def test_a_subscriber_is_woken_by_a_write_from_another_thread() -> None:
    feed = ChangeFeed()
    with feed.subscribe() as waiter:
        assert feed.watchers == 1
        assert not await waiter.wait(0.01)
        writer = threading.Thread(target=feed.record, args=(["a"],))
        writer.start()
        assert await waiter.wait(5.0)
        writer.join()
        assert not await waiter.wait(0.01)  # cleared: one change, one wake-up
    assert feed.watchers == 0


async def test_a_write_with_no_names_wakes_nobody() -> None:
    feed = ChangeFeed()
    with feed.subscribe() as waiter:
        feed.record([])
        assert not await waiter.wait(0.01)
    assert feed.version == 0


async def test_wakes_while_a_watcher_is_busy_fold_into_one() -> None:
    feed = ChangeFeed()
    with feed.subscribe() as waiter:
        feed.record(["a"])
        feed.record(["b"])
        await asyncio.sleep(0)
        assert await waiter.wait(1.0)
        assert not await waiter.wait(0.01)
        assert feed.since(0) == {"a": 1, "b": 2}


# -- framing -------------------------------------------------------------------------------


def _parsed(frame: bytes) -> list[tuple[str, str, str | None]]:
    parser = SseParser()
    events = []
    for line in frame.decode().split("\n"):
        event = parser.feed(line)
        if event is not None:
            events.append((event.event, event.data, event.id))
    return events


def test_an_event_frame_reads_back_as_its_name_json_and_id() -> None:
    frame = sse.json_frame("service", {"name": "a\nb", "n": 1}, "e-7")
    assert frame.endswith(b"\n\n")
    assert _parsed(frame) == [("service", '{"name":"a\\nb","n":1}', "e-7")]


def test_an_event_frame_without_an_id_keeps_no_id_line() -> None:
    assert b"id:" not in sse.json_frame("synced", {})
    assert _parsed(sse.json_frame("synced", {})) == [("synced", "{}", None)]


@pytest.mark.parametrize(
    ("event", "event_id"),
    [("", None), ("a\nb", None), ("ok", "x\ny"), ("ok", "x\0"), ("ok", "x\ry")],
)
def test_names_and_ids_that_would_break_the_stream_are_refused(
    event: str, event_id: str | None
) -> None:
    with pytest.raises(ValueError):
        sse.json_frame(event, {}, event_id)


def test_comments_and_retry_are_no_events() -> None:
    assert _parsed(sse.comment("heartbeat") + sse.retry(3000) + sse.comment()) == []
    assert sse.retry(3000) == b"retry: 3000\n\n"


# -- the peer verdict ----------------------------------------------------------------------

USERS = {1000: ("alice", 1000), 1001: ("bob", 1001), 1002: ("carol", 1002)}
GROUPS = {"pockestrator": 990, "alice": 1000, "carol": 1002}
MEMBERS = {"alice": [1000, 990], "bob": [1001], "carol": [1002]}


def _judge(uid: int, group: str = "pockestrator") -> tuple[bool, str]:
    verdict = judge_peer(
        uid,
        group,
        user_of=lambda u: USERS[u],
        group_id=lambda g: GROUPS[g],
        groups_of=lambda name, _gid: MEMBERS[name],
    )
    return verdict.allowed, verdict.reason


@pytest.mark.parametrize(
    ("uid", "group", "allowed", "why"),
    [
        (0, "pockestrator", True, ""),
        (0, "nosuch", True, ""),  # root needs no group
        (1000, "pockestrator", True, ""),  # a supplementary member
        (1002, "carol", True, ""),  # the primary group
        (1001, "pockestrator", False, "neither root nor a member"),
        (1003, "pockestrator", False, "no account"),
        (1000, "nosuch", False, "no group"),
        (DYNAMIC_UIDS.start, "pockestrator", False, "dynamic user"),
        (DYNAMIC_UIDS.stop - 1, "pockestrator", False, "dynamic user"),
    ],
)
def test_only_root_and_the_groups_members_operate_and_never_a_dynamic_user(
    uid: int, group: str, allowed: bool, why: str
) -> None:
    verdict, reason = _judge(uid, group)
    assert verdict is allowed
    assert why in reason


def test_a_dynamic_user_is_refused_even_if_a_group_lists_it() -> None:
    uid = DYNAMIC_UIDS.start + 5
    verdict = judge_peer(
        uid,
        "pockestrator",
        user_of=lambda _u: ("pb-notes", 990),
        group_id=lambda _g: 990,
        groups_of=lambda _n, _g: [990],
    )
    assert not verdict.allowed


def test_dynamic_users_are_systemds_range() -> None:
    assert (DYNAMIC_UIDS.start, DYNAMIC_UIDS.stop - 1) == (61184, 65519)


# -- the CLI's columns ---------------------------------------------------------------------


def test_watch_lines_keep_the_widths_of_the_first_table_and_widen_for_a_longer_cell() -> None:
    columns = Columns(["NAME", "STATUS", "PORT"])
    first = columns.lines([["alpha", "active", 1], ["b", "inactive", 22]], header=True)
    assert first == ["NAME   STATUS    PORT", "alpha  active    1", "b      inactive  22"]
    assert columns.lines([["b", "active", 22]], header=False) == ["b      active    22"]
    assert columns.lines([["a-longer-name", None, True]], header=False) == [
        "a-longer-name  -         yes"
    ]


# -- the store's writes reach the feed -----------------------------------------------------


def test_every_committed_write_to_a_service_or_its_status_is_a_change(tmp_path: Path) -> None:
    store = Store(tmp_path / "state" / "pockestrator.db")
    feed = store.changes

    def changed(step: Callable[[], object]) -> dict[str, int]:
        before = feed.version
        step()
        found = feed.since(before)
        assert found is not None
        return found

    try:
        assert set(changed(lambda: store.create_service(spec("a", 18001)))) == {"a"}
        assert set(changed(lambda: store.replace_spec("a", spec("a", 18002), API_OWNER))) == {"a"}
        assert set(changed(lambda: store.set_desired_state("a", "stopped"))) == {"a"}
        assert set(changed(lambda: store.update_status("a", health_ok=True))) == {"a"}
        assert set(changed(lambda: store.update_statuses({"a": {"pid": 7}, "gone": {}}))) == {"a"}
        # A probe round that finds all as it was moves only times and counters: no change.
        quiet = {"last_health_check": datetime.now(UTC), "health_ok": True, "cpu_percent": 1.5}
        assert changed(lambda: store.update_statuses({"a": quiet})) == {}
        assert changed(lambda: store.update_status("a", pid=7)) == {}
        assert set(changed(lambda: store.update_status("a", health_ok=False))) == {"a"}
        assert set(changed(lambda: store.add_event("a", "drift", "repaired"))) == {"a"}
        synced = changed(lambda: store.sync_file("/specs/b.yaml", [spec("b", 18003)]))
        assert set(synced) == {"b"}
        # The same file again changes nothing, so nobody is told anything.
        assert changed(lambda: store.sync_file("/specs/b.yaml", [spec("b", 18003)])) == {}
        assert set(changed(lambda: store.sync_file("/specs/b.yaml", []))) == {"b"}
        assert set(changed(lambda: store.delete_service("a"))) == {"a"}
        # A refused write is no change.
        store.create_service(spec("c", 18004))
        before = feed.version
        with pytest.raises(Conflict):
            store.create_service(spec("d", 18004))
        assert feed.version == before
    finally:
        store.close()


def spec(name: str, port: int) -> ServiceSpec:
    return parse_spec(
        {"project_name": name, "port": port, "pocketbase_version": "0.29.0"}, "example.test"
    )


# -- the CLI finds the local socket --------------------------------------------------------


@pytest.fixture
def listening(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "api.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    yield path
    server.close()


@pytest.mark.parametrize(
    ("url", "token", "environ"),
    [
        ("http://127.0.0.1:9", None, {}),
        (None, "pks_x", {}),
        (None, None, {URL_ENV: "http://127.0.0.1:9"}),
        (None, None, {TOKEN_ENV: "pks_x"}),
    ],
)
def test_a_url_or_a_token_given_anywhere_means_no_socket(
    listening: Path, url: str | None, token: str | None, environ: dict[str, str]
) -> None:
    assert local_socket(url, token, {SOCKET_ENV: str(listening), **environ}) is None


def test_the_socket_is_used_when_nothing_else_is_given_and_it_is_a_socket(
    listening: Path, tmp_path: Path
) -> None:
    found = local_socket(None, None, {SOCKET_ENV: str(listening), URL_ENV: " "})
    assert found is not None and found.socket == listening
    assert found.where == f"the socket {listening}"
    plain = tmp_path / "not-a-socket"
    plain.write_text("")
    assert local_socket(None, None, {SOCKET_ENV: str(plain)}) is None
    assert local_socket(None, None, {SOCKET_ENV: str(tmp_path / "absent")}) is None
