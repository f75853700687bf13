"""Throttling failed sign-ins (the form and the API's HTTP Basic alike).

Two counts, each over a sliding window (15 minutes):

* per **user and address**: 5 failures -> that user is refused from that address for
  15 minutes (``429``), the right password included; from any other address the right
  password still works, so an attacker cannot lock a viewer out;
* per **address**: 20 failures, whatever the user names -> the address is refused.

While refused, a request's password is not even checked (it could only be guessed).
A success clears its user-and-address count (not the address's: one good account must
not wash an address's failures away). IPv6 clients are counted per ``/64``, the block
one subscriber usually holds. The counts live behind :class:`ThrottleStore` so that
every worker and host shares them (a catalog-backed store); keys are digests, never
user names as typed.

>>> throttle = Throttle(MemoryThrottleStore(), clock=lambda: 1000.0)
>>> [throttle.failed("ops", "192.0.2.1") for _ in range(5)][-1]
900.0
>>> throttle.refused("ops", "192.0.2.1"), throttle.refused("ops", "192.0.2.2")
(900.0, None)
"""

from __future__ import annotations

import bisect
import hashlib
import ipaddress
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..auth import IPAddress, parse_address

#: IPv6 clients are counted per network of this many bits.
IPV6_PREFIX = 64


@dataclass(frozen=True)
class Limits:
    """How many failures, over how long, refuse for how long (seconds)."""

    per_user_address: int = 5
    per_address: int = 20
    window: float = 15 * 60.0
    block: float = 15 * 60.0


class ThrottleStore(Protocol):
    """Where failures and blocks are kept; keys are opaque strings."""

    def add_failure(self, key: str, at: float, since: float) -> int:
        """Note a failure at ``at``; the failures under ``key`` since ``since``, it included."""
        ...

    def clear_failures(self, key: str) -> None:
        """Forget the failures under ``key``."""
        ...

    def block(self, key: str, until: float) -> None:
        """Refuse ``key`` until ``until`` (a later block wins over an earlier one)."""
        ...

    def blocked_until(self, keys: Sequence[str], now: float) -> float | None:
        """The latest end of a block on any of ``keys`` that is after ``now``, or ``None``."""
        ...

    def delete_expired(self, now: float, since: float) -> int:
        """Forget failures before ``since`` and blocks ended by ``now``; how many."""
        ...


class MemoryThrottleStore:
    """A :class:`ThrottleStore` in this process's memory (tests, a single process).

    :param max_keys: keys kept at most; past it the oldest are dropped, so names made
        up by the million cannot fill the memory.
    """

    def __init__(self, max_keys: int = 100_000) -> None:
        self._failures: dict[str, list[float]] = {}
        self._blocks: dict[str, float] = {}
        self._max = max_keys
        self._lock = threading.Lock()

    def add_failure(self, key: str, at: float, since: float) -> int:
        with self._lock:
            times = self._failures.pop(key, [])
            del times[:bisect.bisect_left(times, since)]
            bisect.insort(times, at)
            self._failures[key] = times  # re-inserted: the dict's order is by last use
            while len(self._failures) > self._max:
                del self._failures[next(iter(self._failures))]
            return len(times)

    def clear_failures(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def block(self, key: str, until: float) -> None:
        with self._lock:
            self._blocks[key] = max(until, self._blocks.get(key, until))
            while len(self._blocks) > self._max:
                del self._blocks[next(iter(self._blocks))]

    def blocked_until(self, keys: Sequence[str], now: float) -> float | None:
        with self._lock:
            ends = [self._blocks[k] for k in keys if self._blocks.get(k, now) > now]
        return max(ends) if ends else None

    def delete_expired(self, now: float, since: float) -> int:
        gone = 0
        with self._lock:
            for key in list(self._failures):
                times = self._failures[key]
                if not times or times[-1] < since:
                    del self._failures[key]
                    gone += 1
            for key in [k for k, until in self._blocks.items() if until <= now]:
                del self._blocks[key]
                gone += 1
        return gone


class Throttle:
    """Decides whether a sign-in may be tried, and counts the ones that fail.

    Use: ``wait = throttle.refused(user, address)``; when ``wait`` is not ``None`` answer
    ``429`` with ``Retry-After: ceil(wait)`` without checking the password; else check it
    and call :meth:`failed` or :meth:`succeeded`.

    :param clock: Unix seconds (injectable for tests).
    """

    def __init__(self, store: ThrottleStore, *, limits: Limits | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.limits = limits or Limits()
        self._clock = clock

    def refused(self, user: str, address: str | IPAddress | None) -> float | None:
        """Seconds until ``user`` may try again from ``address``; ``None``: may try now."""
        now = self._clock()
        until = self.store.blocked_until(_keys(user, address), now)
        return None if until is None else until - now

    def failed(self, user: str, address: str | IPAddress | None) -> float | None:
        """Count a failed sign-in; the seconds refused when this failure is one too many."""
        now = self._clock()
        since = now - self.limits.window
        pair, place = _keys(user, address)
        refused = None
        if self.store.add_failure(pair, now, since) >= self.limits.per_user_address:
            self.store.block(pair, now + self.limits.block)
            refused = self.limits.block
        if self.store.add_failure(place, now, since) >= self.limits.per_address:
            self.store.block(place, now + self.limits.block)
            refused = self.limits.block
        return refused

    def succeeded(self, user: str, address: str | IPAddress | None) -> None:
        """A sign-in with the right password: its user-and-address count starts again."""
        self.store.clear_failures(_keys(user, address)[0])

    def sweep(self) -> int:
        """Forget failures outside the window and blocks that have ended."""
        now = self._clock()
        return self.store.delete_expired(now, now - self.limits.window)


def client_key(address: str | IPAddress | None) -> str:
    """How an address is counted: itself (IPv4), its ``/64`` (IPv6), or ``unknown``.

    >>> client_key("2001:db8:1:2:3:4:5:6"), client_key("::ffff:192.0.2.7")
    ('2001:db8:1:2::/64', '192.0.2.7')
    """
    parsed = parse_address(address) if isinstance(address, str) else address
    if parsed is None:
        return "unknown"
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((parsed, IPV6_PREFIX), strict=False))
    return str(parsed)


def _keys(user: str, address: str | IPAddress | None) -> tuple[str, str]:
    """The store keys of the user-and-address count and of the address's count."""
    client = client_key(address)
    pair = "\0".join(("pair", user, client)).encode("utf-8", "surrogateescape")
    place = "\0".join(("address", client)).encode("utf-8", "surrogateescape")
    return (hashlib.sha256(pair).hexdigest(), hashlib.sha256(place).hexdigest())
