"""Login throttling: which failed logins make the API refuse further attempts, from where.

Two rules, both keyed by the client address, so that failures from one address never lock
out an admin at another (an attacker who fails once every five minutes used to keep the
account locked for everyone):

1. Per e-mail and address: after ``n`` failures in a row, that e-mail is refused from that
   address for ``2**n * 100 ms`` after the last one, at most ``THROTTLE_CAP_SECONDS``; a
   success forgets them.
2. Per address, whatever the e-mails: a bucket of ``ADDRESS_BURST`` failures that refills
   one every ``ADDRESS_REFILL_SECONDS``, so that one address cannot spray guesses over many
   accounts (nor keep the password checks busy).

The e-mail is taken as given (case-folded), never looked up: an e-mail no account has is
counted exactly like one an account has, so no sequence of answers can tell them apart.
A failure is counted when the attempt is admitted, before its slow password check, so
guesses sent together meet the lock; an attempt whose password proves right takes its
own failure back (``LoginThrottle.succeeded``).

The state is in memory, not in the database: it counts e-mails no account has, and
addresses, and a write for known accounts alone would take time an unknown one does not.
It runs on the monotonic clock (so a wall clock set back locks no one out). Each entry is
forgotten ``THROTTLE_FORGET_SECONDS`` after its last failure, which is after any lock it
caused has ended, and each rule keeps at most ``max_entries`` of them, dropping the one
whose last failure is oldest first, so that many addresses cannot grow it without bound.
A restart of the agent forgets it all. Time is counted in whole microseconds, so that a
lock of 300 s is 300 s and not 300.0000000001 (which Retry-After, rounding up, would turn
into 301).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from pockestrator.clock import Clock

THROTTLE_BASE_SECONDS = 0.1
THROTTLE_CAP_SECONDS = 300.0
ADDRESS_BURST = 10
ADDRESS_REFILL_SECONDS = 300.0
THROTTLE_FORGET_SECONDS = 3600.0
THROTTLE_MAX_ENTRIES = 10_000

_US = 1_000_000
_BASE_US = round(THROTTLE_BASE_SECONDS * _US)
_CAP_US = round(THROTTLE_CAP_SECONDS * _US)
_REFILL_US = round(ADDRESS_REFILL_SECONDS * _US)
_FORGET_US = round(THROTTLE_FORGET_SECONDS * _US)


def lockout_seconds(failures: int) -> float:
    """How long an e-mail is refused at an address after ``failures`` failures in a row."""
    return _lockout_us(failures) / _US


def _lockout_us(failures: int) -> int:
    if failures <= 0:
        return 0
    if failures >= 32:  # 2**32 * 100 ms is far past the cap; avoid huge numbers
        return _CAP_US
    return min(_CAP_US, _BASE_US << failures)


def locked_for(failures: int, last_failed_us: int, now_us: int) -> int:
    """Rule 1: microseconds until the e-mail may be tried again at the address (0: now)."""
    if failures <= 0:
        return 0
    return max(0, last_failed_us + _lockout_us(failures) - now_us)


def bucket_locked_for(empty_at_us: int, now_us: int) -> int:
    """Rule 2: microseconds until the address's bucket has room for one more failure.

    The bucket is kept as the time it will be empty again (each failure moves that one
    refill later), so it has room while that time is at most ``ADDRESS_BURST - 1`` refills
    away.
    """
    return max(0, empty_at_us - now_us - (ADDRESS_BURST - 1) * _REFILL_US)


@dataclass(frozen=True)
class _Failures:
    """Rule 1's entry: failures in a row of one e-mail at one address."""

    count: int
    last_failed_us: int


@dataclass(frozen=True)
class _Bucket:
    """Rule 2's entry: when the address's bucket is empty again, and its last failure."""

    empty_at_us: int
    last_failed_us: int


class _Stamped(Protocol):
    @property
    def last_failed_us(self) -> int: ...


K = TypeVar("K")
V = TypeVar("V", bound=_Stamped)


class _Table(Generic[K, V]):
    """Entries in the order of their last failure: the oldest is forgotten, or dropped
    when the table is full, first."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[K, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        return self._entries.get(key)

    def put(self, key: K, entry: V) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def replace(self, key: K, entry: V) -> None:
        """Change an entry without moving it: no new failure happened."""
        self._entries[key] = entry

    def pop(self, key: K) -> None:
        self._entries.pop(key, None)

    def forget_before(self, cutoff_us: int) -> None:
        while self._entries:
            key, entry = next(iter(self._entries.items()))
            if entry.last_failed_us > cutoff_us:
                return
            del self._entries[key]


class LoginThrottle:
    """The two rules of the module over the clock's monotonic time; safe between threads.

    ``admit`` decides an attempt before its password is checked and counts it as a
    failure; ``succeeded`` takes that back when the password proved right.
    """

    def __init__(self, clock: Clock, *, max_entries: int = THROTTLE_MAX_ENTRIES) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: _Table[tuple[str, bytes], _Failures] = _Table(max_entries)
        self._buckets: _Table[str, _Bucket] = _Table(max_entries)

    def __len__(self) -> int:
        """Entries held, over both rules (what the memory bound is about)."""
        with self._lock:
            return len(self._failures) + len(self._buckets)

    def admit(self, email: str, address: str) -> float:
        """Decide an attempt at ``email`` from ``address``: 0.0 when it may go on, and it
        is counted as a failure from now; else the seconds until it may, counting nothing."""
        now = self._now_us()
        key = (address, _email_key(email))
        with self._lock:
            self._forget(now)
            failures = self._failures.get(key)
            bucket = self._buckets.get(address)
            wait = max(
                locked_for(failures.count, failures.last_failed_us, now) if failures else 0,
                bucket_locked_for(bucket.empty_at_us, now) if bucket else 0,
            )
            if wait > 0:
                return wait / _US
            count = failures.count + 1 if failures else 1
            self._failures.put(key, _Failures(count, now))
            empty_at = max(bucket.empty_at_us, now) if bucket else now
            self._buckets.put(address, _Bucket(empty_at + _REFILL_US, now))
            return 0.0

    def succeeded(self, email: str, address: str) -> None:
        """The attempt ``admit`` let through had the right password: the e-mail's failures
        at the address are forgotten, and the address's bucket gets its failure back."""
        now = self._now_us()
        with self._lock:
            self._failures.pop((address, _email_key(email)))
            bucket = self._buckets.get(address)
            if bucket is None:
                return
            empty_at = bucket.empty_at_us - _REFILL_US
            if empty_at <= now:
                self._buckets.pop(address)
            else:
                self._buckets.replace(address, _Bucket(empty_at, bucket.last_failed_us))

    def _now_us(self) -> int:
        return round(self._clock.monotonic() * _US)

    def _forget(self, now_us: int) -> None:
        self._failures.forget_before(now_us - _FORGET_US)
        self._buckets.forget_before(now_us - _FORGET_US)


def _email_key(email: str) -> bytes:
    """A fixed-size key: an e-mail field of any length costs the same memory, and what
    people type there by mistake (their password, often) is not kept."""
    return hashlib.sha256(email.casefold().encode()).digest()
