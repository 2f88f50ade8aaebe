"""The signature checks docs/observability.md gives receivers, in Python and in JavaScript, accept
what the agent sends and refuse a changed body or a stale timestamp."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from pockestrator.agent.signatures import sign

DOC = Path(__file__).resolve().parents[2] / "docs" / "observability.md"
SECRET = "doc-secret-0123456789"
BODY = b'{"event":{"id":3,"kind":"webhook_test"},"idempotency_key":"3"}'


def _block(language: str) -> str:
    (code,) = re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), re.S)
    return code


def _cases() -> list[tuple[str, bytes, str, bool]]:
    now = int(time.time())
    signature = sign(SECRET, now, BODY)
    return [
        (str(now), BODY, signature, True),
        (str(now), BODY + b" ", signature, False),
        (str(now - 3600), BODY, sign(SECRET, now - 3600, BODY), False),
        (str(now), BODY, sign("another", now, BODY), False),
    ]


def test_the_python_check_in_the_docs_accepts_only_what_the_agent_signed() -> None:
    namespace: dict[str, Any] = {}
    exec(_block("python"), namespace)
    verify = namespace["verify"]
    for timestamp, body, signature, accepted in _cases():
        assert verify(SECRET, timestamp, body, signature) is accepted, (timestamp, body)


@pytest.mark.skipif(shutil.which("node") is None, reason="no node to run the JavaScript")
def test_the_javascript_check_in_the_docs_accepts_only_what_the_agent_signed() -> None:
    cases = [
        {"timestamp": t, "body": b.decode(), "signature": s, "accepted": a}
        for t, b, s, a in _cases()
    ]
    script = (
        _block("js")
        + f"\nconst cases = {json.dumps(cases)};\n"
        + "console.log(JSON.stringify(cases.map((c) =>"
        + f" verify({json.dumps(SECRET)}, c.timestamp, Buffer.from(c.body), c.signature))));\n"
    )
    node = shutil.which("node")
    assert node is not None
    out = subprocess.run(
        [node, "-e", script], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    assert json.loads(out) == [c["accepted"] for c in cases]
