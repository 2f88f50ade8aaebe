"""The current problems of each spec file, as the spec directory last found them.

``specs.yamldir`` writes them after every sync of a file (an empty list removes the row)
and reads them back to know every file it has seen: after a restart, a file that had only
problems and has since vanished is still looked at once, and forgotten.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from pockestrator.specs.errors import ErrorCode, FieldIssue
from pockestrator.specs.store.base import StorePart


class FileIssues(StorePart):
    def set_file_issues(self, path: str, issues: Sequence[FieldIssue]) -> None:
        with self._database.write() as db:
            if issues:
                db.execute(
                    "INSERT INTO file_issues (path, issues, updated_at) VALUES (?, ?, ?) "
                    "ON CONFLICT(path) DO UPDATE SET issues = excluded.issues, "
                    "updated_at = excluded.updated_at",
                    (path, json.dumps([issue.as_dict() for issue in issues]), self._now()),
                )
            else:
                db.execute("DELETE FROM file_issues WHERE path = ?", (path,))

    def file_issues(self) -> dict[str, list[FieldIssue]]:
        result: dict[str, list[FieldIssue]] = {}
        for row in self._database.read("SELECT path, issues FROM file_issues ORDER BY path"):
            result[row["path"]] = [
                FieldIssue(
                    field=item["field"],
                    message=item["message"],
                    code=ErrorCode(item["code"]),
                    file=item.get("file"),
                    line=item.get("line"),
                )
                for item in json.loads(row["issues"])
            ]
        return result
