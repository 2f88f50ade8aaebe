"""The inotify watcher: batches of changed names, no polling, overflow means rescan."""

from __future__ import annotations

import asyncio
import os
import struct
from contextlib import aclosing
from pathlib import Path

import pytest

from pockestrator.dirwatch import IN_Q_OVERFLOW, DirectoryWatcher, parse_events


def yaml_only(name: str) -> bool:
    return name.endswith(".yaml") and not name.startswith(".")


async def next_batch(watcher: DirectoryWatcher, timeout: float = 2.0) -> set[Path] | None:
    # Closed here, not by the garbage collector: asyncio would close an abandoned generator
    # in a task of its own, after the test.
    async with aclosing(watcher.batches()) as batches:
        return await asyncio.wait_for(anext(batches), timeout)


async def test_writes_renames_and_deletes_are_reported_by_name(tmp_path: Path) -> None:
    async with DirectoryWatcher([tmp_path], yaml_only) as watcher:
        (tmp_path / "a.yaml").write_text("x")
        assert await next_batch(watcher) == {tmp_path / "a.yaml"}
        (tmp_path / ".b.yaml.swp").write_text("y")
        os.replace(tmp_path / ".b.yaml.swp", tmp_path / "b.yaml")
        assert await next_batch(watcher) == {tmp_path / "b.yaml"}
        (tmp_path / "a.yaml").unlink()
        assert await next_batch(watcher) == {tmp_path / "a.yaml"}


async def test_a_burst_becomes_one_batch_and_other_names_are_ignored(tmp_path: Path) -> None:
    async with DirectoryWatcher([tmp_path], yaml_only, quiet=0.05, max_delay=0.5) as watcher:
        for index in range(50):
            (tmp_path / f"s{index}.yaml").write_text("x")
        (tmp_path / "notes.txt").write_text("ignored")
        batch = await next_batch(watcher)
        assert batch == {tmp_path / f"s{index}.yaml" for index in range(50)}
        with pytest.raises(TimeoutError):
            await next_batch(watcher, timeout=0.2)


async def test_a_change_is_delivered_within_the_maximum_delay_even_if_writes_continue(
    tmp_path: Path,
) -> None:
    loop = asyncio.get_running_loop()
    async with DirectoryWatcher([tmp_path], yaml_only, quiet=0.05, max_delay=0.1) as watcher:
        started = loop.time()

        async def keep_writing() -> None:
            for index in range(20):
                (tmp_path / "busy.yaml").write_text(str(index))
                await asyncio.sleep(0.02)

        writer = asyncio.create_task(keep_writing())
        assert await next_batch(watcher) == {tmp_path / "busy.yaml"}
        assert loop.time() - started < 0.3
        await writer


async def test_several_directories_are_watched(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    async with DirectoryWatcher([one, two], yaml_only) as watcher:
        (two / "x.yaml").write_text("x")
        assert await next_batch(watcher) == {two / "x.yaml"}


async def test_a_directory_that_goes_away_asks_for_a_rescan(tmp_path: Path) -> None:
    watched = tmp_path / "specs"
    watched.mkdir()
    async with DirectoryWatcher([watched], yaml_only) as watcher:
        watched.rmdir()
        assert await next_batch(watcher) is None


def test_raw_events_are_parsed_including_an_overflow() -> None:
    name = b"a.yaml\0\0"
    data = struct.pack("iIII", 1, 0x100, 0, len(name)) + name
    data += struct.pack("iIII", -1, IN_Q_OVERFLOW, 0, 0)
    assert parse_events(data) == [(1, 0x100, "a.yaml"), (-1, IN_Q_OVERFLOW, "")]


async def test_watching_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="cannot watch"):
        DirectoryWatcher([tmp_path / "missing"], yaml_only).start()


async def test_a_folder_that_comes_back_is_watched_again(tmp_path: Path) -> None:
    watched = tmp_path / "specs"
    watched.mkdir()
    async with DirectoryWatcher([watched], yaml_only) as watcher:
        watched.rmdir()
        assert await next_batch(watcher) is None
        assert watcher.ensure_watches() == [watched]  # still gone
        watched.mkdir()
        assert watcher.ensure_watches() == []
        (watched / "back.yaml").write_text("x")
        assert await next_batch(watcher) == {watched / "back.yaml"}


async def test_a_file_renamed_into_place_is_not_held_for_the_quiet_of_partial_writes(
    tmp_path: Path,
) -> None:
    async with DirectoryWatcher(
        [tmp_path], yaml_only, quiet=30.0, max_delay=60.0, complete_quiet=0.001
    ) as watcher:
        (tmp_path / ".a.tmp").write_text("x")
        os.replace(tmp_path / ".a.tmp", tmp_path / "a.yaml")
        assert await next_batch(watcher) == {tmp_path / "a.yaml"}
        (tmp_path / "b.yaml").write_text("closed after writing")
        assert await next_batch(watcher) == {tmp_path / "b.yaml"}


async def test_a_file_still_open_for_writing_waits_for_the_quiet(tmp_path: Path) -> None:
    async with DirectoryWatcher(
        [tmp_path], yaml_only, quiet=30.0, max_delay=60.0, complete_quiet=0.001
    ) as watcher:
        with (tmp_path / "half.yaml").open("w") as half:
            half.write("project_name: ha")
            half.flush()
            with pytest.raises(TimeoutError):
                await next_batch(watcher, timeout=0.3)
            half.write("lf\n")
        assert await next_batch(watcher) == {tmp_path / "half.yaml"}  # closed: complete
