"""The YAML spec directory, watched for real (inotify), measured through its public interface.

Each test writes, edits, breaks, fixes and deletes real files and waits for the source's
``on_change`` callback (no sleeps), then reads the desired state from the store.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import hypothesis
import pytest
from hypothesis import strategies as st

from pockestrator.specs.errors import ErrorCode
from pockestrator.specs.store import Store
from pockestrator.specs.yamldir import SpecDirectory, parse_spec_file, read_spec_file

GOOD = """\
project_name: {name}
port: {port}
pocketbase_version: "0.29.0"
"""


class Watched:
    """A running SpecDirectory plus a queue of the change notifications it sent."""

    def __init__(self, directory: Path, store: Store) -> None:
        self.directory = directory
        self.store = store
        self.notifications: asyncio.Queue[set[str]] = asyncio.Queue()
        self.source = SpecDirectory(directory, store, "example.test", self.notifications.put_nowait)
        self.task: asyncio.Task[None] | None = None

    async def next_change(self, timeout: float = 5.0) -> set[str]:
        return await asyncio.wait_for(self.notifications.get(), timeout)

    async def until(self, predicate: object, timeout: float = 5.0) -> None:
        """Wait for notifications until ``predicate()`` holds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():  # type: ignore[operator]
            await asyncio.wait_for(self.notifications.get(), max(0.01, deadline - loop.time()))

    def specs(self) -> dict[str, int]:
        return {record.name: record.spec.port for record in self.store.list_services()[0]}

    def issues(self, name: str) -> list[tuple[str, ErrorCode, int | None]]:
        path = str(self.directory / name)
        return [(i.field, i.code, i.line) for i in self.store.file_issues().get(path, [])]


@pytest.fixture
async def watched(tmp_path: Path) -> AsyncIterator[Watched]:
    directory = tmp_path / "specs"
    directory.mkdir()
    (directory / "before.yaml").write_text(GOOD.format(name="before", port=9100))
    state = Watched(directory, Store(tmp_path / "db.sqlite"))
    task = state.task = asyncio.create_task(state.source.run())
    await asyncio.wait_for(state.source.wait_ready(), 5)
    assert await state.next_change() == {"before"}  # the startup scan's own notification
    yield state
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_startup_scan_picks_up_existing_files(watched: Watched) -> None:
    assert watched.specs() == {"before": 9100}


async def test_a_dropped_file_is_picked_up_quickly(watched: Watched) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    (watched.directory / "new.yaml").write_text(GOOD.format(name="new", port=9101))
    assert await watched.next_change() == {"new"}
    elapsed = loop.time() - started
    assert watched.specs()["new"] == 9101
    # The debounce is set to react within 100 ms; allow a loaded machine some slack.
    assert elapsed < 1.0, f"took {elapsed:.3f}s"


async def test_editing_a_file_changes_the_spec(watched: Watched) -> None:
    (watched.directory / "before.yaml").write_text(GOOD.format(name="before", port=9150))
    await watched.until(lambda: watched.specs().get("before") == 9150)


async def test_a_file_with_several_documents_defines_several_services(watched: Watched) -> None:
    (watched.directory / "multi.yml").write_text(
        GOOD.format(name="alpha", port=9102) + "---\n" + GOOD.format(name="beta", port=9103)
    )
    await watched.until(lambda: {"alpha", "beta"} <= watched.specs().keys())


async def test_a_broken_file_keeps_its_last_good_spec_and_reports_the_line(
    watched: Watched,
) -> None:
    path = watched.directory / "before.yaml"
    path.write_text(GOOD.format(name="before", port=9100) + "colour: blue\n")
    await watched.until(lambda: watched.issues("before.yaml"))
    assert watched.issues("before.yaml") == [("colour", ErrorCode.UNKNOWN_FIELD, 4)]
    assert watched.specs() == {"before": 9100}

    path.write_text("project_name: before\nport: [unclosed\n")
    await watched.until(
        lambda: [c for _, c, _ in watched.issues("before.yaml")] == [ErrorCode.YAML_SYNTAX]
    )
    assert watched.specs() == {"before": 9100}

    path.write_text(GOOD.format(name="before", port=9160))
    await watched.until(lambda: watched.specs().get("before") == 9160)
    assert watched.issues("before.yaml") == []


async def test_a_broken_file_never_affects_other_files(watched: Watched) -> None:
    (watched.directory / "bad.yaml").write_text("project_name: Bad Name\nport: 80\n")
    (watched.directory / "good.yaml").write_text(GOOD.format(name="good", port=9104))
    await watched.until(lambda: "good" in watched.specs() and watched.issues("bad.yaml"))
    codes = {(field, code) for field, code, _ in watched.issues("bad.yaml")}
    assert codes == {
        ("project_name", ErrorCode.INVALID_CHARACTERS),
        ("port", ErrorCode.PORT_OUT_OF_RANGE),
        ("pocketbase_version", ErrorCode.FIELD_REQUIRED),
    }
    assert watched.specs() == {"before": 9100, "good": 9104}


async def test_a_name_already_defined_in_another_file_is_refused_on_the_newcomer(
    watched: Watched,
) -> None:
    (watched.directory / "copy.yaml").write_text(GOOD.format(name="before", port=9105))
    await watched.until(lambda: watched.issues("copy.yaml"))
    assert watched.issues("copy.yaml")[0][1] is ErrorCode.DUPLICATE_PROJECT_NAME
    assert watched.specs() == {"before": 9100}
    record = watched.store.get_service("before")
    assert record is not None and record.source_file == str(watched.directory / "before.yaml")

    # When the first file goes, the newcomer gets the name.
    (watched.directory / "before.yaml").unlink()
    await watched.until(lambda: watched.specs() == {"before": 9105})
    assert watched.issues("copy.yaml") == []


async def test_deleting_a_file_removes_its_services_and_archives_their_data(
    watched: Watched,
) -> None:
    (watched.directory / "before.yaml").unlink()
    await watched.until(lambda: "before" not in watched.specs())
    deletion = watched.store.pending_deletion("before")
    assert deletion is not None and deletion.purge is False


async def test_an_editor_saving_by_rename_is_followed(watched: Watched) -> None:
    temporary = watched.directory / ".before.yaml.swp"
    temporary.write_text(GOOD.format(name="before", port=9170))
    os.replace(temporary, watched.directory / "before.yaml")
    await watched.until(lambda: watched.specs().get("before") == 9170)


async def test_a_partial_write_converges_once_the_file_is_whole(watched: Watched) -> None:
    path = watched.directory / "slow.yaml"
    text = GOOD.format(name="slow", port=9106)
    with path.open("w") as handle:
        handle.write(text[:20])
        handle.flush()
        await asyncio.sleep(0.3)  # an editor pausing mid-write: the half file is seen
        handle.write(text[20:])
    await watched.until(lambda: watched.specs().get("slow") == 9106)
    assert watched.issues("slow.yaml") == []


async def test_files_that_are_not_specs_are_ignored(watched: Watched) -> None:
    (watched.directory / "notes.txt").write_text("project_name: nope\n")
    (watched.directory / ".hidden.yaml").write_text(GOOD.format(name="hidden", port=9107))
    (watched.directory / "real.yaml").write_text(GOOD.format(name="real", port=9108))
    await watched.until(lambda: "real" in watched.specs())
    assert "nope" not in watched.specs() and "hidden" not in watched.specs()


def test_parse_reports_duplicate_keys_and_duplicate_names_with_lines() -> None:
    text = (
        "project_name: one\nport: 9001\nport: 9002\npocketbase_version: '0.29.0'\n"
        "---\n" + GOOD.format(name="one", port=9003)
    )
    parsed = parse_spec_file("/specs/x.yaml", text, "example.test")
    assert [(i.field, i.code, i.line) for i in parsed.issues] == [
        ("port", ErrorCode.DUPLICATE_KEY, 3),
        ("project_name", ErrorCode.DUPLICATE_PROJECT_NAME, 6),
    ]


def test_parse_rejects_a_document_that_is_not_a_mapping() -> None:
    parsed = parse_spec_file("/specs/x.yaml", "- just\n- a list\n", "example.test")
    assert [i.code for i in parsed.issues] == [ErrorCode.NOT_A_MAPPING]


async def test_a_port_held_by_another_process_is_refused_until_it_is_free(
    watched: Watched,
) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    try:
        (watched.directory / "squatted.yaml").write_text(GOOD.format(name="squatted", port=port))
        await watched.until(lambda: watched.issues("squatted.yaml"))
        assert [(f, c) for f, c, _ in watched.issues("squatted.yaml")] == [
            ("port", ErrorCode.PORT_IN_USE)
        ]
        assert "squatted" not in watched.specs()
    finally:
        listener.close()
    watched.source.scan()  # what the agent's periodic resync does
    await watched.until(lambda: watched.specs().get("squatted") == port)
    assert watched.issues("squatted.yaml") == []


async def test_the_agents_own_port_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "own"
    directory.mkdir()
    (directory / "a.yaml").write_text(GOOD.format(name="greedy", port=8091))
    store = Store(tmp_path / "own.db")
    source = SpecDirectory(directory, store, "example.test", agent_port=8091)
    source.scan()
    assert [i.code for i in source.issues[str(directory / "a.yaml")]] == [ErrorCode.PORT_RESERVED]
    assert store.service_names() == []


async def test_a_backup_target_the_agent_does_not_have_is_refused_when_the_file_is_read(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "targets"
    directory.mkdir()
    path = directory / "a.yaml"
    path.write_text(
        GOOD.format(name="shipped", port=9140)
        + "backups:\n  targets: [local, offsite, typo]\n"
        + "  replication: {target: elsewhere}\n"
    )
    store = Store(tmp_path / "targets.db")
    source = SpecDirectory(directory, store, "example.test", backup_targets=["offsite"])
    source.scan()
    issues = source.issues[str(path)]
    assert [(i.field, i.code, i.line) for i in issues] == [
        ("backups.replication.target", ErrorCode.UNKNOWN_TARGET, 6),
        ("backups.targets.2", ErrorCode.UNKNOWN_TARGET, 5),
    ]
    assert "'elsewhere'" in issues[0].message and "'typo'" in issues[1].message
    assert store.service_names() == []  # refused at validation, not at the first upload

    path.write_text(GOOD.format(name="shipped", port=9140) + "backups: {targets: [offsite]}\n")
    source.scan()
    assert source.issues.get(str(path)) is None
    assert store.service_names() == ["shipped"]


# -- hostile files: the watcher keeps running and reports each one ------------------------


def watcher_alive(watched: Watched) -> None:
    assert watched.task is not None and not watched.task.done(), watched.task


async def settle(watched: Watched, round_: int) -> None:
    """Until the watcher has handled everything written so far: a good file written last
    (a new port each round) is applied only once the batch holding the rest is done."""
    port = 9200 + round_ % 700
    (watched.directory / "sentinel.yaml").write_text(GOOD.format(name="sentinel", port=port))
    await watched.until(lambda: watched.specs().get("sentinel") == port, timeout=15)


def file_issues(watched: Watched, name: str) -> list[tuple[str, ErrorCode]]:
    path = str(watched.directory / name)
    return [(issue.field, issue.code) for issue in watched.store.file_issues().get(path, [])]


CONFLICTS = {
    ErrorCode.DUPLICATE_PROJECT_NAME,
    ErrorCode.PORT_IN_USE,
    ErrorCode.PORT_RESERVED,
    ErrorCode.DOMAIN_IN_USE,
    ErrorCode.OWNED_BY_OTHER_SOURCE,
}
HOSTILE_BYTES = (
    st.binary(max_size=400)
    | st.text(max_size=300).map(str.encode)
    | st.lists(
        st.sampled_from(
            ["project_name: x", "port: ", "9100", "\n", "- ", "[", "{", "&a ", "*a", "!!int ", ": "]
        ),
        max_size=40,
    ).map(lambda parts: "".join(parts).encode())
    | st.integers(min_value=20, max_value=40).map(
        lambda levels: (
            "l0: &l0 {a: 1, b: 2}\n"
            + "".join(f"l{i}: &l{i} {{a: *l{i - 1}, b: *l{i - 1}}}\n" for i in range(1, levels))
        ).encode()
    )
)


async def test_the_watcher_survives_any_bytes_and_reports_each_bad_file(
    watched: Watched,
) -> None:
    """Hypothesis writes a file again and again (in place or by rename); after each, the
    watcher still runs, a good file written after it is applied, and the fuzzed file is
    either services or issues that each name a field and a code."""
    loop = asyncio.get_running_loop()
    rounds = iter(range(1_000_000))

    @hypothesis.settings(
        max_examples=60,
        deadline=None,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(content=HOSTILE_BYTES, by_rename=st.booleans())
    def write_and_check(content: bytes, by_rename: bool) -> None:
        path = watched.directory / "fuzz.yaml"
        if by_rename:
            temporary = watched.directory / ".fuzz.tmp"
            temporary.write_bytes(content)
            os.replace(temporary, path)
        else:
            path.write_bytes(content)
        asyncio.run_coroutine_threadsafe(settle(watched, next(rounds)), loop).result(30)
        watcher_alive(watched)
        issues = file_issues(watched, "fuzz.yaml")
        assert all(field and isinstance(code, ErrorCode) for field, code in issues), issues
        # What the watcher recorded is the file's own verdict, plus any conflict with the
        # other files (a fuzzed spec may claim a port or a name they hold).
        verdict = [(i.field, i.code) for i in read_spec_file(path, "example.test").issues]
        assert issues[: len(verdict)] == verdict
        assert {code for _field, code in issues[len(verdict) :]} <= CONFLICTS, issues

    await asyncio.to_thread(write_and_check)
    assert watched.specs()["before"] == 9100


async def test_fifos_devices_directories_and_huge_files_are_refused_without_blocking(
    watched: Watched, tmp_path: Path
) -> None:
    directory = watched.directory
    os.mkfifo(directory / "pipe.yaml")
    outside_fifo = tmp_path / "outside.fifo"
    os.mkfifo(outside_fifo)
    (directory / "to-fifo.yaml").symlink_to(outside_fifo)
    (directory / "zero.yaml").symlink_to("/dev/zero")
    (directory / "folder.yaml").mkdir()
    with (directory / "huge.yaml").open("wb") as handle:
        handle.truncate(2 * 1024 * 1024)  # sparse: costs no disk
    (directory / "loop.yaml").symlink_to(directory / "loop.yaml")
    (directory / "dangling.yaml").symlink_to(tmp_path / "nowhere.yaml")
    linked = tmp_path / "linked-spec.yaml"
    linked.write_text(GOOD.format(name="linked", port=9109))
    (directory / "linked.yaml").symlink_to(linked)
    await settle(watched, 0)

    watcher_alive(watched)
    for name in ("pipe.yaml", "to-fifo.yaml", "zero.yaml", "folder.yaml", "huge.yaml"):
        assert file_issues(watched, name) == [("<file>", ErrorCode.FILE_UNREADABLE)], name
    for name in ("loop.yaml", "dangling.yaml"):  # nothing to read: as if absent
        assert file_issues(watched, name) == [], name
    assert watched.specs() == {"before": 9100, "sentinel": 9200, "linked": 9109}


async def test_rapid_renames_and_swaps_for_fifos_converge_on_the_last_file(
    watched: Watched,
) -> None:
    directory = watched.directory
    path = directory / "churn.yaml"
    for index in range(301):  # the last one, 300, is a good spec
        temporary = directory / f".churn-{index}.tmp"
        if index % 3 == 1:
            os.mkfifo(temporary)
        elif index % 3 == 2:
            temporary.write_text("project_name: [unclosed\n")
        else:
            temporary.write_text(GOOD.format(name="churn", port=9300 + index))
        os.replace(temporary, path)
        if index % 50 == 0:
            await asyncio.sleep(0)  # now and then, let the watcher see a state mid-churn
    await watched.until(lambda: watched.specs().get("churn") == 9300 + 300, timeout=15)
    await settle(watched, 1)
    watcher_alive(watched)
    assert file_issues(watched, "churn.yaml") == []
    assert watched.specs()["before"] == 9100
