"""How a webhook delivery is signed, and how a receiver checks it (docs/observability.md).

The signed text is ``<timestamp>.<body>``: the Unix time of the attempt in whole seconds,
a dot, and the exact bytes of the JSON body. The signature is HMAC-SHA256 of it under the
webhook's secret, as lowercase hex, sent as ``X-Pockestrator-Signature: sha256=<hex>``
beside ``X-Pockestrator-Timestamp``. A receiver recomputes it, compares in constant time,
and refuses a timestamp outside its replay window (``REPLAY_WINDOW_SECONDS`` by default):
a captured request replayed later fails, and one changed in any byte fails at once.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Pockestrator-Signature"
TIMESTAMP_HEADER = "X-Pockestrator-Timestamp"
EVENT_HEADER = "X-Pockestrator-Event"
ATTEMPT_HEADER = "X-Pockestrator-Attempt"
IDEMPOTENCY_HEADER = "Idempotency-Key"
SCHEME = "sha256="
REPLAY_WINDOW_SECONDS = 300


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    signed = str(timestamp).encode() + b"." + body
    return SCHEME + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def verify(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    now: float,
    window: float = REPLAY_WINDOW_SECONDS,
) -> bool:
    """What a receiver checks: the timestamp is recent and the signature is the body's."""
    if not timestamp.isascii() or not timestamp.isdigit():
        return False
    if abs(now - int(timestamp)) > window:
        return False
    return hmac.compare_digest(sign(secret, int(timestamp), body), signature)
