"""The catalog's search filters as options, declared once: ``ls`` and ``worker`` take them.

``ls`` lists what they select; ``kzr-wsgi worker --retry-failed`` and ``--reanalyze``
queue again the analyses of what they select. The command receives ``filters``: the
keyword arguments of a :class:`~kzr_wsgi.catalog.Query`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..analysis.channels import DEFECTS
from ..catalog.analysis import ALL_FLAGS
from .params import CountryCode, When

F = TypeVar("F", bound=Callable[..., Any])

#: Each filter option's parameter name, as :class:`~kzr_wsgi.catalog.Query` names it.
NAMES = ("call_id", "number", "account_id", "since", "until", "flags", "flagged", "self_test",
         "text", "country")

_OPTIONS = [
    click.option("--call-id", default=None, metavar="ID", help="Only this call id."),
    click.option("--number", default=None, metavar="N",
                 help="from, to, caller_id_number or a caller_id_name that is a number is N, "
                      "however written (the one number rule: E.164, scheme, @realm and "
                      "separators ignored; see --country)."),
    click.option("--account", "account_id", default=None, metavar="ID",
                 help="Only this account (as Kazoo sent it)."),
    click.option("--since", type=When(), default=None,
                 help="Only recordings started (else received) at or after WHEN: a date "
                      "(UTC midnight) or an ISO 8601 time."),
    click.option("--until", type=When(end=True), default=None,
                 help="Only recordings started (else received) at or before WHEN: a date "
                      "(the whole day, UTC) or an ISO 8601 time."),
    click.option("--flag", "flags", multiple=True, type=click.Choice(ALL_FLAGS),
                 help="Audio with this flag (the upload's inspection's, or the analysis's); "
                      "repeat for any of several."),
    click.option("--flagged", is_flag=True,
                 help=f"Audio with a defect: any inspection flag, or {', '.join(DEFECTS)} "
                      "from the analysis (not the facts dead_air and no_speech)."),
    click.option("--self-test", is_flag=True,
                 help="Include `kzr-wsgi check`'s own uploads (hidden by default)."),
    click.option("--country", default=None, metavar="CC", type=CountryCode(),
                 help="Read national forms of --number in this country (ISO 3166, e.g. US, "
                      "GB; also `country` in the config file). Without it, national forms "
                      "are compared by their digits."),
    click.option("--text", default=None, metavar="WORDS",
                 help='Recordings whose transcript has every word; "a phrase" in double quotes '
                      "within one segment."),
]


def filter_options(func: F) -> F:
    """Add the filter options; the command receives them together as ``filters``."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        filters = {name: kwargs.pop(name) for name in NAMES}
        return func(*args, filters=filters, **kwargs)

    for option in reversed(_OPTIONS):
        wrapper = option(wrapper)
    return wrapper  # type: ignore[return-value]


def any_filter(filters: dict[str, Any]) -> bool:
    """True when one of the filters narrows the search."""
    return any(value for name, value in filters.items() if name not in ("self_test", "country"))
