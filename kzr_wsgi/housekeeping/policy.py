"""The retention policy, and the config file's ``[retention]`` table that states it.

Pure: no I/O, no command line. ``kzr-wsgi prune`` and ``serve``'s housekeeper read the
policy from the config file (see the manual's Retention and config file pages)::

    [retention]
    default = "90d"          # call and caller recordings
    interval = "1h"          # how often serve's housekeeper prunes
    [retention.accounts]
    4a1b0c2d3e4f5a6b7c8d9e0f1a2b3c4d = "forever"
    [retention.kinds]
    attachment = "2y"        # storage-plan attachments only when named

>>> policy = parse_retention({"default": "90d", "kinds": {"caller": "30d"}})
>>> policy.age_for("any-account", "caller").days
30
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from ..ages import format_age
from ..configtable import TableError, only_keys, sub_table, table_age

#: The recording kinds a policy may name (``Kind`` values).
KINDS = ("call", "caller", "attachment")
#: How often the housekeeper runs when ``[retention]`` does not say.
DEFAULT_INTERVAL = timedelta(hours=1)


@dataclass(frozen=True)
class RetentionPolicy:
    """How long recordings are kept: a default, per-account and per-kind overrides.

    An age of ``None`` means forever. :meth:`age_for` decides for one recording.
    """

    #: For call and caller recordings with no override; ``None``: kept forever.
    default: timedelta | None = None
    #: Account id -> age (``None``: that account's recordings are kept forever).
    accounts: Mapping[str, timedelta | None] = field(default_factory=dict)
    #: Kind (``call``, ``caller``, ``attachment``) -> age.
    kinds: Mapping[str, timedelta | None] = field(default_factory=dict)
    #: How often ``serve``'s housekeeper prunes.
    interval: timedelta = DEFAULT_INTERVAL

    def age_for(self, account_id: str | None, kind: str) -> timedelta | None:
        """How old a recording of ``kind`` in ``account_id`` may grow; ``None``: forever.

        The account's rule and the kind's rule replace the default; when both apply the
        longer one wins (deleting is the direction that cannot be undone). Storage-plan
        attachments (voicemail, greetings, prompts Kazoo still plays) are pruned only
        when ``[retention.kinds]`` names ``attachment``.
        """
        if kind not in self.kinds and kind not in ("call", "caller"):
            return None
        rules: list[timedelta | None] = []
        if account_id is not None and account_id in self.accounts:
            rules.append(self.accounts[account_id])
        if kind in self.kinds:
            rules.append(self.kinds[kind])
        if not rules:
            return self.default
        if any(rule is None for rule in rules):
            return None
        return max(rule for rule in rules if rule is not None)

    def describe(self) -> str:
        """One line for logs: ``default 90d; accounts a=forever; kinds attachment=2y``."""
        parts = [f"default {format_age(self.default)}"]
        if self.accounts:
            parts.append("accounts " + ", ".join(
                f"{k}={format_age(v)}" for k, v in sorted(self.accounts.items())))
        if self.kinds:
            parts.append("kinds " + ", ".join(
                f"{k}={format_age(v)}" for k, v in sorted(self.kinds.items())))
        return "; ".join(parts)


def parse_retention(table: Mapping[str, Any]) -> RetentionPolicy:
    """The ``[retention]`` table as a policy; raises :class:`~kzr_wsgi.configtable.TableError`.

    Ages are checked now (``forever`` only where a policy may keep forever, never for
    ``interval``), and kinds against :data:`KINDS`, so a mistake fails at start-up.
    """
    only_keys(table, ("default", "accounts", "kinds", "interval"),
              "a retention setting (default, interval, [retention.accounts], "
              "[retention.kinds])")
    default = table_age((), "default", table["default"], forever=True) \
        if "default" in table else None
    interval = DEFAULT_INTERVAL
    if "interval" in table:
        given = table_age((), "interval", table["interval"])
        if given is None or given <= timedelta(0):
            raise TableError((), "interval", "must be longer than 0s")
        interval = given
    return RetentionPolicy(default=default, accounts=_ages(table, "accounts"),
                           kinds=_ages(table, "kinds"), interval=interval)


def _ages(table: Mapping[str, Any], name: str) -> dict[str, timedelta | None]:
    """``[retention.NAME]``: each key an account id or a kind, each value an age."""
    out: dict[str, timedelta | None] = {}
    for key, value in sub_table(table, name, f"retention.{name}").items():
        if name == "kinds" and key not in KINDS:
            raise TableError((name,), key, "unknown: not a kind (call, caller, attachment)")
        out[str(key)] = table_age((name,), key, value, forever=True)
    return out
