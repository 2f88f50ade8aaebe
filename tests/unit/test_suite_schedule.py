"""The suite's schedule: whole modules, the longest first, each module's tests in order."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.testbed.schedule import MODULE_SECONDS, longest_modules_first, module_of

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Collected:
    nodeid: str


def ids(nodeids: list[str], seconds: dict[str, int]) -> list[str]:
    return [item.nodeid for item in longest_modules_first([Collected(n) for n in nodeids], seconds)]


@pytest.mark.parametrize(
    ("collected", "seconds", "ordered"),
    [
        pytest.param([], {}, [], id="nothing collected"),
        pytest.param(
            ["a.py::t1", "a.py::t2", "b.py::t1"], {}, ["a.py::t1", "a.py::t2", "b.py::t1"],
            id="no weights: the collection order",
        ),
        pytest.param(
            ["a.py::t1", "a.py::t2", "b.py::t1", "b.py::t2"], {"b.py": 5},
            ["b.py::t1", "b.py::t2", "a.py::t1", "a.py::t2"],
            id="a weighed module before an unweighed one, its tests in order",
        ),
        pytest.param(
            ["a.py::t", "b.py::t", "c.py::t"], {"a.py": 1, "b.py": 9, "c.py": 4},
            ["b.py::t", "c.py::t", "a.py::t"],
            id="heaviest first",
        ),
        pytest.param(
            ["a.py::t", "b.py::t", "c.py::t"], {"b.py": 3, "c.py": 3},
            ["b.py::t", "c.py::t", "a.py::t"],
            id="equal weights keep the collection order",
        ),
        pytest.param(
            ["a.py::t[x::y]", "b.py::C::t", "a.py::u"], {"a.py": 2, "b.py": 1},
            ["a.py::t[x::y]", "a.py::u", "b.py::C::t"],
            id="parameters and classes belong to their module",
        ),
    ],
)  # fmt: skip
def test_modules_are_ordered_longest_first_and_keep_their_tests_order(
    collected: list[str], seconds: dict[str, int], ordered: list[str]
) -> None:
    assert ids(collected, seconds) == ordered


def test_a_module_of_a_node_id_is_its_file() -> None:
    assert module_of("tests/unit/test_x.py::test_y[a::b]") == "tests/unit/test_x.py"
    assert module_of("tests/unit/test_x.py") == "tests/unit/test_x.py"


def test_the_table_names_only_modules_that_exist() -> None:
    missing = [module for module in MODULE_SECONDS if not (REPO / module).is_file()]
    assert missing == [], "tests/testbed/schedule.py weighs modules that are gone"
