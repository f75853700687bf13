"""Names that are data: safe components, suffixes, layouts, content types (no sockets)."""

from __future__ import annotations

import io
from datetime import datetime, timezone
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kzr_wsgi.body import Body
from kzr_wsgi.metadata import parse_metadata
from kzr_wsgi.naming import (
    DEFAULT_LAYOUT,
    MAX_COMPONENT,
    SIDECAR_SUFFIX,
    content_type_for,
    layout_fields,
    name_digest,
    render_layout,
    safe_component,
    with_suffix,
)
from kzr_wsgi.recording import Kind, Name, Recording

RECEIVED = datetime(2024, 3, 9, 23, 59, 59, tzinfo=timezone.utc)


def recording(
    filename: str = "call_recording_x.mp3",
    *,
    segments: tuple[str, ...] = (),
    query: list[tuple[str, str | None]] | None = None,
    content_type: str | None = None,
    kind: Kind = Kind.CALL,
) -> Recording:
    return Recording(
        name=Name(kind, segments, filename),
        call_id="x",
        ext=filename.rpartition(".")[2].lower(),
        content_type=content_type,
        content_length=0,
        metadata=parse_metadata(query or []),
        query="",
        remote_addr="127.0.0.1",
        stream=Body(io.BytesIO(b""), 0),
        received_at=RECEIVED,
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        ("call_recording_abc.mp3", "call_recording_abc.mp3"),
        ("..", "%2E."),
        (".", "%2E"),
        (".hidden", "%2Ehidden"),
        ("a/b", "a%2Fb"),
        ("a\\b", "a%5Cb"),
        ("a%2Fb", "a%252Fb"),
        ("é", "%C3%A9"),
        ("", "%"),
        ("x" + SIDECAR_SUFFIX, "x%2Ekzr%2Ejson"),
        ("x.mp3.kzr.analysis.json", "x.mp3%2Ekzr%2Eanalysis%2Ejson"),
        ("x.mp3.kzr.peaks.json", "x.mp3%2Ekzr%2Epeaks%2Ejson"),
        ("x.mp3.kzr.transcript.json", "x.mp3%2Ekzr%2Etranscript%2Ejson"),
    ],
)
def test_safe_component_examples(text: str, expected: str) -> None:
    assert safe_component(text) == expected


_ALLOWED = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~%#")
_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=120)


@given(_text)
def test_safe_component_is_one_harmless_component(text: str) -> None:
    out = safe_component(text)
    assert set(out) <= _ALLOWED
    assert out not in ("", ".", "..") and not out.startswith(".")
    assert not out.endswith(SIDECAR_SUFFIX)
    assert len(out.encode()) <= 255
    if "#" not in out and text:
        # One-to-one: the component decodes back to exactly the text.
        assert unquote(out) == text


@given(st.lists(_text, min_size=2, max_size=2, unique=True))
def test_safe_component_never_merges_two_texts(texts: list[str]) -> None:
    assert safe_component(texts[0]) != safe_component(texts[1])


def test_safe_component_surrogate_escapes() -> None:
    # Bytes that were not UTF-8 arrive as surrogate escapes; they encode as the bytes.
    assert safe_component("a\udcffb") == "a%FFb"


def test_long_text_is_hashed_and_stays_distinct() -> None:
    a, b = "x" * 1000, "x" * 999 + "y"
    ha, hb = safe_component(a), safe_component(b)
    assert "#" in ha and len(ha) <= MAX_COMPONENT
    assert ha != hb
    assert safe_component(a) == ha  # stable


def test_with_suffix() -> None:
    assert with_suffix("call_recording_x.mp3", 1) == "call_recording_x.mp3"
    assert with_suffix("call_recording_x.mp3", 2) == "call_recording_x~2.mp3"
    assert with_suffix("noext", 3) == "noext~3"
    assert with_suffix("%2Ehidden", 2) == "%2Ehidden~2"


def test_name_digest_stable_and_distinct() -> None:
    a = Name(Kind.CALL, ("acc",), "call_recording_x.mp3")
    assert name_digest(a) == name_digest(Name(Kind.CALL, ("acc",), "call_recording_x.mp3"))
    assert name_digest(a) != name_digest(Name(Kind.CALL, (), "acc/call_recording_x.mp3"))
    assert name_digest(a) != name_digest(Name(Kind.ATTACHMENT, ("acc",), "call_recording_x.mp3"))


# -- layout ------------------------------------------------------------------------------


def test_layout_uses_kazoo_start_over_received_time() -> None:
    rec = recording(query=[("start", "63871234567"), ("account_id", "acc1")])
    fields = layout_fields(rec)
    assert (fields["yyyy"], fields["mm"], fields["dd"]) == ("2023", "12", "31")
    assert render_layout(DEFAULT_LAYOUT, fields) == "call/acc1/2023/12/31"


def test_layout_falls_back_to_received_time_and_unknown_account() -> None:
    fields = layout_fields(recording())
    assert render_layout(DEFAULT_LAYOUT, fields) == "call/unknown/2024/03/09"
    assert fields["segments"] == "_"
    assert fields["owner_id"] == "unknown"


def test_layout_fields_are_safe_components() -> None:
    rec = recording(segments=("..", "a/b"), query=[("account_id", "../../etc"),
                                                   ("owner_id", "/root")])
    fields = layout_fields(rec)
    assert fields["account_id"] == "%2E.%2F..%2Fetc"
    assert fields["owner_id"] == "%2Froot"
    assert fields["segments"] == "%2E./a%2Fb"
    path = render_layout("{account_id}/{segments}/{owner_id}", fields)
    assert ".." not in path.split("/")


@pytest.mark.parametrize("template", ["{nope}", "../{kind}", "{kind}/../.."])
def test_render_layout_refuses(template: str) -> None:
    with pytest.raises(ValueError):
        render_layout(template, layout_fields(recording()))


def test_render_layout_is_relative() -> None:
    assert render_layout("/{kind}//{yyyy}/", layout_fields(recording())) == "call/2024"


# -- content types -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "filename, sent, expected",
    [
        ("call_recording_x.mp3", None, "audio/mpeg"),
        ("call_recording_x.wav", None, "audio/x-wav"),
        ("call_recording_x.mp4", None, "audio/mp4"),
        ("call_recording_x.wav", "audio/wav", "audio/wav"),
        ("call_recording_x.mp3", "multipart/form-data; boundary=b", "audio/mpeg"),
        ("uploaded_file_1700000000", None, "application/octet-stream"),
    ],
)
def test_content_type_for(filename: str, sent: str | None, expected: str) -> None:
    assert content_type_for(recording(filename, content_type=sent)) == expected
