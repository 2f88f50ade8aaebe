"""The YAML spec directory: GitOps-style desired state, one or more services per file.

``parse_spec_file`` is pure: text in, good specs and located issues out (file, line, field,
code). ``SpecDirectory`` keeps the store in step with a directory: a startup scan, then inotify
events (``pockestrator.dirwatch``), non-recursive, over ``*.yaml``/``*.yml``. It is
level-triggered: whatever the event (created, modified, renamed over, deleted), the file's
current content is read again, so editors that save by rename and partial writes converge
to the right state as soon as the file is whole.

A file is applied all or nothing. While it is broken (YAML syntax, a duplicate key, an
unknown key, a bad value, a name given twice in it), none of its documents are applied, so
services it defined keep their last good spec until it is fixed or removed; other files are
never affected. A document whose name, port or domain another source holds (or whose port a
process on the host holds) is the exception: only that document waits, the rest of the file
applies. Removing a file removes its services (their data is archived, not lost).
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
import yaml

from pockestrator.dirwatch import DirectoryWatcher
from pockestrator.specs.errors import ErrorCode, FieldIssue, SpecInvalid
from pockestrator.specs.model import ServiceSpec, parse_spec
from pockestrator.specs.pocketbase_settings import spec_file_secret_issues
from pockestrator.specs.rescan_memo import CleanFiles, stat_key
from pockestrator.specs.store import Store, file_owner
from pockestrator.specs.validation import unknown_targets, validate_port_on_host

SPEC_SUFFIXES = (".yaml", ".yml")
MAX_FILE_BYTES = 1024 * 1024
# A document's bounds once YAML aliases are expanded: a spec has a few dozen values, three
# levels deep. Past them (an alias bomb, a recursive alias, absurd nesting) the document
# is refused before anything walks or constructs it, which would take exponential time.
MAX_DOCUMENT_NODES = 10_000
MAX_DOCUMENT_DEPTH = 32
# PyYAML's constructors raise what their converters raise (``int('x')`` for ``!!int x``,
# a date out of range for ``2001-02-30``), and its composer recurses once per level.
_CONSTRUCTION_ERRORS = (ValueError, TypeError, AttributeError, LookupError, RecursionError)
_MESSAGE_MAX = 200
# libyaml's parser where PyYAML was built with it (Debian's is): the pure-Python one takes
# seconds of the event loop for a 1 MiB file of short lines.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# A change is handled once the folder has been quiet for WATCH_QUIET seconds, and at most
# WATCH_MAX_DELAY after it happened (the spec folder promises to react within 100 ms);
# files that were renamed into place or closed after writing wait WATCH_COMPLETE_QUIET.
WATCH_QUIET = 0.02
WATCH_COMPLETE_QUIET = 0.002
WATCH_MAX_DELAY = 0.08

log = structlog.get_logger("pockestrator.specs")


def is_spec_file_name(name: str) -> bool:
    """``*.yaml``/``*.yml``, not hidden (editor swap and temp files start with a dot)."""
    return not name.startswith(".") and name.endswith(SPEC_SUFFIXES)


@dataclass
class ParsedFile:
    """The good specs of one file and the problems found in it."""

    path: str
    specs: list[ServiceSpec] = field(default_factory=list)
    issues: list[FieldIssue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.issues


def _key_lines(node: yaml.Node, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], int]:
    """1-based line of every mapping key, by its path, for pointing errors at lines."""
    lines: dict[tuple[str, ...], int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = (*prefix, str(key_node.value))
            lines[key] = key_node.start_mark.line + 1
            lines.update(_key_lines(value_node, key))
    return lines


def _duplicate_keys(node: yaml.Node, prefix: tuple[str, ...] = ()) -> list[tuple[str, int]]:
    """Keys that appear twice in one mapping: PyYAML would silently keep the last."""
    found: list[tuple[str, int]] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                found.append((".".join((*prefix, key)), key_node.start_mark.line + 1))
            seen.add(key)
            found.extend(_duplicate_keys(value_node, (*prefix, key)))
    return found


def _line_for(field_path: str, lines: dict[tuple[str, ...], int], document_line: int) -> int:
    parts = tuple(field_path.split("."))
    while parts:
        if parts in lines:
            return lines[parts]
        parts = parts[:-1]
    return document_line


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def document_bounds(root: yaml.Node) -> str | None:
    """Why a composed document is too large to read, or None.

    Its size counts a node once per use (an alias expands), its depth likewise; both are
    found in one iterative walk that visits each node once, so a bomb costs linear time.
    """
    finished: dict[int, tuple[int, int]] = {}  # id -> (expanded size, depth)
    active = {id(root)}
    stack = [(root, iter(_children(root)))]
    while stack:
        node, pending = stack[-1]
        child = next((c for c in pending if id(c) not in finished), None)
        if child is not None:
            if id(child) in active:
                return "a YAML alias refers to a node that contains it"
            if len(stack) >= MAX_DOCUMENT_DEPTH:
                return f"the document nests deeper than {MAX_DOCUMENT_DEPTH} levels"
            active.add(id(child))
            stack.append((child, iter(_children(child))))
            continue
        stack.pop()
        active.discard(id(node))
        parts = [finished[id(c)] for c in _children(node)]
        size = 1 + sum(part[0] for part in parts)
        if size > MAX_DOCUMENT_NODES:
            return (
                f"the document has more than {MAX_DOCUMENT_NODES} values"
                " (each use of a YAML alias counts)"
            )
        finished[id(node)] = (size, 1 + max((part[1] for part in parts), default=0))
    return None


def _short(text: str) -> str:
    return text if len(text) <= _MESSAGE_MAX else text[: _MESSAGE_MAX - 3] + "..."


def _syntax_issue(exc: yaml.YAMLError, path: str) -> FieldIssue:
    mark = getattr(exc, "problem_mark", None)
    line: int | None = mark.line + 1 if mark is not None else None
    problem = getattr(exc, "problem", None) or str(exc)
    message = _short(f"YAML syntax error: {problem}")
    return FieldIssue("<file>", message, ErrorCode.YAML_SYNTAX, path, line)


def parse_spec_file(
    path: str, text: str, default_domain: str, backup_targets: Collection[str] | None = None
) -> ParsedFile:
    """Every document of one spec file, validated; issues carry file, line, field, code.

    With ``backup_targets`` (the agent's, when the agent reads its spec folder), a backup
    policy naming a target the agent does not have is an issue of the file, found here
    rather than at the first upload."""
    parsed = ParsedFile(path)
    names: dict[str, int] = {}
    try:
        loader = _LOADER(text)  # its reader refuses control characters at once
    except yaml.YAMLError as exc:
        parsed.issues.append(_syntax_issue(exc, path))
        return parsed
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            document_line = node.start_mark.line + 1
            too_large = document_bounds(node)
            if too_large is not None:
                parsed.issues.append(
                    FieldIssue("<file>", too_large, ErrorCode.FILE_UNREADABLE, path, document_line)
                )
                break
            try:
                data: Any = loader.construct_document(node)
            except _CONSTRUCTION_ERRORS as exc:
                message = _short(f"a value YAML cannot read: {exc}")
                parsed.issues.append(
                    FieldIssue("<file>", message, ErrorCode.YAML_SYNTAX, path, document_line)
                )
                break
            if data is None:
                continue  # an empty document, e.g. a trailing `---`
            for key, line in _duplicate_keys(node):
                parsed.issues.append(
                    FieldIssue(
                        key, f"key '{key}' appears twice", ErrorCode.DUPLICATE_KEY, path, line
                    )
                )
            lines = _key_lines(node)
            try:
                spec = with_app_resolved(parse_spec(data, default_domain), path)
                # A file says where a secret is, never what it is.
                problems = spec_file_secret_issues(spec.settings, "settings.")
                if backup_targets is not None:
                    problems += unknown_targets(spec, backup_targets)
            except SpecInvalid as exc:
                problems = exc.issues
            if problems:
                for issue in problems:
                    line = _line_for(issue.field, lines, document_line)
                    parsed.issues.append(
                        FieldIssue(issue.field, issue.message, issue.code, path, line)
                    )
                continue
            if spec.project_name in names:
                parsed.issues.append(
                    FieldIssue(
                        "project_name",
                        f"'{spec.project_name}' is defined twice in this file "
                        f"(first at line {names[spec.project_name]})",
                        ErrorCode.DUPLICATE_PROJECT_NAME,
                        path,
                        lines.get(("project_name",), document_line),
                    )
                )
                continue
            names[spec.project_name] = lines.get(("project_name",), document_line)
            parsed.specs.append(spec)
    except yaml.YAMLError as exc:
        parsed.issues.append(_syntax_issue(exc, path))
    except RecursionError:  # the composer recurses once per level of nesting
        message = f"the document nests deeper than {MAX_DOCUMENT_DEPTH} levels"
        parsed.issues.append(FieldIssue("<file>", message, ErrorCode.FILE_UNREADABLE, path))
    finally:
        loader.dispose()
    return parsed


def with_app_resolved(spec: ServiceSpec, spec_file: str) -> ServiceSpec:
    """``app.path`` made absolute against the spec file's folder (the store keeps that)."""
    if spec.app is None:
        return spec
    resolved = os.path.normpath(Path(spec_file).parent / spec.app.path)
    return spec.model_copy(update={"app": spec.app.model_copy(update={"path": resolved})})


def read_spec_text(path: Path) -> str | FieldIssue:
    """The text of a spec file, or the one issue that it is unreadable or oversized.

    Opened without blocking and checked on the open descriptor: a FIFO (or a symlink to
    one, or to a device) swapped in for the file is refused, never waited on, since this
    runs on the agent's event loop. A symlink to a regular file is followed.
    """
    name = str(path)
    too_large = FieldIssue(
        "<file>",
        f"spec file is larger than {MAX_FILE_BYTES} bytes",
        ErrorCode.FILE_UNREADABLE,
        name,
    )
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise OSError("not a regular file")
            if info.st_size > MAX_FILE_BYTES:
                return too_large
            raw = handle.read(MAX_FILE_BYTES + 1)  # it may have grown since fstat
        if len(raw) > MAX_FILE_BYTES:
            return too_large
        return raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return FieldIssue(
            "<file>", _short(f"cannot read spec file: {exc}"), ErrorCode.FILE_UNREADABLE, name
        )


def read_spec_file(
    path: Path, default_domain: str, backup_targets: Collection[str] | None = None
) -> ParsedFile:
    """Parse ``path`` from disk; an unreadable or oversized file is one issue."""
    text = read_spec_text(path)
    if isinstance(text, FieldIssue):
        return ParsedFile(str(path), issues=[text])
    return parse_spec_file(str(path), text, default_domain, backup_targets)


class SpecDirectory:
    """Keeps the store's file-owned services equal to the spec files of one directory.

    ``on_change`` receives the names whose desired state may have changed (the agent
    enqueues them). ``issues`` is the current problem list per file, also kept in the store.
    """

    def __init__(
        self,
        directory: Path,
        store: Store,
        default_domain: str,
        on_change: Callable[[set[str]], None] = lambda names: None,
        agent_port: int | None = None,
        backup_targets: Collection[str] = (),
    ) -> None:
        self.directory = directory
        self.backup_targets = frozenset(backup_targets)
        self.store = store
        self.default_domain = default_domain
        self.on_change = on_change
        self.agent_port = agent_port
        self.issues: dict[str, list[FieldIssue]] = {}
        self._ready = asyncio.Event()
        # Parsed files by (inode, size, mtime): the periodic rescan re-reads only edits,
        # and syncs again only files with problems or changed on either side.
        self._parsed: dict[str, tuple[tuple[int, int, int], ParsedFile]] = {}
        self._clean = CleanFiles()
        self._watcher: DirectoryWatcher | None = None

    def spec_files(self) -> list[Path]:
        try:
            entries = sorted(self.directory.iterdir())
        except FileNotFoundError:
            return []
        return [entry for entry in entries if is_spec_file_name(entry.name)]

    def _known_files(self) -> set[str]:
        """Files the store has services of, or has problems recorded for."""
        known = {
            source for source in self.store.source_files() if Path(source).parent == self.directory
        }
        known.update(
            path for path in self.store.file_issues() if Path(path).parent == self.directory
        )
        return known

    def scan(self) -> set[str]:
        """Bring every file of the directory (and every vanished one) into the store."""
        if self._watcher is not None and self._watcher.ensure_watches():
            log.warning(
                "the spec directory is missing; watching it again once it is back",
                directory=str(self.directory),
            )
        paths = {str(path) for path in self.spec_files()} | self._known_files()
        stale = self._clean.stale(paths, self.store.file_owned_rows())
        changed = self.sync_paths(stale, reuse_parsed=True)
        parsed = self._parsed
        keys = {p: parsed[p][0] if p in parsed and p not in self.issues else None for p in stale}
        self._clean.synced(keys, self.store.file_owned_rows())
        return changed

    def sync_paths(self, paths: Iterable[str], *, reuse_parsed: bool = False) -> set[str]:
        """Re-read ``paths`` (level-triggered), then retry files that lost a name conflict.

        ``on_change`` gets the names whose desired state changed (possibly none, when only
        a file's problems changed): a rescan of unchanged files costs no reconcile.
        """
        issues_before = {path: list(found) for path, found in self.issues.items()}
        changed: set[str] = set()
        for path in paths:
            changed |= self._sync_file(path, reuse_parsed)
        if changed:
            changed |= self._retry_conflicts()
        if changed or self.issues != issues_before:
            self.on_change(changed)
        return changed

    def _retry_conflicts(self) -> set[str]:
        """Re-read files that lost a name, port or domain to another source (it may be free
        now)."""
        changed: set[str] = set()
        for path in sorted(self.issues):
            if any(issue.code in _CONFLICT_CODES for issue in self.issues[path]):
                changed |= self._sync_file(path, reuse_parsed=True)
        return changed

    def _sync_file(self, path: str, reuse_parsed: bool = False) -> set[str]:
        """Apply one file; the names whose desired state changed (created, edited, gone)."""
        before = self.store.owned_generations(file_owner(path))
        if not reuse_parsed:
            self._clean.forget(path)  # an event: the next rescan syncs it again
        parsed = self._parse(Path(path), reuse_parsed)
        issues = list(parsed.issues)
        if parsed.ok:
            specs, port_issues = self._held_back_by_host_ports(path, parsed.specs)
            issues += port_issues
            conflicts = self.store.sync_file(path, specs)
            for name, taken in conflicts.items():
                issues += [FieldIssue(i.field, i.message, i.code, path) for i in taken]
                log.warning(
                    "spec conflict", file=path, service=name, codes=[str(i.code) for i in taken]
                )
        else:
            log.warning(
                "spec file is broken; its services keep their last good spec",
                file=path,
                issues=[str(issue) for issue in issues],
            )
        if issues:
            self.issues[path] = issues
        else:
            self.issues.pop(path, None)
        self.store.set_file_issues(path, issues)
        after = self.store.owned_generations(file_owner(path))
        return {
            name for name in before.keys() | after.keys() if before.get(name) != after.get(name)
        }

    def _parse(self, path: Path, reuse_parsed: bool) -> ParsedFile:
        """The file's specs and issues; with ``reuse_parsed`` (the periodic rescan) parsed
        again only when its inode, size or mtime changed. An inotify event always re-reads:
        two same-size writes within the file system's mtime granularity look unchanged."""
        key = stat_key(path)
        if key is None or not is_spec_file_name(path.name):
            self._parsed.pop(str(path), None)
            return ParsedFile(str(path))  # removed: its services go (data archived)
        cached = self._parsed.get(str(path))
        if reuse_parsed and cached is not None and cached[0] == key:
            return cached[1]
        parsed = read_spec_file(path, self.default_domain, self.backup_targets)
        self._parsed[str(path)] = (key, parsed)
        return parsed

    def _held_back_by_host_ports(
        self, path: str, specs: list[ServiceSpec]
    ) -> tuple[list[ServiceSpec], list[FieldIssue]]:
        """Specs whose new port is the agent's own or held by another process on the host.

        Such a spec is not applied: a service this file already had keeps its last good
        spec, a new one waits (the periodic rescan retries once the port is free).
        """
        kept: list[ServiceSpec] = []
        issues: list[FieldIssue] = []
        for spec in specs:
            existing = self.store.get_service(spec.project_name)
            if existing is not None and existing.spec.port == spec.port:
                kept.append(spec)
                continue
            report = validate_port_on_host(spec, self.agent_port)
            if report is None:
                kept.append(spec)
                continue
            issues.append(FieldIssue(report.field, report.message, report.code, path))
            if existing is not None and existing.owner == file_owner(path):
                kept.append(existing.spec)
        return kept, issues

    async def run(self) -> None:
        """Watch the directory and follow its changes until cancelled.

        The inotify watch is installed before the first scan, so a file written in between
        is seen by one or the other; ``wait_ready`` returns once both are done.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        watcher = DirectoryWatcher(
            [self.directory],
            is_spec_file_name,
            quiet=WATCH_QUIET,
            max_delay=WATCH_MAX_DELAY,
            complete_quiet=WATCH_COMPLETE_QUIET,
        )
        watcher.start()
        self._watcher = watcher
        try:
            self.scan()
            self._ready.set()
            async for batch in watcher.batches():
                if batch is None:  # the kernel's queue overflowed: anything may have changed
                    self.scan()
                else:
                    self.sync_paths(sorted(str(path) for path in batch))
        finally:
            self._watcher = None
            watcher.close()

    async def wait_ready(self) -> None:
        await self._ready.wait()


_CONFLICT_CODES = {
    ErrorCode.DUPLICATE_PROJECT_NAME,
    ErrorCode.OWNED_BY_OTHER_SOURCE,
    ErrorCode.PORT_IN_USE,
    ErrorCode.DOMAIN_IN_USE,
    ErrorCode.DELETION_PENDING,
}
