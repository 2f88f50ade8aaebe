"""The node credential: node-to-node calls signed with the fleet's shared secret (HMAC).

A node asks another for what only the owning host has (a service's live systemd fields,
its journal) or can do (start, stop, restart its unit). The call carries the caller's
node name, the moment it was made, a nonce and an HMAC-SHA256, under the fleet's secret,
of the method, the exact path and query, the body's hash, both node names, the moment and
the nonce. Why a shared secret rather than a token per node kept hashed in the store: the
store is the shared PostgreSQL, and nothing read from it (a leaked dump, a reader's role)
may let anyone call a node; the secret lives only in a root-only file on each host
(``fleet_secret_file``), is never sent, and a signature proves one call only:

- it names the node it is for (a call to beta cannot be replayed at gamma),
- it is taken within ``SKEW_SECONDS`` of its moment by the receiver's clock, and
- a receiver takes each signature once (``ReplayGuard``), so a copied call is refused
  within that window too.

A node's API accepts a signature only on the node-internal routes (``api.node_routes``),
and those take nothing else: a token opens none of them, a signature no other route.

The answer is signed too (``answer_signature``): its status, its body's hash, the call's
nonce, both node names and the moment, so the caller knows it came from the node it
called and for this call (not from a tenant that took that node's port, nor a copy of an
earlier answer). A stream is signed at its head (status and nonce), and each of its
frames (an event, a keepalive) is followed by a comment signing it, chained to the one
before (``FrameChain``): the asking node passes on only what holds, and ends the stream
at the first frame changed, dropped or added on the way.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pockestrator.files import SecretNotPrivate, SecretUnreadable, read_private_file

NODE_HEADER = "X-Pockestrator-Node"
TIME_HEADER = "X-Pockestrator-Node-Time"
NONCE_HEADER = "X-Pockestrator-Node-Nonce"
SIGNATURE_HEADER = "X-Pockestrator-Node-Signature"
ANSWER_TIME_HEADER = "X-Pockestrator-Node-Answer-Time"
ANSWER_SIGNATURE_HEADER = "X-Pockestrator-Node-Answer-Signature"
# In place of a body's hash: a stream's answer is signed at its head alone.
STREAM = "stream"
SKEW_SECONDS = 60
SECRET_MIN_BYTES = 32
_SIGNATURE = re.compile(r"[0-9a-f]{64}", re.ASCII)
_MOMENT = re.compile(r"[0-9]{1,12}", re.ASCII)
_NONCE = re.compile(r"[0-9a-f]{32}", re.ASCII)
_NODE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)


# A forged signature's refusal, and a registered-name check's: the same words.
NOT_THIS_CALL = "the signature does not hold for this call to this node"


class FleetSecretUnusable(Exception):
    """``fleet_secret_file`` cannot be read, is readable by others, or is too short."""


class CallRefused(Exception):
    """A node-internal call whose credential does not hold; the reason is for the log."""


def read_fleet_secret(path: Path) -> bytes:
    """The secret of ``path`` (root's, 0600), surrounding white space dropped."""
    try:
        secret = read_private_file(path).strip()
    except SecretUnreadable as exc:
        raise FleetSecretUnusable(f"fleet_secret_file: {path} cannot be read: {exc}") from None
    except SecretNotPrivate:
        raise FleetSecretUnusable(
            f"fleet_secret_file: {path} must be the agent's own (root's) with mode 0600 or "
            "stricter: nobody else may read it"
        ) from None
    if len(secret) < SECRET_MIN_BYTES:
        raise FleetSecretUnusable(
            f"fleet_secret_file: {path} holds {len(secret)} bytes; at least "
            f"{SECRET_MIN_BYTES} are needed (e.g. head -c 48 /dev/urandom | base64)"
        )
    return secret


def signature(
    secret: bytes,
    method: str,
    target: str,
    caller: str,
    callee: str,
    at: int,
    nonce: str,
    body: bytes = b"",
) -> str:
    """The HMAC of one call: ``target`` is the path and query exactly as sent, ``body``
    the bytes sent (by their SHA-256); ``nonce`` makes two calls alike in all else (the
    same second) two signatures."""
    digest = body_digest(body)
    parts = ("pockestrator-node-call-v1", method.upper(), target, caller, callee, str(at), nonce)
    message = "\n".join((*parts, digest))
    return hmac.new(secret, message.encode(), hashlib.sha256).hexdigest()


def signed_headers(
    secret: bytes,
    method: str,
    target: str,
    caller: str,
    callee: str,
    now: float,
    body: bytes = b"",
) -> dict[str, str]:
    """The headers that make a call from node ``caller`` to node ``callee``."""
    at, nonce = int(now), secrets.token_hex(16)
    return {
        NODE_HEADER: caller,
        TIME_HEADER: str(at),
        NONCE_HEADER: nonce,
        SIGNATURE_HEADER: signature(secret, method, target, caller, callee, at, nonce, body),
    }


@dataclass(frozen=True)
class Credential:
    """A call's credential as its headers carry it, well-formed and within the window."""

    caller: str
    at: int
    nonce: str
    signed: str


def secret_to_check(secret: bytes | None) -> bytes:
    """The secret calls are checked with; a node without one takes no call."""
    if secret is None:
        raise CallRefused("this node has no fleet_secret_file")
    return secret


def credential_of(headers: Mapping[str, str], now: float) -> Credential:
    """What a call claims, checked before anything of it is read: every header present
    and well-formed, the moment within ``SKEW_SECONDS`` of ``now``."""
    caller = headers.get(NODE_HEADER, "")
    moment = headers.get(TIME_HEADER, "")
    nonce = headers.get(NONCE_HEADER, "")
    signed = headers.get(SIGNATURE_HEADER, "")
    if not (
        _NODE.fullmatch(caller)
        and _MOMENT.fullmatch(moment)
        and _NONCE.fullmatch(nonce)
        and _SIGNATURE.fullmatch(signed)
    ):
        raise CallRefused("no node credential, or a malformed one")
    at = int(moment)
    _within_window(now, at)
    return Credential(caller, at, nonce, signed)


def _within_window(now: float, at: int) -> None:
    if abs(now - at) > SKEW_SECONDS:
        raise CallRefused(
            f"signed {int(now - at)} s from this node's clock (at most {SKEW_SECONDS})"
        )


def answer_signature(
    secret: bytes,
    status: int,
    nonce: str,
    answering: str,
    asking: str,
    at: int,
    digest: str,
) -> str:
    """The HMAC of one answer by node ``answering`` to the call of ``asking`` that carried
    ``nonce``; ``digest`` is the body's SHA-256 (hex), or ``STREAM`` for a stream's head."""
    parts = ("pockestrator-node-answer-v1", str(status), nonce, answering, asking, str(at))
    message = "\n".join((*parts, digest))
    return hmac.new(secret, message.encode(), hashlib.sha256).hexdigest()


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def answer_headers(
    secret: bytes, status: int, nonce: str, answering: str, asking: str, now: float, digest: str
) -> dict[str, str]:
    """The headers that sign an answer (``answer_signature``)."""
    at = int(now)
    signed = answer_signature(secret, status, nonce, answering, asking, at, digest)
    return {ANSWER_TIME_HEADER: str(at), ANSWER_SIGNATURE_HEADER: signed}


def check_answer(
    secret: bytes,
    headers: Mapping[str, str],
    status: int,
    nonce: str,
    answering: str,
    asking: str,
    now: float,
    digest: str,
) -> None:
    """``CallRefused`` saying why unless the answer is signed by a holder of the secret,
    as ``answering``'s answer to this call (``nonce``), of this status and body, lately."""
    moment = headers.get(ANSWER_TIME_HEADER, "")
    signed = headers.get(ANSWER_SIGNATURE_HEADER, "")
    if not (_MOMENT.fullmatch(moment) and _SIGNATURE.fullmatch(signed)):
        raise CallRefused(f"its answer ({status}) is not signed")
    at = int(moment)
    _within_window(now, at)
    expected = answer_signature(secret, status, nonce, answering, asking, at, digest)
    if not hmac.compare_digest(expected, signed):
        raise CallRefused(f"the signature of its answer ({status}) does not hold")


@dataclass
class ReplayGuard:
    """The signatures taken in the last ``2 * SKEW_SECONDS``: each is taken once."""

    seen: dict[str, float] = field(default_factory=dict)

    def first_time(self, signed: str, now: float) -> bool:
        for old, until in list(self.seen.items()):
            if until < now:
                del self.seen[old]
        if signed in self.seen:
            return False
        self.seen[signed] = now + 2 * SKEW_SECONDS
        return True


def check_signature(
    secret: bytes,
    this_node: str,
    method: str,
    target: str,
    credential: Credential,
    now: float,
    replays: ReplayGuard,
    body: bytes = b"",
) -> None:
    """``CallRefused`` unless ``credential`` signs this call, to this node, for the first
    time (``body``: what the call sent)."""
    c = credential
    expected = signature(secret, method, target, c.caller, this_node, c.at, c.nonce, body)
    if not hmac.compare_digest(expected, c.signed):
        raise CallRefused(NOT_THIS_CALL)
    if not replays.first_time(c.signed, now):
        raise CallRefused("this signed call was already taken once")


def verify(
    secret: bytes | None,
    this_node: str,
    method: str,
    target: str,
    headers: Mapping[str, str],
    now: float,
    replays: ReplayGuard,
    body: bytes = b"",
) -> str:
    """The calling node's name, or ``CallRefused`` saying why (never with the secret)."""
    checked = secret_to_check(secret)
    credential = credential_of(headers, now)
    check_signature(checked, this_node, method, target, credential, now, replays, body)
    return credential.caller


# A stream's frames are chained: each is followed by a comment carrying the HMAC of its
# bytes, its place, and the signature before it (the answer's head for the first), so a
# frame changed, dropped, added or moved breaks the chain from there on.
FRAME_SIGNATURE_PREFIX = b": sig "


def frame_signature(
    secret: bytes,
    nonce: str,
    answering: str,
    asking: str,
    index: int,
    previous: str,
    frame: bytes,
) -> str:
    """The HMAC of frame ``index`` (from 0) of the stream answering the call ``nonce``."""
    parts = ("pockestrator-node-frame-v1", nonce, answering, asking, str(index), previous)
    message = "\n".join((*parts, body_digest(frame)))
    return hmac.new(secret, message.encode(), hashlib.sha256).hexdigest()


@dataclass
class FrameChain:
    """One stream's chain, on either side: ``sign`` (the answering node) gives a frame
    with its signature comment after it; ``check`` (the asking node) takes what arrived
    and gives back the frames whose signatures hold, without their comments, or raises
    ``CallRefused`` at the first that does not (what came after it is never given)."""

    secret: bytes
    nonce: str
    answering: str
    asking: str
    previous: str  # the answer's head signature, then each frame's in turn
    index: int = 0
    broken: str | None = None  # why the chain broke (the asking side), once it has
    _pending: bytes | None = None
    _buffer: bytes = b""

    def _next(self, frame: bytes) -> str:
        signed = frame_signature(
            self.secret, self.nonce, self.answering, self.asking, self.index, self.previous, frame
        )
        self.index, self.previous = self.index + 1, signed
        return signed

    def sign(self, frame: bytes) -> bytes:
        return frame + FRAME_SIGNATURE_PREFIX + self._next(frame).encode() + b"\n\n"

    def check(self, chunk: bytes, limit: int) -> bytes:
        """The frames of ``chunk`` (and what was left of earlier ones) that hold, up to
        the first that does not: from then on ``broken`` says why, and nothing passes (a
        frame longer than ``limit`` bytes is refused too)."""
        passed: list[bytes] = []
        if self.broken is None:
            try:
                self._check(chunk, limit, passed)
            except CallRefused as exc:
                self.broken = str(exc)
        return b"".join(passed)

    def _check(self, chunk: bytes, limit: int, passed: list[bytes]) -> None:
        self._buffer += chunk
        while (end := self._buffer.find(b"\n\n")) >= 0:
            block, self._buffer = self._buffer[: end + 2], self._buffer[end + 2 :]
            if len(block) > limit:
                raise CallRefused(f"its stream sent a frame past {limit} bytes")
            is_signature = block.startswith(FRAME_SIGNATURE_PREFIX)
            if self._pending is None:
                if is_signature:
                    raise CallRefused(f"its stream's frame {self.index} has no frame")
                self._pending = block
                continue
            if not is_signature:
                raise CallRefused(f"its stream's frame {self.index} is not signed")
            given = block[len(FRAME_SIGNATURE_PREFIX) : -2]
            frame, self._pending = self._pending, None
            if not hmac.compare_digest(self._next(frame).encode(), given):
                raise CallRefused(
                    f"the signature of its stream's frame {self.index - 1} does not hold"
                )
            passed.append(frame)
        if len(self._buffer) > limit:
            raise CallRefused(f"its stream sent a frame past {limit} bytes")
