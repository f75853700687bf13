"""Throttling failed sign-ins: per user and address, per address; an injected clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kzr_wsgi.ui.passwords import hash_password
from kzr_wsgi.ui.throttle import Limits, MemoryThrottleStore, Throttle, client_key
from kzr_wsgi.ui.viewers import Viewer, Viewers

MINUTE = 60.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def throttle(clock: Clock) -> Throttle:
    return Throttle(MemoryThrottleStore(), clock=clock)


def sign_in(throttle: Throttle, viewers: Viewers, user: str, password: str,
            address: str) -> int:
    """What a sign-in route answers: 429 refused, 401 wrong, 200 signed in."""
    if throttle.refused(user, address) is not None:
        return 429
    if viewers.check(user, password) is None:
        throttle.failed(user, address)
        return 401
    throttle.succeeded(user, address)
    return 200


@pytest.fixture(scope="module")
def viewers() -> Viewers:
    return Viewers([Viewer("ops", hash_password("right")), Viewer("acme", "acme-pw")])


def test_five_failures_refuse_that_user_from_that_address_only(
        throttle: Throttle, viewers: Viewers, clock: Clock) -> None:
    attacker, owner = "203.0.113.9", "198.51.100.20"
    answers = [sign_in(throttle, viewers, "ops", f"guess{n}", attacker) for n in range(6)]
    assert answers == [401] * 5 + [429]
    # Refused, the right password included: it is not even checked.
    assert sign_in(throttle, viewers, "ops", "right", attacker) == 429
    # The owner, elsewhere, signs in; another user from the attacker's address may try.
    assert sign_in(throttle, viewers, "ops", "right", owner) == 200
    assert sign_in(throttle, viewers, "acme", "acme-pw", attacker) == 200
    assert throttle.refused("ops", attacker) == pytest.approx(15 * MINUTE)
    clock.now += 15 * MINUTE - 1
    assert sign_in(throttle, viewers, "ops", "right", attacker) == 429
    clock.now += 1
    assert sign_in(throttle, viewers, "ops", "right", attacker) == 200


def test_the_window_slides(throttle: Throttle, clock: Clock) -> None:
    for _ in range(4):
        assert throttle.failed("ops", "192.0.2.1") is None
        clock.now += 4 * MINUTE  # 4 failures over 16 minutes: the first has left the window
    assert throttle.failed("ops", "192.0.2.1") is None
    assert throttle.refused("ops", "192.0.2.1") is None
    assert throttle.failed("ops", "192.0.2.1") == 15 * MINUTE  # 5 within 15 minutes


def test_a_success_clears_the_pair_not_the_address(throttle: Throttle) -> None:
    for _ in range(4):
        throttle.failed("ops", "192.0.2.1")
    throttle.succeeded("ops", "192.0.2.1")
    for _ in range(4):
        assert throttle.failed("ops", "192.0.2.1") is None
    # ...but the address's count kept all eight.
    for n in range(11):
        assert throttle.failed(f"user{n}", "192.0.2.1") is None
    assert throttle.failed("user-last", "192.0.2.1") == 15 * MINUTE  # the 20th
    assert throttle.refused("anyone", "192.0.2.1") is not None
    assert throttle.refused("anyone", "192.0.2.2") is None


def test_twenty_failures_from_an_address_refuse_every_user(throttle: Throttle,
                                                           viewers: Viewers) -> None:
    spray = [sign_in(throttle, viewers, f"name{n}", "pw", "203.0.113.50") for n in range(21)]
    assert spray == [401] * 20 + [429]
    assert sign_in(throttle, viewers, "ops", "right", "203.0.113.50") == 429
    assert sign_in(throttle, viewers, "ops", "right", "203.0.113.51") == 200


def test_ipv6_is_counted_per_64(throttle: Throttle) -> None:
    for n in range(5):
        throttle.failed("ops", f"2001:db8:0:1::{n + 1}")
    assert throttle.refused("ops", "2001:db8:0:1:ffff::9") is not None
    assert throttle.refused("ops", "2001:db8:0:2::1") is None
    assert client_key("not an address") == client_key(None) == "unknown"
    assert client_key("[2001:db8::1]") == "2001:db8::/64"


def test_sweep_and_a_bounded_memory_store(clock: Clock) -> None:
    store = MemoryThrottleStore(max_keys=50)
    throttle = Throttle(store, limits=Limits(per_user_address=2, per_address=1000), clock=clock)
    for n in range(200):
        throttle.failed(f"user{n}", "192.0.2.1")
    assert len(store._failures) <= 50  # noqa: SLF001 - the bound is the point
    throttle.failed("user199", "192.0.2.1")
    assert throttle.refused("user199", "192.0.2.1") is not None
    clock.now += 16 * MINUTE
    assert throttle.refused("user199", "192.0.2.1") is None
    assert throttle.sweep() > 0 and not store._failures and not store._blocks  # noqa: SLF001


@given(st.lists(st.tuples(st.sampled_from(["ops", "acme"]),
                          st.sampled_from(["192.0.2.1", "192.0.2.2"]),
                          st.floats(min_value=0, max_value=20 * MINUTE)), max_size=40))
@settings(max_examples=200, deadline=None)
def test_a_pair_is_refused_exactly_after_five_failures_in_fifteen_minutes(
        events: list[tuple[str, str, float]]) -> None:
    clock = Clock()
    throttle = Throttle(MemoryThrottleStore(), limits=Limits(per_address=1000), clock=clock)
    failures: dict[tuple[str, str], list[float]] = {}
    blocked: dict[tuple[str, str], float] = {}
    for user, address, step in events:
        clock.now += step
        pair = (user, address)
        expect = blocked.get(pair, 0) > clock.now
        assert (throttle.refused(user, address) is not None) is expect
        if expect:
            continue
        recent = [t for t in failures.get(pair, []) if t >= clock.now - 15 * MINUTE]
        failures[pair] = [*recent, clock.now]
        got = throttle.failed(user, address)
        if len(failures[pair]) >= 5:
            blocked[pair] = clock.now + 15 * MINUTE
            assert got == 15 * MINUTE
        else:
            assert got is None
