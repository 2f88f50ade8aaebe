"""When a schema-valid request may still be refused: only for what the document cannot
state as a schema, because it is the state of the world or a rule across fields.

A request that matches the document can be refused because of what is on the host and in
the store (the version does not exist, the port is taken, the name is used) or because of a
rule JSON Schema cannot express and the document states in words (a variable in both
``env`` and ``secret_env``; a patch that renames a service). Every other refusal of a
schema-valid request means the document hides a constraint the server enforces: a defect
of the document, or of the server.

Pure: the answer's status and body in, the unexplained problems out, so the rules are table
tested (tests/unit/test_conformance_refusals.py) and the same in every run.
"""

from __future__ import annotations

from typing import Any

from pockestrator.specs.errors import ErrorCode

# The world's answers: what exists, and what another service or process holds.
WORLD = frozenset(
    {
        ErrorCode.VERSION_NOT_FOUND,
        ErrorCode.PORT_IN_USE,
        ErrorCode.PORT_RESERVED,
        ErrorCode.DUPLICATE_PROJECT_NAME,
        ErrorCode.PROJECT_NAME_EXISTS,
        ErrorCode.DOMAIN_IN_USE,
        ErrorCode.UNKNOWN_TARGET,  # a target the agent's configuration does not name
        ErrorCode.VERSION_DOWNGRADE,  # lower than the deployed one, with no backup of it
        ErrorCode.PRECONDITION_FAILED,  # If-Match names another generation than the stored one
        ErrorCode.IDEMPOTENCY_KEY_REUSED,  # the key was used before, for another request
    }
)
# (operation, field, code) of each rule the document states in words; None: any operation.
IN_WORDS: frozenset[tuple[str | None, str, ErrorCode]] = frozenset(
    {
        # ServicePatchBody: "project_name may be given, but must not change".
        ("updateService", "project_name", ErrorCode.INVALID_VALUE),
        # secret_env: "A name is given in env or here, not in both".
        (None, "<spec>", ErrorCode.INVALID_ENV_NAME),
        # backups.schedule and verify: "five cron fields ... that croniter accepts".
        (None, "backups.schedule", ErrorCode.INVALID_SCHEDULE),
        (None, "backups.verify", ErrorCode.INVALID_SCHEDULE),
        (None, "wake_schedule", ErrorCode.INVALID_SCHEDULE),
        # sleep_after: "Needs proxy.hold_requests of 1 or more".
        (None, "sleep_after", ErrorCode.INVALID_SLEEP_AFTER),
        # settings: "an enabled smtp without host", "an enabled s3 without all of ...", "an
        # enabled rate limiter with rules: []" and two rules PocketBase takes as the same.
        (None, "settings.smtp", ErrorCode.INVALID_SMTP),
        (None, "settings.s3", ErrorCode.INVALID_S3),
        (None, "settings.rate_limits", ErrorCode.INVALID_RATE_LIMIT),
        # a backup at a point in time: "of a service that replicates", "not in the future".
        (None, "at", ErrorCode.INVALID_VALUE),
        # a patch that adds backups.replication: "target is required".
        (None, "backups.replication.target", ErrorCode.FIELD_REQUIRED),
        # an uploaded app archive: what it holds is judged entry by entry ("no links, no
        # devices, only pb_hooks, pb_migrations and pb_public, bounded"): 422 UNSAFE_ARCHIVE.
        (None, "archive", ErrorCode.UNSAFE_ARCHIVE),
        # proxy.aliases: no alias twice (in any case) and not the service's own domain.
        (None, "proxy.aliases", ErrorCode.INVALID_ALIAS),
        # a secret in settings: "exactly one of file, credential, value or stored".
        (None, "settings.smtp.password", ErrorCode.INVALID_SECRET),
        (None, "settings.s3.secret", ErrorCode.INVALID_SECRET),
        # logs: "until ... after since".
        ("getServiceLogs", "until", ErrorCode.INVALID_VALUE),
        # node: "a name no node of the fleet has is refused" and "it cannot change once the
        # service exists" (which nodes there are, and where a service runs, is the world's).
        (None, "node", ErrorCode.INVALID_VALUE),
        # logout's security is sessionAuth: "an API token is refused there".
        ("logout", "Authorization", ErrorCode.NOT_A_SESSION),
    }
)
# 4xx answers that do not refuse a request's content: credentials, a missing or busy
# resource, a throttle (what schemathesis' own check of valid data allows).
NOT_REFUSALS = frozenset({401, 403, 404, 409, 429})


def _problems(body: Any) -> list[tuple[str, str]]:
    """(field, code) of every problem of an error body (or of a failed validation)."""
    if not isinstance(body, dict) or not isinstance(body.get("errors"), list):
        return [("<body>", "no problem list in the answer")]
    found = []
    for problem in body["errors"]:
        if isinstance(problem, dict):
            found.append((str(problem.get("field")), str(problem.get("code"))))
    return found or [("<body>", "an empty problem list")]


def explained(operation_id: str, field: str, code: str) -> bool:
    if code in WORLD:
        return True
    return any(
        rule_field == field
        and str(rule_code) == code
        and (rule_operation is None or rule_operation == operation_id)
        for rule_operation, rule_field, rule_code in IN_WORDS
    )


def unexplained_refusals(operation_id: str, status: int, body: Any) -> list[str]:
    """The problems of a refused schema-valid request the document does not account for
    (empty when it was not refused, or only for reasons the document gives)."""
    if not 400 <= status < 500 or status in NOT_REFUSALS:
        return []
    return [
        f"{field}: {code}"
        for field, code in _problems(body)
        if not explained(operation_id, field, code)
    ]
