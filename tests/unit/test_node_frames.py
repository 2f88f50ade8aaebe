"""A node's log stream is signed frame by frame, each signature chained to the one before
(api.node_signing.FrameChain): the asking node passes on what holds and stops at the
first frame changed, dropped, added or moved."""

from __future__ import annotations

import pytest

from pockestrator.api import sse
from pockestrator.api.node_signing import FrameChain

SECRET = b"s" * 40
HEAD = "ab" * 32
FRAMES = [
    sse.retry(3000),
    sse.frame("line one", event="log", event_id="c1"),
    sse.comment("keepalive"),
    sse.frame("line two\nsecond row", event="log", event_id="c2"),
    sse.frame("line three", event="log", event_id="c3"),
]


def chain(secret: bytes = SECRET, head: str = HEAD, nonce: str = "n1") -> FrameChain:
    return FrameChain(secret, nonce, "beta", "alpha", head)


def signed_stream(frames: list[bytes]) -> list[bytes]:
    """Each frame with its signature comment, as beta sends them."""
    signer = chain()
    return [signer.sign(frame) for frame in frames]


def passed(stream: bytes, checker: FrameChain, size: int = 7) -> bytes:
    """What alpha passes on of ``stream`` arriving in ``size``-byte pieces."""
    pieces = range(0, len(stream), size)
    return b"".join(checker.check(stream[at : at + size], 1 << 20) for at in pieces)


def test_a_signed_stream_arrives_whole_and_without_its_signatures() -> None:
    stream = b"".join(signed_stream(FRAMES))
    assert b": sig " in stream
    for size in (1, 7, 64, len(stream)):
        checker = chain()
        assert passed(stream, checker, size) == b"".join(FRAMES)
        assert checker.broken is None


def relayed_until_refused(stream: bytes, checker: FrameChain) -> tuple[bytes, str]:
    out = passed(stream, checker, 5)
    assert checker.broken is not None, "the chain held"
    return out, checker.broken


def tampered(signed: list[bytes]) -> list[bytes]:
    return [signed[0], signed[1], signed[2].replace(b"keepalive", b"keepalivf"), *signed[3:]]


def dropped(signed: list[bytes]) -> list[bytes]:
    return [*signed[:2], *signed[3:]]


def swapped(signed: list[bytes]) -> list[bytes]:
    return [*signed[:2], signed[3], signed[2], *signed[4:]]


def added(signed: list[bytes]) -> list[bytes]:
    return [*signed[:2], sse.frame("forged", event="log"), *signed[2:]]


def unsigned_extra(signed: list[bytes]) -> list[bytes]:
    # A whole frame copied with its signature: in another place its chain does not hold.
    return [*signed[:2], signed[1], *signed[2:]]


@pytest.mark.parametrize("change", [tampered, dropped, swapped, added, unsigned_extra])
def test_a_changed_stream_is_passed_on_only_up_to_the_change(change: object) -> None:
    assert callable(change)
    stream = b"".join(change(signed_stream(FRAMES)))
    out, why = relayed_until_refused(stream, chain())
    assert out == b"".join(FRAMES[:2]), out
    assert "frame" in why


@pytest.mark.parametrize(
    "checker",
    [
        chain(secret=b"x" * 40),  # another secret
        chain(head="cd" * 32),  # another answer's head
        chain(nonce="n2"),  # another call
    ],
)
def test_a_stream_signed_for_another_call_or_secret_passes_nothing(checker: FrameChain) -> None:
    out, _why = relayed_until_refused(b"".join(signed_stream(FRAMES)), checker)
    assert out == b""


def test_a_signature_with_no_frame_and_a_frame_past_the_bound_are_refused() -> None:
    lone = chain()
    assert lone.check(b": sig " + b"0" * 64 + b"\n\n", 1 << 20) == b""
    assert lone.broken is not None and "has no frame" in lone.broken
    long = chain()
    assert long.check(b"data: " + b"x" * 100, 64) == b""
    assert long.broken is not None and "past 64 bytes" in long.broken
    # Once broken, nothing more passes, however good.
    assert long.check(b"".join(signed_stream(FRAMES)), 1 << 20) == b""
