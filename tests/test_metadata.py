"""Kazoo 4.x metadata: query fields to typed values (no sockets)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from kzr_wsgi.metadata import (
    GREGORIAN_OFFSET,
    dumps,
    kazoo_time,
    metadata_from_json,
    parse_metadata,
    split_query,
)

# What kzc_recording sends (4.3 order), values percent-encoded by http_uri:encode.
QUERY_43 = (
    "from=1001%40acme.example&to=2002%40acme.example&caller_id_name=Ann%20B%C3%A9"
    "&caller_id_number=%2B15551234&call_id=abc%2F1&cdr_id=c1&interaction_id=63871234567-ab"
    "&owner_id=&account_id=acc1&start=63871234567&duration_ms=1500&recording_id=r1"
    "&conference_recording=false&conference_id="
)


def test_every_known_field_typed() -> None:
    m = parse_metadata(split_query(QUERY_43))
    assert m.from_ == "1001@acme.example"
    assert m.to == "2002@acme.example"
    assert m.caller_id_name == "Ann Bé"
    assert m.caller_id_number == "+15551234"
    assert m.call_id == "abc/1"
    assert m.cdr_id == "c1"
    assert m.interaction_id == "63871234567-ab"
    assert m.owner_id is None
    assert m.account_id == "acc1"
    assert m.start == datetime(2023, 12, 31, 9, 36, 7, tzinfo=timezone.utc)
    assert m.duration_ms == 1500
    assert m.recording_id == "r1"
    assert m.conference_recording == "false"
    assert m.conference_id is None
    assert m.extra == {}


def test_order_does_not_matter() -> None:
    pairs = split_query(QUERY_43)
    forward, backward = parse_metadata(pairs), parse_metadata(reversed(pairs))
    assert forward.fields == backward.fields  # dict equality ignores order
    for attr in ("from_", "start", "duration_ms", "recording_id", "owner_id", "account_id"):
        assert getattr(forward, attr) == getattr(backward, attr)
    assert forward.start is not None and forward.recording_id == "r1"


def test_shorter_40_list() -> None:
    m = parse_metadata(split_query("from=a&to=b&call_id=c&interaction_id=i&account_id=acc"))
    assert (m.account_id, m.interaction_id, m.start, m.recording_id) == ("acc", "i", None, None)


def test_unknown_fields_kept_as_text_in_order() -> None:
    m = parse_metadata(split_query("x_new=1&start=63871234567&token=s3cr3t&flag"))
    assert m.extra == {"x_new": "1", "token": "s3cr3t", "flag": None}
    assert list(m.fields) == ["x_new", "start", "token", "flag"]


def test_empty_field_is_none() -> None:
    m = parse_metadata([("owner_id", ""), ("duration_ms", ""), ("start", None)])
    assert (m.owner_id, m.duration_ms, m.start) == (None, None, None)
    assert m.fields == {"owner_id": None, "duration_ms": None, "start": None}


def test_repeated_name_keeps_first() -> None:
    m = parse_metadata([("recording_id", "r1"), ("recording_id", "r2")])
    assert m.recording_id == "r1"


def test_garbled_numbers_do_not_reject() -> None:
    m = parse_metadata([("start", "soon"), ("duration_ms", "1.5s")])
    assert (m.start, m.duration_ms) == (None, None)
    assert m.fields == {"start": "soon", "duration_ms": "1.5s"}


# -- Kazoo timestamps --------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        ("63871234567", datetime(2023, 12, 31, 9, 36, 7, tzinfo=timezone.utc)),
        (str(GREGORIAN_OFFSET), datetime(1970, 1, 1, tzinfo=timezone.utc)),
        ("1700000000", datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc)),  # Unix
        (" 63871234567 ", datetime(2023, 12, 31, 9, 36, 7, tzinfo=timezone.utc)),
    ],
    ids=["gregorian", "epoch", "unix", "spaces"],
)
def test_kazoo_time(value: str, expected: datetime) -> None:
    got = kazoo_time(value)
    assert got == expected
    assert got is not None and got.tzinfo is not None and got.utcoffset() is not None


@pytest.mark.parametrize("value", ["", "x", "1e9", "63871234567.5", "9" * 40])
def test_kazoo_time_garbage(value: str) -> None:
    assert kazoo_time(value) is None


def test_start_is_aware_utc_in_metadata() -> None:
    m = parse_metadata([("start", "63871234567")])
    assert m.start is not None and m.start.utcoffset() is not None
    assert m.start.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


# -- the query string ---------------------------------------------------------------------


def test_split_query_decodes_once() -> None:
    assert split_query("a=%2540&b=%25252e") == [("a", "%40"), ("b", "%252e")]


def test_split_query_plus_stays_plus() -> None:
    assert split_query("caller_id_number=+1555&n=a+b") == [
        ("caller_id_number", "+1555"), ("n", "a+b")]


def test_split_query_shapes() -> None:
    assert split_query("") == []
    assert split_query("a&b=&c=1&&d=x=y") == [("a", None), ("b", ""), ("c", "1"), ("d", "x=y")]


def test_split_query_utf8_from_latin1_environ() -> None:
    # QUERY_STRING is latin-1 text of the raw bytes; raw UTF-8 and %-encoded agree.
    raw_utf8 = "n=" + "é".encode().decode("latin-1")
    assert split_query(raw_utf8) == split_query("n=%C3%A9") == [("n", "é")]


def test_split_query_keeps_bytes_that_are_not_utf8() -> None:
    [(name, value)] = split_query("n=%FF")
    assert name == "n"
    assert value == "\udcff"


# -- sidecar round trip ---------------------------------------------------------------------


def test_to_json_and_back() -> None:
    m = parse_metadata(split_query(QUERY_43 + "&x_new=v&bad=%FF"))
    text = dumps(m.to_json())
    data = json.loads(text)
    assert data["start_iso"] == "2023-12-31T09:36:07+00:00"
    assert data["duration_ms"] == 1500
    assert data["fields"]["owner_id"] is None
    assert data["fields"]["x_new"] == "v"
    back = metadata_from_json(data)
    assert back == m


def test_dumps_is_ascii_and_survives_surrogates() -> None:
    text = dumps({"v": "\udcff", "u": "é"})
    assert text.isascii()
    assert json.loads(text) == {"v": "\udcff", "u": "é"}
