"""The search page's state in the catalog, on SQLite and PostgreSQL: sessions, failed
sign-ins, share links and plays, as two processes (two catalogs on one database) see them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from pgserver import pg_server, pg_url  # noqa: F401 - fixtures

from kzr_wsgi.catalog import Catalog, open_catalog
from kzr_wsgi.ui.sessions import Sessions
from kzr_wsgi.ui.shares import Share, new_token, token_hash
from kzr_wsgi.ui.tables import (
    CatalogPlays,
    CatalogSessionStore,
    CatalogShareStore,
    CatalogThrottleStore,
)
from kzr_wsgi.ui.throttle import Throttle


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def two(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Catalog, Catalog]]:
    """Two catalogs on one database: what two workers (or two hosts) hold."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'c.sqlite3'}"
    else:
        url = request.getfixturevalue("pg_url")
    first, second = open_catalog(url), open_catalog(url)
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def test_sessions_start_resume_expire_and_end_everywhere(two: tuple[Catalog, Catalog]) -> None:
    clock = Clock()
    here, there = (Sessions(CatalogSessionStore(c), clock=clock) for c in two)
    session = here.start("ops")
    assert there.resume(session.id) is not None
    clock.now += 120
    assert there.resume(session.id) is not None  # touched (over a minute since)
    assert here.store.get(session.record.id_hash).last_seen == clock.now  # type: ignore[union-attr]
    replaced = here.start("ops", replacing=session.id)
    assert there.resume(session.id) is None and there.resume(replaced.id) is not None
    other = there.start("acme")
    assert here.end_for_user("acme") == 1 and here.resume(other.id) is None
    here.end(replaced.id)
    assert there.resume(replaced.id) is None
    idle, old = here.start("a"), here.start("b")
    clock.now += 31 * 60
    there.resume(old.id)  # expired on its read, deleted
    assert here.sweep() == 1 and here.resume(idle.id) is None


def test_throttle_counts_across_processes(two: tuple[Catalog, Catalog]) -> None:
    clock = Clock()
    here, there = (Throttle(CatalogThrottleStore(c), clock=clock) for c in two)
    for n in range(4):
        (here if n % 2 else there).failed("ops", "192.0.2.1")
    assert here.refused("ops", "192.0.2.1") is None
    assert there.failed("ops", "192.0.2.1") == 900.0
    assert here.refused("ops", "192.0.2.1") == 900.0
    assert there.refused("ops", "192.0.2.2") is None
    clock.now += 600
    assert here.refused("ops", "192.0.2.1") == 300.0
    here.store.block("k", clock.now + 10)  # a later block wins, never an earlier one
    here.store.block("k", clock.now + 5)
    assert there.store.blocked_until(["k"], clock.now) == clock.now + 10
    clock.now += 301
    assert there.refused("ops", "192.0.2.1") is None
    there.succeeded("ops", "192.0.2.1")
    assert here.sweep() >= 1


def test_share_links_kept_by_their_hash(two: tuple[Catalog, Catalog]) -> None:
    here, there = (CatalogShareStore(c) for c in two)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    token = new_token()
    share = Share("0123456789abcdef", token_hash(token), "row-1", "ops", now,
                  now + timedelta(days=7))
    here.create(share)
    assert there.by_token_hash(token_hash(token)) == share
    assert there.by_id(share.id) == share and there.by_token_hash(token_hash("x" * 43)) is None
    assert [s.id for s in there.listed("ops")] == [share.id] and there.listed("acme") == []
    assert there.revoke(share.id, now) and not here.revoke(share.id, now)
    assert here.by_id(share.id).revoked_at == now  # type: ignore[union-attr]
    assert here.delete_ended(now + timedelta(seconds=1)) == 1 and there.listed(None) == []


def test_a_play_is_claimed_once_across_processes(two: tuple[Catalog, Catalog]) -> None:
    here, there = (CatalogPlays(c, window=1800) for c in two)
    now = datetime.now(timezone.utc)
    assert here.claim("session:a", "row-1", now)
    assert not there.claim("session:a", "row-1", now + timedelta(minutes=5))
    assert there.claim("session:b", "row-1", now) and there.claim("session:a", "row-2", now)
    assert there.claim("session:a", "row-1", now + timedelta(minutes=31))
    assert here.delete_old(now + timedelta(hours=2)) == 3
