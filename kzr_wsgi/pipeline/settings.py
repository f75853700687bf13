"""The config file's ``[analysis]`` table: the analysis's thresholds, who is who, the queue.

Pure: no I/O, no command line. ``serve``, ``kzr-wsgi worker`` and ``ls`` read it (see the
manual's analysis page for every key)::

    [analysis]
    caller = "left"          # the side of a stereo recording the caller is on
    lease = "10m"            # how long a worker holds a job without renewing it
    attempts = 5             # tries before a job is failed
    backoff = "1m"           # the wait before the first retry (then 4x each time, 1h at most)
    dead-air = "30s"         # ...and every threshold of the analysis
    [analysis.kinds.caller]
    caller = "right"
    [analysis.accounts.4a1b0c2d3e4f5a6b7c8d9e0f1a2b3c4d]
    caller = "right"

>>> settings = parse_analysis({"caller": "right", "dead-air": "45s",
...                            "accounts": {"acc1": {"caller": "left"}}})
>>> settings.analysis.dead_air, settings.callers.caller_for("acc1", "call")
(45.0, 'left')
>>> settings.callers.caller_for("acc2", "call")
'right'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from ..analysis.channels import CALLER_SIDES, speakers
from ..analysis.settings import DEFAULTS, KEYS, AnalysisSettings, SettingsError
from ..configtable import TableError, sub_table, table_age

#: The recording kinds ``[analysis.kinds.<KIND>]`` may name.
KINDS = ("call", "caller", "attachment")
#: How long a worker's claim on a job lasts without being renewed (it renews it while it
#: works): a worker that died is replaced within this long.
DEFAULT_LEASE = timedelta(minutes=10)
#: Tries before a job is ``failed``.
DEFAULT_ATTEMPTS = 5
#: The wait before the first retry of a failed attempt; each next one waits 4 times longer.
DEFAULT_BACKOFF = timedelta(minutes=1)
#: The longest wait between two attempts.
MAX_BACKOFF = timedelta(hours=1)
#: The table's own keys (beside the thresholds, :data:`kzr_wsgi.analysis.settings.KEYS`).
OWN_KEYS = ("caller", "lease", "attempts", "backoff", "kinds", "accounts")


@dataclass(frozen=True)
class CallerMap:
    """Which side of a stereo recording the caller is on: ``[analysis] caller``, overridden
    by ``[analysis.kinds.<KIND>]``, and winning over both ``[analysis.accounts.<ID>]``."""

    default: str = "left"
    kinds: Mapping[str, str] = field(default_factory=dict)
    accounts: Mapping[str, str] = field(default_factory=dict)

    def caller_for(self, account_id: str | None, kind: str) -> str:
        """``"left"`` or ``"right"`` for a recording of ``kind`` in ``account_id``."""
        if account_id is not None and account_id in self.accounts:
            return self.accounts[account_id]
        return self.kinds.get(kind, self.default)

    def speaker(self, row: Any, channel: str) -> str:
        """Who speaks on ``channel`` of ``row``'s recording (``caller``/``callee``; mono:
        ``all``; another channel: its name): what a transcript's segments are shown with.

        >>> from types import SimpleNamespace as R
        >>> CallerMap(accounts={"a": "right"}).speaker(R(account_id="a", kind="call"), "left")
        'callee'
        """
        if channel == "mono":
            return "all"
        if channel in ("left", "right"):
            return speakers(("left", "right"), self.caller_for(row.account_id, row.kind))[channel]
        return channel


@dataclass(frozen=True)
class PipelineSettings:
    """What ``[analysis]`` says: the analysis's settings, the caller's side, the queue's."""

    analysis: AnalysisSettings = DEFAULTS
    callers: CallerMap = field(default_factory=CallerMap)
    lease: timedelta = DEFAULT_LEASE
    attempts: int = DEFAULT_ATTEMPTS
    backoff: timedelta = DEFAULT_BACKOFF

    def retry_in(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1 for the first).

        >>> [PipelineSettings().retry_in(n) for n in (1, 2, 3, 4)]
        [60.0, 240.0, 960.0, 3600.0]
        """
        wait: float = self.backoff.total_seconds() * 4.0 ** max(0, attempt - 1)
        return min(wait, MAX_BACKOFF.total_seconds())


#: The settings when the config file has no ``[analysis]`` table.
DEFAULT_SETTINGS = PipelineSettings()


def parse_analysis(table: Mapping[str, Any]) -> PipelineSettings:
    """The ``[analysis]`` table as :class:`PipelineSettings`; raises
    :class:`~kzr_wsgi.configtable.TableError` naming the key."""
    thresholds: dict[str, Any] = {}
    for key, value in table.items():
        if key in KEYS:
            try:  # one at a time, so an error names its own key
                AnalysisSettings.from_table({key: value})
            except SettingsError as exc:
                raise TableError((), key, str(exc)) from None
            thresholds[key] = value
        elif key not in OWN_KEYS:
            raise TableError((), key, "unknown: not an analysis setting (caller, lease, "
                             "attempts, backoff, [analysis.kinds], [analysis.accounts], or "
                             f"one of {', '.join(sorted(KEYS))})")
    lease = _age(table, "lease", DEFAULT_LEASE)
    if lease < timedelta(seconds=1):
        raise TableError((), "lease", "must be at least 1s")
    attempts = table.get("attempts", DEFAULT_ATTEMPTS)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= 100:
        raise TableError((), "attempts", "must be a whole number from 1 to 100")
    return PipelineSettings(
        analysis=AnalysisSettings.from_table(thresholds),
        callers=CallerMap(_side((), "caller", table.get("caller", "left")),
                          _sides(table, "kinds"), _sides(table, "accounts")),
        lease=lease, attempts=attempts, backoff=_age(table, "backoff", DEFAULT_BACKOFF))


def _age(table: Mapping[str, Any], key: str, default: timedelta) -> timedelta:
    if key not in table:
        return default
    age = table_age((), key, table[key])
    assert age is not None  # table_age gives None only for "forever", not taken here
    return age


def _side(below: tuple[str, ...], key: str, value: Any) -> str:
    if value not in CALLER_SIDES:
        raise TableError(below, key, 'must be "left" or "right"')
    return str(value)


def _sides(table: Mapping[str, Any], name: str) -> dict[str, str]:
    """``[analysis.kinds]`` or ``[analysis.accounts]``: a sub-table of ``caller`` each."""
    out: dict[str, str] = {}
    for key, sub in sub_table(table, name, f"analysis.{name}").items():
        below = (name, str(key))
        if name == "kinds" and key not in KINDS:
            raise TableError((name,), key, "unknown: not a kind (call, caller, attachment)")
        if not isinstance(sub, dict):
            raise TableError((name,), key, f"must be a table, [analysis.{name}.{key}]")
        for inner in sub:
            if inner != "caller":
                raise TableError(below, inner, "unknown: only caller is set per "
                                 f"{name[:-1] if name == 'kinds' else 'account'}")
        if "caller" in sub:
            out[str(key)] = _side(below, "caller", sub["caller"])
    return out
