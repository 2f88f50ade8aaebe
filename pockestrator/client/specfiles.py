"""Spec files named on the command line, parsed exactly as the agent parses its spec folder.

``parse_spec_file`` (``specs.yamldir``) does the work, so ``validate`` and ``apply`` report
the same issues, with the same codes and lines, as the agent would for the same file. On
top of that, a set of files is checked as a whole: a name, port or domain given twice
across the files would be refused by the agent too. ``apply`` also needs to know which
fields a document wrote down (``Document.keys``), because a field left out of the file is
treated differently from one set to its default (see ``client.apply``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pockestrator.specs.errors import ErrorCode, FieldIssue
from pockestrator.specs.model import ServiceSpec
from pockestrator.specs.yamldir import (
    ParsedFile,
    is_spec_file_name,
    parse_spec_file,
    read_spec_text,
)


@dataclass(frozen=True)
class Document:
    """One good spec of a file, the top-level keys it wrote and the line of each."""

    spec: ServiceSpec
    path: str
    lines: dict[str, int]

    @property
    def keys(self) -> frozenset[str]:
        return frozenset(self.lines)

    def line_of(self, key: str) -> int | None:
        return self.lines.get(key) or self.lines.get("project_name")


@dataclass
class FileReport(ParsedFile):
    """What ``parse_spec_file`` found in one file, and its good documents with the line of
    each key they wrote (only when the file has no issue at all)."""

    documents: list[Document] = field(default_factory=list)


@dataclass
class SpecSet:
    files: list[FileReport] = field(default_factory=list)

    @property
    def documents(self) -> list[Document]:
        return [doc for report in self.files for doc in report.documents]

    @property
    def issues(self) -> list[FieldIssue]:
        return [issue for report in self.files for issue in report.issues]

    @property
    def ok(self) -> bool:
        return bool(self.files) and not self.issues


def find_spec_files(paths: Sequence[Path]) -> tuple[list[Path], list[FieldIssue]]:
    """The files named, and the spec files (``*.yaml``/``*.yml``, not hidden) of the
    folders named, not recursive, each once; a missing path or an empty folder is an issue."""
    found: list[Path] = []
    issues: list[FieldIssue] = []
    seen: set[Path] = set()
    for path in paths:
        if path.is_dir():
            entries = sorted(e for e in path.iterdir() if is_spec_file_name(e.name))
            entries = [e for e in entries if e.is_file()]
            if not entries:
                issues.append(
                    FieldIssue(
                        "<file>",
                        "no spec files (*.yaml, *.yml) in this folder",
                        ErrorCode.FILE_UNREADABLE,
                        str(path),
                    )
                )
        elif path.exists():
            entries = [path]
        else:
            issues.append(
                FieldIssue("<file>", "no such file or folder", ErrorCode.FILE_UNREADABLE, str(path))
            )
            continue
        for entry in entries:
            key = entry.resolve()
            if key not in seen:
                seen.add(key)
                found.append(entry)
    return found, issues


def _top_level_lines(text: str) -> list[dict[str, int]]:
    """For every non-empty document, its top-level keys and their 1-based lines."""
    documents = []
    for node in yaml.compose_all(text, Loader=yaml.SafeLoader):
        if node is None or (isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")):
            continue
        lines: dict[str, int] = {}
        if isinstance(node, yaml.MappingNode):
            for key_node, _value in node.value:
                lines.setdefault(str(key_node.value), key_node.start_mark.line + 1)
        documents.append(lines)
    return documents


def read_file(path: Path, default_domain: str) -> FileReport:
    """One file: its good specs (only when it has no issue at all) and its issues."""
    text = read_spec_text(path)
    if isinstance(text, FieldIssue):
        return FileReport(str(path), issues=[text])
    parsed = parse_spec_file(str(path), text, default_domain)
    report = FileReport(parsed.path, parsed.specs, list(parsed.issues))
    if parsed.ok:
        key_lines = _top_level_lines(text)
        if len(key_lines) != len(parsed.specs):  # cannot happen for a file that parsed
            report.issues.append(
                FieldIssue(
                    "<file>", "documents could not be matched", ErrorCode.YAML_SYNTAX, parsed.path
                )
            )
        else:
            report.documents = [
                Document(spec, parsed.path, lines)
                for spec, lines in zip(parsed.specs, key_lines, strict=True)
            ]
    return report


def _claims_of(doc: Document) -> list[tuple[str, str, ErrorCode, str]]:
    """(field, value, code, noun) of what one service holds exclusively."""
    spec = doc.spec
    return [
        ("project_name", spec.project_name, ErrorCode.DUPLICATE_PROJECT_NAME, "project name"),
        ("port", str(spec.port), ErrorCode.PORT_IN_USE, "port"),
        ("domain", spec.domain, ErrorCode.DOMAIN_IN_USE, "domain"),
    ]


def check_across_files(spec_set: SpecSet) -> None:
    """A name, port or domain held by two documents is an issue of the later one, as the
    agent's store would refuse it (only names are checked within a file by the parser)."""
    holders: dict[tuple[str, str], Document] = {}
    for report in spec_set.files:
        for doc in report.documents:
            for field_name, value, code, noun in _claims_of(doc):
                first = holders.setdefault((field_name, value), doc)
                if first is doc:
                    continue
                where = f"{first.path}:{first.line_of(field_name)}"
                report.issues.append(
                    FieldIssue(
                        field_name,
                        f"{noun} {value} is also given by {first.spec.project_name} ({where})",
                        code,
                        doc.path,
                        doc.line_of(field_name),
                    )
                )


def load_spec_set(paths: Sequence[Path], default_domain: str) -> SpecSet:
    """Every file under ``paths``, parsed and checked as one set."""
    files, missing = find_spec_files(paths)
    spec_set = SpecSet([read_file(path, default_domain) for path in files])
    for issue in missing:
        spec_set.files.append(FileReport(issue.file or "<file>", issues=[issue]))
    check_across_files(spec_set)
    return spec_set


def api_issues(doc: Document) -> list[FieldIssue]:
    """What the API cannot take although a spec file may hold it."""
    issues = []
    if doc.spec.superuser_password_file is not None:
        issues.append(
            FieldIssue(
                "superuser_password_file",
                "only spec files in the agent's spec folder may name a password file; "
                "through the API the first superuser's password is generated and printed "
                "once (remove this field, or put the file in the spec folder)",
                ErrorCode.UNKNOWN_FIELD,
                doc.path,
                doc.line_of("superuser_password_file"),
            )
        )
    if doc.spec.app is not None:
        issues.append(
            FieldIssue(
                "app",
                "only spec files in the agent's spec folder may name an app folder; from "
                "here, deploy it with `pockestrator deploy NAME DIR` (remove this field, or "
                "put the file in the spec folder)",
                ErrorCode.UNKNOWN_FIELD,
                doc.path,
                doc.line_of("app"),
            )
        )
    return issues
