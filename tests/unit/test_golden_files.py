"""The golden-file helper rewrites a file only when asked with UPDATE_GOLDEN=1."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.golden_files import UPDATE_VARIABLE, check_golden


@pytest.mark.parametrize("value", [None, "", "0", "yes", "true", "1 "])
def test_any_value_but_1_only_compares(
    value: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    golden = tmp_path / "unit.service"
    golden.write_text("old\n")
    if value is None:
        monkeypatch.delenv(UPDATE_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(UPDATE_VARIABLE, value)
    with pytest.raises(AssertionError, match=r"unit\.service differs; UPDATE_GOLDEN=1 rewrites it"):
        check_golden(golden, "new\n")
    assert golden.read_text() == "old\n"


def test_update_golden_1_rewrites_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    golden = tmp_path / "unit.service"
    golden.write_text("old\n")
    monkeypatch.setenv(UPDATE_VARIABLE, "1")
    check_golden(golden, "new\n")
    assert golden.read_text() == "new\n"


def test_the_old_second_variable_no_longer_rewrites(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    golden = tmp_path / "unit.service"
    golden.write_text("old\n")
    monkeypatch.delenv(UPDATE_VARIABLE, raising=False)
    monkeypatch.setenv("POCKESTRATOR_UPDATE_GOLDEN", "1")
    with pytest.raises(AssertionError):
        check_golden(golden, "new\n")
    assert golden.read_text() == "old\n"
