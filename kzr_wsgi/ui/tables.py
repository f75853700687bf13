"""The search page's state in the catalog: sessions, failed sign-ins, share links, plays.

Kept in the catalog because every worker and every host behind one page uses the same
one (``--catalog postgresql://…`` on several hosts; the SQLite file under ``--root``
on one): a sign-out, an expiry, a revoked link or a throttled address holds everywhere at
once. The tables are the catalog's third migration (:mod:`kzr_wsgi.catalog.schema`);
no secret is kept in any of them (sessions and links by the SHA-256 of their id).

Each class implements a protocol of a pure module: :class:`CatalogSessionStore`
(:class:`~kzr_wsgi.ui.sessions.SessionStore`), :class:`CatalogThrottleStore`
(:class:`~kzr_wsgi.ui.throttle.ThrottleStore`), :class:`CatalogShareStore`
(:class:`~kzr_wsgi.ui.shares.ShareStore`); :class:`CatalogPlays` says whether an audio
request starts a play worth logging.

>>> from kzr_wsgi.ui.sessions import Sessions
>>> sessions = Sessions(CatalogSessionStore(catalog))    # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from ..catalog import Catalog
from ..catalog.schema import UI_BLOCKS, UI_FAILURES, UI_PLAYS, UI_SESSIONS, UI_SHARES
from ..catalog.search import from_micros, micros
from .sessions import SessionRecord
from .shares import Share

_SESSION_COLUMNS = "id_hash, viewer, created_us, last_seen_us, expires_us"
_SHARE_COLUMNS = "id, token_hash, recording, maker, created_us, expires_us, revoked_us"


def _us(seconds: float) -> int:
    return int(seconds * 1_000_000)


def _seconds(us: Any) -> float:
    return int(us) / 1_000_000


class CatalogSessionStore:
    """Sessions in the catalog's ``kzr_ui_sessions`` table."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def create(self, record: SessionRecord) -> None:
        self.catalog.write((
            f"INSERT INTO {UI_SESSIONS} ({_SESSION_COLUMNS}) "
            "VALUES (:h, :viewer, :created, :seen, :expires)",
            {"h": record.id_hash, "viewer": record.user, "created": _us(record.created_at),
             "seen": _us(record.last_seen), "expires": _us(record.expires_at)}))

    def get(self, id_hash: str) -> SessionRecord | None:
        found = self.catalog.select(
            f"SELECT {_SESSION_COLUMNS} FROM {UI_SESSIONS} WHERE id_hash = :h", {"h": id_hash})
        if not found:
            return None
        h, viewer, created, seen, expires = found[0]
        return SessionRecord(str(h), str(viewer), _seconds(created), _seconds(seen),
                             _seconds(expires))

    def touch(self, id_hash: str, last_seen: float) -> None:
        self.catalog.write((f"UPDATE {UI_SESSIONS} SET last_seen_us = :seen "
                            "WHERE id_hash = :h AND last_seen_us < :seen",
                            {"h": id_hash, "seen": _us(last_seen)}))

    def delete(self, id_hash: str) -> None:
        self.catalog.write((f"DELETE FROM {UI_SESSIONS} WHERE id_hash = :h", {"h": id_hash}))

    def delete_for_user(self, user: str) -> int:
        return self.catalog.write((f"DELETE FROM {UI_SESSIONS} WHERE viewer = :viewer",
                                   {"viewer": user}))[0]

    def delete_expired(self, now: float, idle_before: float) -> int:
        return self.catalog.write((
            f"DELETE FROM {UI_SESSIONS} WHERE expires_us <= :now OR last_seen_us <= :idle",
            {"now": _us(now), "idle": _us(idle_before)}))[0]


class CatalogThrottleStore:
    """Failed sign-ins and blocks in ``kzr_ui_failures`` and ``kzr_ui_blocks``."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def add_failure(self, key: str, at: float, since: float) -> int:
        params = {"key": key, "at": _us(at), "since": _us(since)}
        self.catalog.write(
            (f"DELETE FROM {UI_FAILURES} WHERE key = :key AND at_us < :since", params),
            (f"INSERT INTO {UI_FAILURES} (key, at_us) VALUES (:key, :at)", params))
        found = self.catalog.select(
            f"SELECT COUNT(*) FROM {UI_FAILURES} WHERE key = :key AND at_us >= :since", params)
        return int(found[0][0])

    def clear_failures(self, key: str) -> None:
        # Read first: a success (every Basic request of a script) writes nothing unless
        # there were failures to forget.
        if self.catalog.select(f"SELECT 1 FROM {UI_FAILURES} WHERE key = :key", {"key": key}):
            self.catalog.write((f"DELETE FROM {UI_FAILURES} WHERE key = :key", {"key": key}))

    def block(self, key: str, until: float) -> None:
        self.catalog.write((
            f"INSERT INTO {UI_BLOCKS} (key, until_us) VALUES (:key, :until) "
            f"ON CONFLICT (key) DO UPDATE SET until_us = CASE WHEN excluded.until_us > "
            f"{UI_BLOCKS}.until_us THEN excluded.until_us ELSE {UI_BLOCKS}.until_us END",
            {"key": key, "until": _us(until)}))

    def blocked_until(self, keys: Sequence[str], now: float) -> float | None:
        names = {f"k{i}": key for i, key in enumerate(keys)}
        if not names:
            return None
        found = self.catalog.select(
            f"SELECT MAX(until_us) FROM {UI_BLOCKS} WHERE until_us > :now AND key IN "
            f"({', '.join(':' + name for name in names)})", {"now": _us(now), **names})
        value = found[0][0] if found else None
        return None if value is None else _seconds(value)

    def delete_expired(self, now: float, since: float) -> int:
        counts = self.catalog.write(
            (f"DELETE FROM {UI_FAILURES} WHERE at_us < :since", {"since": _us(since)}),
            (f"DELETE FROM {UI_BLOCKS} WHERE until_us <= :now", {"now": _us(now)}))
        return sum(counts)


class CatalogShareStore:
    """Share links in ``kzr_ui_shares``."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def create(self, share: Share) -> None:
        self.catalog.write((
            f"INSERT INTO {UI_SHARES} ({_SHARE_COLUMNS}) "
            "VALUES (:id, :h, :recording, :maker, :created, :expires, NULL)",
            {"id": share.id, "h": share.token_hash, "recording": share.recording,
             "maker": share.maker, "created": micros(share.created_at),
             "expires": micros(share.expires_at)}))

    def by_token_hash(self, token_hash: str) -> Share | None:
        return self._one("token_hash", token_hash)

    def by_id(self, share_id: str) -> Share | None:
        return self._one("id", share_id)

    def listed(self, maker: str | None) -> list[Share]:
        where, params = ("WHERE maker = :maker", {"maker": maker}) if maker is not None \
            else ("", {})
        rows = self.catalog.select(
            f"SELECT {_SHARE_COLUMNS} FROM {UI_SHARES} {where} ORDER BY created_us DESC, id",
            params)
        return [_share(row) for row in rows]

    def revoke(self, share_id: str, at: datetime) -> bool:
        return self.catalog.write((
            f"UPDATE {UI_SHARES} SET revoked_us = :at WHERE id = :id AND revoked_us IS NULL",
            {"id": share_id, "at": micros(at)}))[0] > 0

    def delete_ended(self, before: datetime) -> int:
        return self.catalog.write((
            f"DELETE FROM {UI_SHARES} WHERE expires_us < :before OR revoked_us < :before",
            {"before": micros(before)}))[0]

    def _one(self, column: str, value: str) -> Share | None:
        rows = self.catalog.select(
            f"SELECT {_SHARE_COLUMNS} FROM {UI_SHARES} WHERE {column} = :v", {"v": value})
        return _share(rows[0]) if rows else None


def _share(row: Sequence[Any]) -> Share:
    share_id, h, recording, maker, created, expires, revoked = row
    return Share(str(share_id), str(h), str(recording), str(maker), from_micros(int(created)),
                 from_micros(int(expires)),
                 None if revoked is None else from_micros(int(revoked)))


class CatalogPlays:
    """Whether an audio request starts a play: the first of its listener for that
    recording within ``window`` seconds (``kzr_ui_plays``), on any worker or host."""

    def __init__(self, catalog: Catalog, window: float = 30 * 60.0) -> None:
        self.catalog = catalog
        self.window = window

    def claim(self, listener: str, recording: str, now: datetime | None = None) -> bool:
        """True when ``listener`` (a session, a viewer, a link) starts playing ``recording``.

        Atomic: of two requests at once on two hosts, one gets True.
        """
        at = micros(now or datetime.now(timezone.utc))
        key = hashlib.sha256(f"{listener}\0{recording}".encode("utf-8", "surrogateescape")
                             ).hexdigest()
        before = at - _us(self.window)
        params = {"key": key, "at": at, "before": before}
        # Read first: the Range requests of a play being listened to write nothing.
        seen = self.catalog.select(f"SELECT at_us FROM {UI_PLAYS} WHERE key = :key", params)
        if seen and int(seen[0][0]) > before:
            return False
        updated, inserted = self.catalog.write(
            (f"UPDATE {UI_PLAYS} SET at_us = :at WHERE key = :key AND at_us <= :before",
             params),
            (f"INSERT INTO {UI_PLAYS} (key, at_us) VALUES (:key, :at) "
             "ON CONFLICT (key) DO NOTHING", params))
        return updated + inserted > 0

    def delete_old(self, now: datetime | None = None) -> int:
        """Forget plays older than the window; how many."""
        at = micros(now or datetime.now(timezone.utc))
        return self.catalog.write((f"DELETE FROM {UI_PLAYS} WHERE at_us <= :before",
                                   {"before": at - _us(self.window)}))[0]
