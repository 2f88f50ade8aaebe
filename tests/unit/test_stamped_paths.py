"""Unique timestamped paths: a UTC stamp, and a counter when the name is taken."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from pockestrator.controllers.stamped_paths import unique_stamped_path, utc_stamp

MOMENT = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_the_stamp_is_the_utc_second_in_a_sortable_path_safe_form() -> None:
    assert utc_stamp(MOMENT) == "20250102T030405Z"


def test_a_moment_in_another_time_zone_is_stamped_in_utc() -> None:
    paris_winter = timezone(timedelta(hours=1))
    assert utc_stamp(datetime(2025, 1, 2, 4, 4, 5, tzinfo=paris_winter)) == "20250102T030405Z"


def test_without_a_moment_the_stamp_is_now() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    stamp = datetime.strptime(utc_stamp(), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert before <= stamp <= datetime.now(UTC)


def test_a_free_name_gets_the_bare_stamp(tmp_path: Path) -> None:
    assert unique_stamped_path(tmp_path, "blog", MOMENT) == tmp_path / "blog-20250102T030405Z"


def test_a_taken_name_gets_the_first_free_counter(tmp_path: Path) -> None:
    (tmp_path / "blog-20250102T030405Z").mkdir()
    (tmp_path / "blog-20250102T030405Z-1").write_text("taken too")
    found = unique_stamped_path(tmp_path, "blog", MOMENT)
    assert found == tmp_path / "blog-20250102T030405Z-2"
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "blog-20250102T030405Z",
        "blog-20250102T030405Z-1",
    ]


def test_a_dangling_symlink_counts_as_taken(tmp_path: Path) -> None:
    (tmp_path / "pb_data-20250102T030405Z").symlink_to(tmp_path / "nowhere")
    assert unique_stamped_path(tmp_path, "pb_data", MOMENT) == (
        tmp_path / "pb_data-20250102T030405Z-1"
    )
