"""What ``kzr-wsgi check``'s steps conclude: statuses, verdicts, hints (pure, no I/O).

:mod:`kzr_wsgi.selftest.check` sends the requests; what their answers mean is decided
here, from values alone: the URL's own step (:func:`url_step`), what a refused upload
most likely means (:func:`refusal_hint`), whether a run passed (:func:`passed`).

>>> Step.named("cut-short", FAIL, "answered 201").line()
'FAIL  5  cut-short: answered 201'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..auth import is_loopback_host, parse_address
from ..textenum import TextEnum
from .wire import Answer, KazooURL


class Status(TextEnum):
    """A step's verdict; printed and in JSON as its text (``PASS``, ``WARN``, …)."""

    #: The receiver does what Kazoo needs.
    PASS = "PASS"
    #: It works here, but Kazoo will not (or may not) use it as it stands.
    WARN = "WARN"
    #: Kazoo's uploads would be lost or refused: the check fails.
    FAIL = "FAIL"
    #: The step does not apply (nothing to test it with).
    SKIP = "SKIP"


PASS, WARN, FAIL, SKIP = Status.PASS, Status.WARN, Status.FAIL, Status.SKIP

#: Every step's number and name, in order.
STEPS = (
    (1, "url"),
    (2, "kazoo-4x"),
    (3, "freeswitch-3x"),
    (4, "two-recordings"),
    (5, "cut-short"),
    (6, "read-back"),
    (7, "credentials"),
)

_NUMBERS = {name: number for number, name in STEPS}

#: What FreeSWITCH counts as success; any other code, other 2xx included, is a failure.
FREESWITCH_OK = frozenset({200, 201, 202, 204})

#: Characters a user name or password may hold so that httpc sends it as written.
_SAFE_USERINFO = re.compile(r"[A-Za-z0-9._~-]*")


@dataclass(frozen=True)
class Step:
    """One step's verdict."""

    step: int
    name: str
    status: Status
    #: What was seen and what to change (for PASS: a note, or None).
    hint: str | None = None

    def to_json(self) -> dict[str, Any]:
        """``{"step", "name", "status", "hint"}``."""
        return {"step": self.step, "name": self.name, "status": self.status, "hint": self.hint}

    @classmethod
    def named(cls, name: str, status: Status, hint: str | None = None) -> Step:
        """Step ``name``'s verdict, with the number :data:`STEPS` gives it."""
        return cls(_NUMBERS[name], name, status, hint)

    def line(self) -> str:
        """The step as one printed line."""
        return f"{self.status}  {self.step}  {self.name}" + (f": {self.hint}" if self.hint else "")


def url_step(url: KazooURL) -> Step:
    """Step 1: what the URL alone tells (pure)."""
    problems: list[str] = []
    if url.raw_userinfo is not None:
        user, _, password = url.raw_userinfo.partition(":")
        for what, text in (("user name", user), ("password", password)):
            if not _SAFE_USERINFO.fullmatch(text):
                problems.append(
                    f"the {what} holds characters Kazoo's httpc will not send correctly "
                    "(it sends no credentials when the password holds ':', and '%XX' "
                    "escapes undecoded); use letters, digits and '-._~' only, in the URL "
                    "and in --basic-auth"
                )
    host = url.endpoint.host
    address = parse_address(host)
    local = is_loopback_host(host) or (address is not None and address.is_unspecified)
    if local:
        problems.append(f"{host} is this machine: fine for a local test, but Kazoo will not "
                        "upload there (its HTTP client refuses localhost, 127.0.0.1 and "
                        "0.0.0.0); give Kazoo a routable address")
    if problems:
        return Step(1, "url", FAIL if len(problems) > local else WARN, "; ".join(problems))
    if url.endpoint.scheme == "http" and url.raw_userinfo is not None:
        return Step(1, "url", PASS, "credentials travel in clear over http://")
    return Step(1, "url", PASS)


def refusal_hint(answer: Answer, what: str) -> str:
    """What a failed upload's answer most likely means, and what to change."""
    status = answer.status
    if status is None:
        return f"{what} got no answer ({answer.error})"
    said = answer.body.decode("utf-8", "replace").strip().splitlines()
    detail = f" ({said[0][:120]})" if said else ""
    advice = {
        400: "the receiver did not understand the upload",
        401: "the credentials were refused: the URL's user:pass must match the receiver's "
             "(serve --basic-auth), in letters, digits and '-._~'",
        403: "forbidden: this address is outside the receiver's --allow, or its URL token "
             "is missing from the URL",
        404: "nothing takes uploads at this path: the URL's path must be the receiver's "
             "--prefix",
        405: "the receiver does not take PUT at this URL",
        411: "the receiver wants a Content-Length it was given",
        413: "the receiver's size limit is below a small test file (--max-size)",
    }.get(status)
    if advice is None and status >= 500:
        advice = "the receiver failed to store it: see its log (disk full? store down?)"
    elif advice is None:
        advice = "Kazoo counts only 2xx as stored and retries anything else"
    return f"{what} was answered {status}{detail}: {advice}"


def passed(steps: list[Step]) -> bool:
    """True when no step failed (WARN and SKIP do not fail a check)."""
    return all(step.status != FAIL for step in steps)
