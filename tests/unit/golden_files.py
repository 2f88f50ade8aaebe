"""Golden files: rendered text compared with a file kept in tests/unit/golden/.

``UPDATE_GOLDEN=1`` (that variable, that value, nothing else) rewrites a golden file
with what was rendered, for a change that is meant; review the diff before committing it.
Any other value, "0" included, only compares, so a stray variable cannot turn every
golden test into one that passes.
"""

from __future__ import annotations

import os
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden"
UPDATE_VARIABLE = "UPDATE_GOLDEN"


def updating() -> bool:
    return os.environ.get(UPDATE_VARIABLE) == "1"


def check_golden(path: Path, text: str) -> None:
    """Assert that ``text`` is the golden file's content (or rewrite it when updating)."""
    if updating():
        path.write_text(text)
    assert text == path.read_text(), f"{path.name} differs; {UPDATE_VARIABLE}=1 rewrites it"
