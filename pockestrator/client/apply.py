"""``apply``: make the agent's services match spec files, like ``kubectl apply``.

A spec whose project name the agent does not know is created (``POST /services``); one it
knows is changed with a JSON merge patch (``PATCH /services/{name}``) of the fields that
differ, and left alone when none do. The file is the whole truth for every field it can
hold, with two exceptions that are applied only when the file writes them down:
``desired_state`` (so that ``pockestrator stop`` is not undone by the next apply of a file
that never mentioned it) and ``superuser_email`` (a one-time action, not a lasting
property). ``created_by`` cannot be changed through the API and is only sent on create.

With ``--wait``, the writes go out together (a few threads, each request answered by the
agent after the reconcile it triggers, so the agent batches them into one wave), and the
services are followed until each is ``active`` (``inactive`` when it should be stopped) or
the timeout passes. Following is the agent's watch stream (``GET /services?watch=true``),
opened before the first write, read in a thread of its own: each change arrives as it is
committed, and the wait ends the moment everything is ready. A view older than what a
write answered (a smaller ``generation``) is not taken. Only if the stream cannot be had
(an agent from before it, a broken connection) does the wait fall back to re-reading the
list every ``POLL_INTERVAL``.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pockestrator.client.http import WAITING_TIMEOUT, ApiClient, ApiError, ClientError, service_path
from pockestrator.client.progress import Item, Progress

if TYPE_CHECKING:  # the spec parser is loaded only by the commands that read files
    from pockestrator.client.specfiles import Document

ONLY_WHEN_GIVEN = ("desired_state", "superuser_email")
SCALARS = (
    "port",
    "pocketbase_version",
    "domain",
    "description",
    "superuser_email",
    "allow_downgrade",
)
POLL_INTERVAL = 1.0
TICK = 0.25
WRITERS = 8
LIST_PAGE = 500

Action = Literal["create", "configure", "unchanged"]
# What the threads tell the waiting loop: a write answered, a view streamed, the stream lost.
News = tuple[Literal["written", "seen", "lost"], Any]


def create_body(doc: Document) -> dict[str, Any]:
    """The ``POST /services`` body of a spec (``domain`` already filled by the parser)."""
    body = doc.spec.model_dump(mode="json", exclude={"superuser_password_file", "app"})
    if not body.get("created_by"):
        body.pop("created_by", None)  # the agent fills in the caller
    if body.get("superuser_email") is None:
        body.pop("superuser_email", None)
    return body


def _env_patch(want: Mapping[str, str], have: Mapping[str, Any]) -> dict[str, str | None]:
    """Merge patch of ``env``: changed and new entries, and null for each one to remove."""
    patch: dict[str, str | None] = {k: v for k, v in want.items() if have.get(k) != v}
    patch.update({k: None for k in have if k not in want})
    return patch


def patch_body(doc: Document, current: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch that makes ``current`` (the API's view of a service) match ``doc``;
    empty when nothing differs."""
    want = create_body(doc)
    patch: dict[str, Any] = {}
    for key in SCALARS:
        if key in ONLY_WHEN_GIVEN and key not in doc.keys:
            continue
        if want.get(key) != current.get(key):
            patch[key] = want.get(key)
    if "desired_state" in doc.keys and want["desired_state"] != current.get("desired_state"):
        patch["desired_state"] = want["desired_state"]
    env = _env_patch(want["env"], current.get("env") or {})
    if env:
        patch["env"] = env
    for section in ("resources", "flags", "proxy", "tls"):
        have = current.get(section) or {}
        if any(have.get(key) != value for key, value in want[section].items()):
            patch[section] = want[section]  # every key: null resets the ones left out
    if sorted(want["extra_dirs"]) != sorted(current.get("extra_dirs") or []):
        patch["extra_dirs"] = want["extra_dirs"]
    return patch


def target_state(desired_state: str) -> str:
    return "inactive" if desired_state == "stopped" else "active"


@dataclass
class Outcome:
    """What happened to one spec; ``status`` is the agent's state of the service."""

    name: str
    action: Action
    body: dict[str, Any] = field(repr=False)
    desired_state: str = "running"
    changed: list[str] = field(default_factory=list)
    done: bool = False
    dry_run: bool = False
    status: str | None = None
    last_error: str | None = None
    # With both known, `status` describes the applied spec only once they are equal.
    generation: int | None = None
    observed_generation: int | None = None
    error: ClientError | None = None
    superuser_password: str | None = field(default=None, repr=False)

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def ready(self) -> bool:
        caught_up = (
            self.generation is None
            or self.observed_generation is None
            or self.observed_generation >= self.generation
        )
        return not self.failed and caught_up and self.status == target_state(self.desired_state)

    def observe(self, service: dict[str, Any]) -> None:
        """Take the agent's current view of the service."""
        self.status = service.get("status")
        self.desired_state = str(service.get("desired_state", self.desired_state))
        self.last_error = service.get("last_error")
        self.generation = service.get("generation", self.generation)
        self.observed_generation = service.get("observed_generation")

    @property
    def verb(self) -> str:
        """What was done, what would be (dry run), or what is still under way."""
        if self.failed:
            return "failed"
        if self.action == "unchanged":
            return "unchanged"
        past, conditional, ongoing = {
            "create": ("created", "would create", "creating"),
            "configure": ("configured", "would configure", "configuring"),
        }[self.action]
        if self.done:
            return past
        return conditional if self.dry_run else ongoing

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "project_name": self.name,
            "action": self.verb,
            "changed": self.changed,
            "status": self.status,
            "desired_state": self.desired_state,
            "ready": self.ready,
            "last_error": self.last_error,
            "error": None,
        }
        if isinstance(self.error, ApiError):
            data["error"] = {
                "status": self.error.status,
                "code": self.error.code,
                "message": self.error.message,
                "errors": [vars(issue) for issue in self.error.issues],
            }
        elif self.error is not None:
            data["error"] = {"message": str(self.error)}
        if self.superuser_password is not None:
            data["superuser_password"] = self.superuser_password
        return data


def list_services(client: ApiClient, status: str | None = None) -> list[dict[str, Any]]:
    """Every service (in ``status``, filtered by the agent), page by page along ``next``."""
    services: list[dict[str, Any]] = []
    query: dict[str, str | int | bool] = {"limit": LIST_PAGE}
    if status is not None:
        query["status"] = status
    while True:
        body = client.call("GET", "/services", query=query).body
        page = list(body.get("services") or [])
        services += page
        cursor = body.get("next")
        if not page or not cursor:
            return services
        query["cursor"] = str(cursor)


def plan(docs: Sequence[Document], existing: Mapping[str, Mapping[str, Any]]) -> list[Outcome]:
    """Create, configure (with the fields that differ) or leave alone, per document."""
    outcomes = []
    for doc in docs:
        name = doc.spec.project_name
        current = existing.get(name)
        if current is None:
            body = create_body(doc)
            outcomes.append(Outcome(name, "create", body, body["desired_state"]))
            continue
        patch = patch_body(doc, current)
        desired = patch.get("desired_state", current.get("desired_state", "running"))
        outcome = Outcome(
            name,
            "configure" if patch else "unchanged",
            patch,
            str(desired),
            changed=sorted(patch),
            status=current.get("status"),
            last_error=current.get("last_error"),
        )
        outcomes.append(outcome)
    return outcomes


def write(client: ApiClient, outcome: Outcome, wait: bool) -> None:
    """Send one create or patch; the outcome records the answer or the failure."""
    try:
        if outcome.action == "create":
            reply = client.call(
                "POST",
                "/services",
                query={"wait": wait},
                body=outcome.body,
                timeout=WAITING_TIMEOUT,
            )
        else:
            reply = client.call(
                "PATCH",
                service_path(outcome.name),
                query={"wait": wait},
                body=outcome.body,
                timeout=WAITING_TIMEOUT,
            )
    except ClientError as exc:
        outcome.error = exc
        return
    outcome.done = True
    outcome.observe(reply.body.get("service") or {})
    outcome.superuser_password = reply.body.get("superuser_password")


def dry_run_check(client: ApiClient, outcome: Outcome) -> None:
    """A create is checked by the agent without storing anything (``/validate/service``)."""
    if outcome.action != "create":
        return
    try:
        client.call("POST", "/validate/service", body=outcome.body, timeout=WAITING_TIMEOUT)
    except ClientError as exc:
        outcome.error = exc


def write_all(client: ApiClient, outcomes: Sequence[Outcome]) -> None:
    """One after the other, each answered at once (no wait)."""
    for outcome in outcomes:
        if outcome.action != "unchanged":
            write(client, outcome, wait=False)


def _start_writers(client: ApiClient, outcomes: Sequence[Outcome], news: queue.Queue[News]) -> None:
    """Send the writes from daemon threads (so Ctrl-C is never held up by one)."""
    jobs: queue.Queue[Outcome] = queue.Queue()
    for outcome in outcomes:
        jobs.put(outcome)

    def work() -> None:
        while True:
            try:
                outcome = jobs.get_nowait()
            except queue.Empty:
                return
            # Answered once stored: readiness comes from the watch stream (or the polls).
            try:
                write(client, outcome, wait=False)
            except Exception as exc:  # an answer of another shape: a failure, never a hang
                outcome.error = ClientError(f"{outcome.name}: unexpected answer ({exc})")
            finally:
                news.put(("written", outcome))

    for _ in range(min(WRITERS, len(outcomes))):
        threading.Thread(target=work, name="pockestrator-apply", daemon=True).start()


def _start_follower(client: ApiClient, news: queue.Queue[News]) -> None:
    """Read the watch stream in a daemon thread: each service view, then ``lost`` if it
    ends (the thread ends with the command, blocked in its read or not)."""

    def follow() -> None:
        try:
            for event in client.events("/services", {"watch": True}):
                if event.event == "service":
                    with contextlib.suppress(ValueError):
                        news.put(("seen", json.loads(event.data)))
        except ClientError:
            pass
        news.put(("lost", None))

    threading.Thread(target=follow, name="pockestrator-watch", daemon=True).start()


def _item(outcome: Outcome, writing: set[str]) -> Item:
    if outcome.name in writing:
        return Item(outcome.name, "applying", False)
    state = outcome.status or "unknown"
    detail = (outcome.last_error or "") if state == "error" else ""
    return Item(outcome.name, state, outcome.ready, detail)


def write_and_wait(
    client: ApiClient,
    outcomes: Sequence[Outcome],
    timeout: float,
    progress: Progress,
    clock: Callable[[], float] = time.monotonic,
) -> bool:
    """Write, then follow until every applied service is ready; False at the timeout."""
    deadline = clock() + timeout
    to_write = [o for o in outcomes if o.action != "unchanged"]
    writing = {o.name for o in to_write}
    by_name = {o.name: o for o in outcomes}
    latest: dict[str, dict[str, Any]] = {}  # views seen while the write was under way
    news: queue.Queue[News] = queue.Queue()
    _start_follower(client, news)
    _start_writers(client, to_write, news)
    watched = [o for o in outcomes if not o.failed]
    streaming = True
    last_poll = float("-inf")
    try:
        while True:
            watched = [o for o in watched if not o.failed]
            if (
                not streaming
                and clock() - last_poll >= POLL_INTERVAL
                and any(not o.ready and o.name not in writing for o in watched)
            ):
                last_poll = clock()
                _refresh(client, [o for o in watched if o.name not in writing])
            progress.update([_item(o, writing) for o in watched])
            if not writing and all(o.ready for o in watched):
                return True
            if clock() >= deadline and not writing:
                # A write under way when the wait runs out is waited for (it is answered
                # once stored, and bounded by the client's timeout): the command never
                # ends with a write it sent left to chance.
                return False
            # Wakes at each write answered and each change streamed, else after a tick
            # (the spinner).
            try:
                kind, item = news.get(timeout=max(0.0, min(TICK, deadline - clock())) or TICK)
            except queue.Empty:
                continue
            if kind == "written" and isinstance(item, Outcome):
                writing.discard(item.name)
                seen = latest.pop(item.name, None)
                if seen is not None:
                    _take(item, seen)
            elif kind == "seen" and isinstance(item, dict):
                name = item.get("project_name")
                outcome = by_name.get(name) if isinstance(name, str) else None
                if outcome is None:
                    continue
                if outcome.name in writing:
                    latest[outcome.name] = item
                else:
                    _take(outcome, item)
            elif kind == "lost":
                streaming = False
    finally:
        progress.close()


def _take(outcome: Outcome, service: dict[str, Any]) -> None:
    """Observe ``service`` unless it is older than what the outcome knows already."""
    generation = service.get("generation")
    if (
        outcome.generation is not None
        and isinstance(generation, int)
        and generation < outcome.generation
    ):
        return
    outcome.observe(service)


def _refresh(client: ApiClient, outcomes: Sequence[Outcome]) -> None:
    """The agent's current state of each service (one list, not one request each)."""
    try:
        current = {s.get("project_name"): s for s in list_services(client)}
    except ClientError:
        return  # a blip while watching is not a failure of the apply; the next poll retries
    for outcome in outcomes:
        service = current.get(outcome.name)
        if service is None:
            continue
        outcome.observe(service)
