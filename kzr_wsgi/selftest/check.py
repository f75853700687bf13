"""``kzr-wsgi check URL``: will this receiver really take Kazoo's uploads?

A self-test for operators, shaped like Kazoo, to run after every change::

    >>> from kzr_wsgi.selftest.check import run_check
    >>> steps = run_check("http://kazoo:s3cret@recorder:8080/kzr", read_back=True)  # doctest: +SKIP
    >>> [s.status.value for s in steps]                                          # doctest: +SKIP
    ['PASS', 'PASS', 'PASS', 'PASS', 'PASS', 'PASS', 'PASS']

Each :class:`~kzr_wsgi.selftest.verdicts.Step` is ``PASS``, ``WARN``, ``FAIL`` or ``SKIP``
(it does not apply), with a hint that says what to change; what the answers mean is
decided in :mod:`kzr_wsgi.selftest.verdicts` (pure), whose names this module also
exports. The steps (:data:`~kzr_wsgi.selftest.verdicts.STEPS`):

1. ``url``: the URL itself: credentials Kazoo's httpc cannot send (FAIL); a loopback
   or ``0.0.0.0`` host (WARN: Kazoo will not upload there).
2. ``kazoo-4x``: an upload exactly as Kazoo 4.x's httpc sends it, then the same again
   (a retry: ``2xx``, and not stored twice when the answers can tell).
3. ``freeswitch-3x``: an upload as FreeSWITCH's libcurl sends it (``Expect:
   100-continue``, an unencoded name; only ``200/201/202/204`` count).
4. ``two-recordings``: two different bodies under one name with different
   ``recording_id`` s (start, stop, start in one call); with read-back, each comes back.
5. ``cut-short``: a body cut short must not be answered ``2xx`` (with read-back,
   its URL is then ``404``).
6. ``read-back`` (``read_back=True``): the bytes come back, and ``Range`` works.
7. ``credentials``: when the URL has credentials, the upload without them is refused.

Every upload is a small valid MP3 (:func:`~kzr_wsgi.wire.silent_mp3`) under a call id
``kzr-check-<random>``: a kzr_wsgi receiver stores it, marks it ``self_test``, hides it
from listings, counts it apart and announces it to no webhook.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..forms import CALL_PREFIX
from ..metadata import GREGORIAN_OFFSET
from ..recording import SELF_TEST_PREFIX
from .verdicts import (
    FAIL,
    FREESWITCH_OK,
    PASS,
    SKIP,
    STEPS,
    WARN,
    Status,
    Step,
    passed,
    refusal_hint,
    url_step,
)
from .wire import (
    MP3_FRAME_MS,
    Answer,
    KazooURL,
    cut_short_put,
    httpc_request,
    libcurl_put,
    silent_mp3,
)

#: Default seconds each request may take.
DEFAULT_TIMEOUT = 30.0


@dataclass
class _Upload:
    """One of the check's uploads: where it went, what was sent, what came back."""

    target: str
    body: bytes
    answer: Answer


class Checker:
    """Runs the steps against one receiver; see the module docstring.

    :param url: the URL Kazoo is configured with (``user:pass@`` included).
    :param timeout: seconds each request may take.
    :param read_back: the receiver serves ``GET`` on its upload URLs (``serve --read-back``).
    :param echo: called with each step as soon as it is known (e.g. to print it).
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        read_back: bool = False,
        echo: Callable[[Step], None] | None = None,
    ) -> None:
        self.url = KazooURL(url)
        self.timeout = timeout
        self.read_back = read_back
        self._echo = echo
        self.steps: list[Step] = []
        #: One random word per run: every call id of this run carries it.
        self.run_id = secrets.token_hex(6)

    def run(self) -> list[Step]:
        """Every step, in order."""
        self._add(url_step(self.url))
        first = self._kazoo4()
        if first is None:
            # Nothing answers: every later step would say the same.
            for number, name in STEPS[2:]:
                self._add(Step(number, name, SKIP, "the receiver did not answer step 2"))
            return self.steps
        self._freeswitch3()
        self._two_recordings()
        self._cut_short()
        self._read_back(first)
        self._credentials(first)
        return self.steps

    # -- the steps ----------------------------------------------------------------------

    def _kazoo4(self) -> _Upload | None:
        """Step 2; None when the receiver cannot be reached at all."""
        call_id = self._call_id("4x")
        upload = self._put4(call_id, secrets.token_hex(16), 80)
        answer = upload.answer
        if answer.status is None:
            self._step("kazoo-4x", FAIL,
                       f"{answer.error} at {self.url.endpoint.netloc}: is the receiver "
                       "running and reachable from here (host, port, firewall)?")
            return None
        if not answer.ok:
            self._step("kazoo-4x", FAIL, refusal_hint(answer, "an upload as Kazoo 4.x "
                                                          "sends it"))
            return upload
        retry = self._send4(upload.target, upload.body, self.url.httpc_userinfo)
        if not retry.ok:
            self._step("kazoo-4x", FAIL,
                       f"the first upload got {answer.status}, the same again (a retry) "
                       f"got {retry.describe()}: Kazoo retries up to ~30 times, and each "
                       "retry of a stored recording must be answered 2xx")
        elif answer.status == 201 and retry.status == 201:
            self._step("kazoo-4x", FAIL,
                       "a retry of the same recording was answered 201 Created again: "
                       "the receiver keeps a copy per retry (or says so); a repeated "
                       "upload should be recognised and stored once")
        else:
            self._step("kazoo-4x", PASS)
        return upload

    def _freeswitch3(self) -> None:
        """Step 3: FreeSWITCH's libcurl, 3.x's unencoded name."""
        # A SIP call id usually holds '@'; 3.x sends it as it is.
        filename = f"{CALL_PREFIX}{self._call_id('3x')}@kzr-check.invalid.mp3"
        target = self.url.freeswitch(filename)
        if target is None:
            self._step("freeswitch-3x", SKIP,
                       "the URL has a query: 3.x appends the file name after it, so "
                       "only Kazoo 4.x can use this URL")
            return
        answer = libcurl_put(self.url.endpoint, target, silent_mp3(60),
                             userinfo=self.url.curl_userinfo, timeout=self.timeout)
        if answer.status in FREESWITCH_OK:
            note = None if answer.continued else (
                "no '100 Continue' came: FreeSWITCH waits 1 s before sending each body")
            self._step("freeswitch-3x", PASS, note)
        elif answer.ok:
            self._step("freeswitch-3x", FAIL,
                       f"answered {answer.status}: FreeSWITCH counts only 200, 201, 202 "
                       "and 204 as success and retries anything else")
        else:
            self._step("freeswitch-3x", FAIL,
                       refusal_hint(answer, "an upload as FreeSWITCH (3.x) sends it, "
                                     "with an unencoded name and Expect: 100-continue"))

    def _two_recordings(self) -> None:
        """Step 4: start, stop, start in one call: one name, two recording ids."""
        call_id = self._call_id("twice")
        first = self._put4(call_id, secrets.token_hex(16), 40)
        second = self._put4(call_id, secrets.token_hex(16), 50)
        for n, upload in enumerate((first, second), 1):
            if not upload.answer.ok:
                what = ("the first of two recordings of one call" if n == 1 else
                        "a second recording of the same call (same name, another "
                        "recording_id)")
                self._step("two-recordings", FAIL, refusal_hint(upload.answer, what))
                return
        if not self.read_back:
            self._step("two-recordings", PASS,
                       "both answered 2xx; not read back (add --read-back if the "
                       "receiver serves GET)")
            return
        for n, upload in enumerate((first, second), 1):
            got = self._get(upload.target)
            if got.status == 200 and got.body == upload.body:
                continue
            if got.status == 200 and got.body in (first.body, second.body):
                hint = (f"recording {n} of one call read back as the other recording's "
                        "bytes: the receiver keeps one file per name and a later recording "
                        "overwrites an earlier one; key stored files on the name and "
                        "recording_id")
            else:
                hint = (f"recording {n} of one call was answered {upload.answer.status}, "
                        f"then read back as {got.describe()} with {len(got.body)} bytes "
                        f"({len(upload.body)} were sent): the receiver did not keep it "
                        "where its URL finds it")
            self._step("two-recordings", FAIL, hint)
            return
        self._step("two-recordings", PASS)

    def _cut_short(self) -> None:
        """Step 5: a body cut short must not be taken."""
        call_id = self._call_id("cut")
        frames = 200
        body = silent_mp3(frames)
        fields = self._fields(call_id, secrets.token_hex(16), frames)
        target = self.url.kazoo4(f"{CALL_PREFIX}{call_id}.mp3", fields)
        answer = cut_short_put(self.url.endpoint, target, body[: len(body) // 2], len(body),
                               userinfo=self.url.httpc_userinfo,
                               timeout=min(self.timeout, 10.0))
        if answer.ok:
            self._step("cut-short", FAIL,
                       f"answered {answer.status} to a body cut short at {len(body) // 2} "
                       f"of {len(body)} bytes: Kazoo takes a 2xx as stored for good, so "
                       "the recording is kept half-written; compare the bytes received "
                       "with Content-Length and answer 400 when they differ")
            return
        if self.read_back:
            got = self._get(target)
            if got.status != 404:
                self._step("cut-short", FAIL,
                           f"the cut-short upload was refused ({answer.describe()}) but "
                           f"its URL then answered {got.describe()} instead of 404: "
                           "partial bytes were kept where a read finds them")
                return
        self._step("cut-short", PASS)

    def _read_back(self, first: _Upload) -> None:
        """Step 6: the bytes of step 2 come back, whole and by range."""
        if not self.read_back:
            self._step("read-back", SKIP,
                       "not asked for (--read-back, when the receiver serves GET)")
            return
        if not first.answer.ok:
            self._step("read-back", SKIP, "step 2's upload was not stored")
            return
        got = self._get(first.target)
        if got.status != 200 or got.body != first.body:
            self._step("read-back", FAIL,
                       f"GET of a stored recording's URL answered {got.describe()} with "
                       f"{len(got.body)} bytes ({len(first.body)} were stored): Kazoo plays "
                       "recordings back from that URL; the receiver answered 2xx without "
                       "keeping the file, or does not serve reads (serve --read-back)")
            return
        start, end = 100, 299
        ranged = self._get(first.target, [("range", f"bytes={start}-{end}")])
        if ranged.status != 206 or ranged.body != first.body[start : end + 1]:
            self._step("read-back", FAIL,
                       f"GET with Range: bytes={start}-{end} answered {ranged.describe()} "
                       f"with {len(ranged.body)} bytes, not 206 with {end - start + 1}: "
                       "players seek with Range")
            return
        self._step("read-back", PASS)

    def _credentials(self, first: _Upload) -> None:
        """Step 7: the URL's credentials must be needed."""
        if self.url.raw_userinfo is None:
            self._step("credentials", SKIP,
                       "the URL carries no credentials (a receiver reachable by others "
                       "should require them: serve --basic-auth USER:PASS)")
            return
        answer = self._send4(first.target, first.body, None)
        if answer.status in (401, 403):
            self._step("credentials", PASS)
        elif answer.ok:
            self._step("credentials", FAIL,
                       f"the same upload without the URL's credentials was answered "
                       f"{answer.status}: the receiver does not check them, so anyone who "
                       "can reach it can store files; turn authentication on "
                       "(serve --basic-auth USER:PASS with the URL's user and password)")
        else:
            self._step("credentials", FAIL,
                       f"the same upload without credentials answered {answer.describe()}, "
                       "not 401 or 403")

    # -- requests -------------------------------------------------------------------------

    def _step(self, name: str, status: Status, hint: str | None = None) -> None:
        """Record step ``name``'s verdict (its number is the one :data:`STEPS` gives it)."""
        self._add(Step.named(name, status, hint))

    def _add(self, step: Step) -> None:
        self.steps.append(step)
        if self._echo is not None:
            self._echo(step)

    def _call_id(self, what: str) -> str:
        return f"{SELF_TEST_PREFIX}{self.run_id}-{what}"

    def _fields(self, call_id: str, recording_id: str, frames: int) -> list[tuple[str, str]]:
        """4.x's metadata query, in kzc_recording's order, for ``frames`` of audio."""
        now = int(time.time())
        return [
            ("from", "1000@kzr-check.invalid"),
            ("to", "2000@kzr-check.invalid"),
            ("caller_id_name", "kzr-wsgi check"),
            ("caller_id_number", "1000"),
            ("call_id", call_id),
            ("cdr_id", ""),
            ("interaction_id", ""),
            ("owner_id", ""),
            ("account_id", ""),
            ("start", str(now + GREGORIAN_OFFSET)),
            ("duration_ms", str(frames * MP3_FRAME_MS)),
            ("recording_id", recording_id),
        ]

    def _put4(self, call_id: str, recording_id: str, frames: int) -> _Upload:
        body = silent_mp3(frames)
        target = self.url.kazoo4(f"{CALL_PREFIX}{call_id}.mp3",
                                 self._fields(call_id, recording_id, frames))
        return _Upload(target, body, self._send4(target, body, self.url.httpc_userinfo))

    def _send4(self, target: str, body: bytes, userinfo: str | None) -> Answer:
        return httpc_request(self.url.endpoint, "PUT", target, body, userinfo=userinfo,
                             timeout=self.timeout)

    def _get(self, target: str, extra: list[tuple[str, str]] | None = None) -> Answer:
        return httpc_request(self.url.endpoint, "GET", target, None,
                             userinfo=self.url.httpc_userinfo, timeout=self.timeout,
                             extra=extra or ())


def run_check(
    url: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    read_back: bool = False,
    echo: Callable[[Step], None] | None = None,
) -> list[Step]:
    """Run every step against ``url``; see :class:`Checker`."""
    return Checker(url, timeout=timeout, read_back=read_back, echo=echo).run()


__all__ = [
    "DEFAULT_TIMEOUT",
    "FAIL",
    "FREESWITCH_OK",
    "PASS",
    "SKIP",
    "STEPS",
    "WARN",
    "Checker",
    "Status",
    "Step",
    "passed",
    "run_check",
    "url_step",
]
