"""schemathesis hooks for ``python -m tests.conformance`` (loaded through
``SCHEMATHESIS_HOOKS``; the runner passes the run's facts in ``POCKESTRATOR_CONFORMANCE``).

- the check that replaces ``positive_data_acceptance`` (``tests.conformance.checks``);
- credentials: the run's API token, and for ``logout`` a fresh dashboard session each time
  (the operation takes sessions only, and ends the one it is given; the runner makes them
  in the store beforehand, as logins would meet the login throttle);
- requests that stay meaningful: most generated creates and changes name a version the
  mirror serves (a random one never exists), and most creates get a name and port of their
  own (the generator reuses the document's examples, so nearly every create would collide
  with the first), so that services are created for the stateful phase to follow links to;
  the rest stay as generated and meet the world's refusals. The fuzzer never revokes its
  own token, and never opens a watch (``watch=true`` becomes false: a stream never ends).
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import Any

import requests
import schemathesis
from schemathesis import Case

from tests.conformance.checks import operation_id, refused_only_for_reasons_the_document_gives

RUN: dict[str, Any] = json.loads(os.environ.get("POCKESTRATOR_CONFORMANCE", "{}"))
# Of every four generated bodies, three are made to fit the world (chosen by the body's
# content, so that a replayed case is the same request).
FITTED_SHARE = 3
VERSIONED = frozenset({"createService", "validateService", "updateService"})
# Ports for fitted creates: below the kernel's ephemeral range, where clients' ports are.
PORTS = range(20000, 32768)

schemathesis.check(refused_only_for_reasons_the_document_gives)


SESSIONS: list[str] = []


def new_session() -> str:
    """One of the sessions the runner made (each logout ends one), then a login."""
    if not SESSIONS and RUN.get("sessions_file"):
        SESSIONS.extend(json.loads(Path(RUN["sessions_file"]).read_text()))
        RUN["sessions_file"] = None
    if SESSIONS:
        return SESSIONS.pop()
    reply = requests.post(
        RUN["api"] + "/auth/login",
        json={"email": RUN["admin_email"], "password": RUN["admin_password"]},
        timeout=30,
    )
    reply.raise_for_status()
    return str(reply.json()["token"])


@schemathesis.auth(refresh_interval=None)
class Credentials:
    def get(self, case: Case, context: Any) -> str:
        return new_session() if operation_id(case) == "logout" else str(RUN["token"])

    def set(self, case: Case, data: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@schemathesis.hook
def before_call(context: Any, case: Case, kwargs: dict[str, Any]) -> None:
    operation = operation_id(case)
    if operation == "revokeToken" and (case.path_parameters or {}).get("id") == RUN["token_id"]:
        case.path_parameters = {**case.path_parameters, "id": "0fuzzers0own0"}
    if isinstance(case.query, dict) and str(case.query.get("watch", "")).lower() == "true":
        # A watch stream never ends (tests/integration/test_api_watch.py reads them); false
        # is as valid a value.
        case.query["watch"] = "false"
    meta = case.meta
    positive = meta is not None and meta.generation.mode.is_positive
    body = case.body
    if not (positive and operation in VERSIONED and isinstance(body, dict)):
        return
    digest = zlib.crc32(json.dumps(body, sort_keys=True, default=str).encode())
    if digest % 4 >= FITTED_SHARE:
        return
    if isinstance(body.get("pocketbase_version"), str):
        versions = RUN["versions"]
        body["pocketbase_version"] = versions[digest % len(versions)]
    if operation != "updateService" and isinstance(body.get("project_name"), str):
        # A suffix keeps the generated name's shape: it still ends in a letter or digit.
        body["project_name"] = f"{body['project_name'][:40]}-{digest % 16**6:06x}"
        body["port"] = PORTS[digest % len(PORTS)]
        domain = body.get("domain")
        if isinstance(domain, str) and domain and len(domain) < 240:
            body["domain"] = f"d{digest % 16**6:06x}.{domain}"
