"""What the erase tests share: recordings of three numbers in several accounts and
spellings, with analysis files, transcripts and share links, uploaded through the
receiver into a real store.

The target number is +1 415 555 0123. Its recordings (``T``) are written as
``+1 415 555 0123``, ``sip:+14155550123@realm``, the national ``4155550123`` (selected
with ``--country US``), as a caller id name that is itself the number, and as a caller
id number (the one a test holds). The other two numbers (``O``) and a national
``5550123`` (a possible match, never selected) must survive every erase.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from audio_samples import freeswitch_mp3
from werkzeug.test import Client

from kzr_wsgi import KazooRecordings
from kzr_wsgi.catalog import Catalog, Query
from kzr_wsgi.cli import not_found
from kzr_wsgi.naming import ANALYSIS_SUFFIX, PEAKS_SUFFIX, TRANSCRIPT_SUFFIX
from kzr_wsgi.transcribe.model import Segment
from kzr_wsgi.ui.shares import Share, new_share_id, token_hash
from kzr_wsgi.ui.tables import CatalogShareStore

TARGET = "+14155550123"
#: Kazoo counts Gregorian seconds: Unix time + this.
GREGORIAN = 62167219200
#: Words said in the target's recordings only (searched for in the database's bytes).
SECRET_WORD = "zanzibarquokka"
SECRET_NAME = "Zebediah Quuxley"
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Spec:
    """One recording: its call id, account, metadata, and whether erase takes it."""

    call_id: str
    account: str
    fields: dict[str, str]
    target: bool
    words: str = "hello thank you for calling"


SPECS = [
    Spec("t-spaced", "acct-acme", {"from": "+1 415 555 0123", "to": "1001",
                                   "caller_id_name": SECRET_NAME}, True,
         f"my secret word is {SECRET_WORD} please"),
    Spec("t-sip", "acct-beta", {"from": "sip:+14155550123@realm.example", "to": "1002"}, True),
    Spec("t-national", "acct-acme", {"from": "4155550123", "to": "1003"}, True),
    Spec("t-name", "acct-beta", {"from": "1004", "to": "2000",
                                 "caller_id_name": "+1 (415) 555-0123"}, True),
    Spec("t-held", "acct-gamma", {"from": "1005", "to": "2001",
                                  "caller_id_number": "+14155550123"}, True),
    Spec("o-london", "acct-acme", {"from": "+44 20 7946 0018", "to": "1006"}, False),
    Spec("o-london-sip", "acct-beta", {"to": "sip:+442079460018@x.example", "from": "1007"},
         False),
    Spec("o-near", "acct-acme", {"from": "+14155550999", "to": "1008"}, False),
    Spec("o-possible", "acct-acme", {"from": "5550123", "to": "1009"}, False),
]
TARGETS = {s.call_id for s in SPECS if s.target}
OTHERS = {s.call_id for s in SPECS if not s.target}
HELD = "t-held"


def body_of(spec: Spec, n: int = 0) -> bytes:
    """A distinct real MP3 per recording (``n``: another take under the same call id)."""
    index = [s.call_id for s in SPECS].index(spec.call_id)
    return freeswitch_mp3(1.0 + index / 10 + n / 100, rate=8000, channels=1)


def upload_url(spec: Spec, recording_id: str | None = None) -> str:
    start = int(datetime(2026, 3, 1, tzinfo=timezone.utc).timestamp()) + GREGORIAN
    query = {**spec.fields, "account_id": spec.account, "start": str(start),
             "recording_id": recording_id or f"rec-{spec.call_id}", "duration_ms": "1000"}
    return (f"/call_recording_{quote(spec.call_id, safe='')}.mp3?"
            f"{urlencode(query, quote_via=quote)}")


def put(client: Client, spec: Spec, body: bytes, recording_id: str | None = None) -> Any:
    """PUT as Kazoo 4.x does; the response."""
    return client.put(upload_url(spec, recording_id), data=body,
                      headers={"Content-Type": "audio/mpeg"},
                      environ_overrides={"CONTENT_LENGTH": str(len(body))})


def fill(store: Any, catalog: Catalog, receiver: KazooRecordings | None = None,
         shares: bool = True) -> dict[str, str]:
    """Upload every spec through the receiver, then give each its analysis files, its
    transcript and (the first of each kind) a share link; call id -> catalog id."""
    client = Client(receiver or KazooRecordings(not_found, store))
    ids = {}
    for spec in SPECS:
        reply = put(client, spec, body_of(spec))
        assert reply.status_code == 201, reply.get_data()
        [row] = catalog.search(Query(call_id=spec.call_id, self_test=True)).items
        ids[spec.call_id] = row.id
        files = {ANALYSIS_SUFFIX: json.dumps({"speech": spec.call_id}).encode(),
                 PEAKS_SUFFIX: b"[1, 2, 3]",
                 TRANSCRIPT_SUFFIX: json.dumps({"text": spec.words}).encode()}
        assert store.put_companions(row.copy_record(), files)
        assert catalog.put_segments(row.id, [Segment(0.0, 1.0, spec.words, "caller")])
    links = CatalogShareStore(catalog)
    now = datetime.now(timezone.utc)
    for call_id in ("t-spaced", "o-london") if shares else ():
        links.create(Share(new_share_id(), token_hash(call_id), ids[call_id], "ops", now,
                            now + timedelta(days=1)))
    return ids


def tree_digest(root: Path) -> str:
    """One hash of every file's path and bytes under ``root`` (a dry run changes none)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def kzr(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m kzr_wsgi ARGS`` in a process of its own."""
    return subprocess.run([sys.executable, "-m", "kzr_wsgi", *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, **(env or {})}, cwd=REPO)


def listed(store_args: list[str], *args: str) -> set[str]:
    """The call ids ``kzr-wsgi ls --json`` lists."""
    done = kzr("ls", "--json", *store_args, *args)
    assert done.returncode == 0, done.stderr
    return {json.loads(line)["call_id"] for line in done.stdout.splitlines()}


def share_recordings(catalog: Catalog) -> set[str]:
    """The catalog ids that still have share links."""
    return {s.recording for s in CatalogShareStore(catalog).listed(None)}


def never_in(data: bytes, *needles: str, where: str = "") -> None:
    """None of ``needles`` (as UTF-8) is in ``data``."""
    for needle in needles:
        assert needle.encode() not in data, f"{needle!r} is still in {where}"


def spec_of(call_id: str) -> Spec:
    return next(s for s in SPECS if s.call_id == call_id)


Check = Callable[[], None]
