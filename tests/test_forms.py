"""Router and request_segments: which Kazoo upload a request addresses (no sockets)."""

from __future__ import annotations

from typing import Any

import pytest

from kzr_wsgi.errors import MalformedUpload
from kzr_wsgi.forms import Action, Router, Target, request_segments
from kzr_wsgi.recording import Kind


def environ(
    path: str,
    query: str = "",
    method: str = "PUT",
    *,
    raw: str | None = None,
    raw_key: str = "RAW_URI",
    script_name: str = "",
) -> dict[str, Any]:
    """A WSGI environ as a server builds it.

    ``path`` is the raw request path as the client sent it; PATH_INFO is that path
    percent-decoded once, as latin-1 text of the bytes (PEP 3333). With ``raw`` set,
    the raw URI key is added (gunicorn's RAW_URI, werkzeug's REQUEST_URI); waitress
    gives none, hence ``raw=None`` by default.
    """
    from urllib.parse import unquote_to_bytes

    decoded = unquote_to_bytes(path.encode("latin-1")).decode("latin-1")
    env: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": script_name,
        "PATH_INFO": decoded[len(script_name):],
        "QUERY_STRING": query,
    }
    if raw is not None:
        env[raw_key] = raw
    return env


def both(path: str, query: str = "", method: str = "PUT") -> list[dict[str, Any]]:
    """The same request from a server with the raw URI and from one without."""
    uri = path + ("?" + query if query else "")
    return [environ(path, query, method), environ(path, query, method, raw=uri),
            environ(path, query, method, raw=uri, raw_key="REQUEST_URI")]


def route(router: Router, env: dict[str, Any]) -> Target:
    target = router.route(env)
    assert target is not None, env
    return target


# -- contract §2.1: 3.x record_call -----------------------------------------------------


@pytest.mark.parametrize("path", ["/call_recording_abc-123@pbx.mp3",
                                  "/call_recording_abc-123%40pbx.mp3"],
                         ids=["plain", "percent-encoded"])
def test_3x_name_plain_and_encoded(path: str) -> None:
    for env in both(path):
        t = route(Router(), env)
        assert t.action is Action.UPLOAD
        assert t.call_id == "abc-123@pbx"
        assert t.ext == "mp3"
        assert t.name.kind is Kind.CALL
        assert t.name.segments == ()
        assert t.name.filename == "call_recording_abc-123@pbx.mp3"


def test_extension_case_insensitive() -> None:
    t = route(Router(), environ("/call_recording_x.WAV"))
    assert (t.ext, t.name.filename) == ("wav", "call_recording_x.WAV")


@pytest.mark.parametrize("method", ["PUT", "POST", "put"])
def test_upload_methods(method: str) -> None:
    assert route(Router(), environ("/call_recording_x.mp3", method=method)).action is Action.UPLOAD


# -- contract §2.2: 4.x record_call with metadata ----------------------------------------

QUERY_40 = ("from=1001%40acme.example&to=2002%40acme.example&caller_id_name=Ann%20B"
            "&caller_id_number=%2B15551234&call_id=abc&cdr_id=c1&interaction_id=63871234567-ab"
            "&account_id=acc1")
QUERY_43 = ("recording_id=r1&duration_ms=1500&start=63871234567&owner_id=&account_id=acc1"
            "&conference_recording=false&x_new=v&call_id=abc&from=1001%40acme.example")


@pytest.mark.parametrize("query", [QUERY_40, QUERY_43], ids=["4.0-order", "4.3-reordered"])
def test_4x_name_with_metadata_query(query: str) -> None:
    for env in both("/call_recording_abc.mp3", query):
        t = route(Router(), env)
        assert t.call_id == "abc"
        fields = dict(t.pairs)
        assert fields["from"] == "1001@acme.example"
        assert fields["account_id"] == "acc1"
        assert [k for k, _ in t.pairs] == [p.split("=")[0] for p in query.split("&")]


def test_4x_empty_field_is_kept_as_empty() -> None:
    t = route(Router(), environ("/call_recording_abc.mp3", "owner_id=&start=1"))
    assert t.pairs == (("owner_id", ""), ("start", "1"))


# -- contract §2.3: the name in the query ------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "token=s3cr3t&recording=call_recording_abc.mp3&from=a&recording_id=r1",
        "token=s3cr3t&file=call_recording_abc.mp3&from=a&recording_id=r1",
        "file=call_recording_abc.mp3&from=a&recording_id=r1",
    ],
    ids=["last-param-a=b", "last-param-a=", "last-param-a"],
)
def test_name_in_query(query: str) -> None:
    for env in both("/upload.php", query):
        t = route(Router(), env)
        assert t.action is Action.UPLOAD
        assert t.call_id == "abc"
        assert t.name.filename == "call_recording_abc.mp3"
        assert t.name.segments == ("upload.php",)


@pytest.mark.parametrize("query", ["title=call_recording_x.mp3&tag=work",
                                   "a=call_recording_x.mp3&b=c&from=x"])
def test_name_in_a_host_parameter_is_not_ours(query: str) -> None:
    # Only `recording=` or the parameter Kazoo's own fields follow carries the name.
    assert Router().route(environ("/api/notes", query)) is None


def test_name_in_query_with_encoded_slash() -> None:
    t = route(Router(), environ("/up", "recording=call_recording_a%2Fb%252e.mp3"))
    assert t.call_id == "a/b%2e"


# -- contract §2.4: record_caller ---------------------------------------------------------


def test_bare_caller_name_only_when_accepted() -> None:
    env = environ("/abc-123.mp3")
    assert Router().route(env) is None
    t = route(Router(accept_caller=True), env)
    assert (t.name.kind, t.call_id, t.ext) == (Kind.CALLER, "abc-123", "mp3")


@pytest.mark.parametrize("path", ["/abc.txt", "/abc", "/.mp3", "/"])
def test_caller_needs_a_known_extension_and_an_id(path: str) -> None:
    assert Router(accept_caller=True).route(environ(path)) is None


def test_caller_name_keeps_prefix_segments() -> None:
    path = "/acc/user/x%2Fy.wav"
    t = route(Router(accept_caller=True), environ(path, raw=path))
    assert t.name.segments == ("acc", "user")
    assert t.call_id == "x/y"
    # Without the raw URI (waitress) a bare name has no anchor: "%2F" is a separator.
    t = route(Router(accept_caller=True), environ(path))
    assert (t.name.segments, t.call_id) == (("acc", "user", "x"), "y")


# -- contract §2.5 sample: per-user segments -----------------------------------------------


def test_per_user_segments_are_exposed_not_interpreted() -> None:
    for env in both("/kzr/4b8f/%7BUSER_ID%7D/call_recording_abc.mp3", "start=1"):
        t = route(Router("/kzr"), env)
        assert t.name.segments == ("4b8f", "{USER_ID}")
        assert t.call_id == "abc"


# -- the prefix and pass-through -----------------------------------------------------------


@pytest.mark.parametrize(
    "path, method",
    [
        ("/api/users/7", "PUT"),
        ("/static/song.mp3", "GET"),
        ("/static/song.mp3", "PUT"),
        ("/call_recordings/x", "PUT"),
        ("/call_recording_x", "PUT"),          # no extension: not a recording name
        ("/call_recording", "PUT"),
        ("/", "GET"),
    ],
)
def test_host_routes_are_not_ours(path: str, method: str) -> None:
    router = Router()
    for env in both(path, method=method):
        assert router.route(env) is None


@pytest.mark.parametrize("path", ["/other/call_recording_x.mp3", "/kzrx/call_recording_x.mp3",
                                  "/call_recording_x.mp3"])
def test_outside_prefix_is_not_ours(path: str) -> None:
    router = Router("/kzr")
    assert not router.might_match(environ(path))
    assert router.route(environ(path)) is None


def test_prefix_with_trailing_slash() -> None:
    t = route(Router("/kzr/"), environ("/kzr/call_recording_x.mp3"))
    assert t.call_id == "x"


def test_prefix_must_be_absolute() -> None:
    with pytest.raises(ValueError):
        Router("kzr")


def test_might_match_is_false_for_host_routes() -> None:
    router = Router()
    assert not router.might_match(environ("/api/users/7"))
    assert router.might_match(environ("/call_recording_x.mp3"))
    assert router.might_match(environ("/up", "recording=call_recording_x.mp3"))


# -- clearly ours but wrong ----------------------------------------------------------------


@pytest.mark.parametrize(
    "path, query",
    [
        ("/call_recording_abc.exe", ""),
        ("/call_recording_abc.mp3.php", ""),
        ("/call_recording_.mp3", ""),
        ("/up", "recording=call_recording_.mp3"),
        ("/up", "recording=call_recording_x.ogg"),
        ("/call_recording_a%00b.mp3", ""),
        ("/call_recording_a%0d%0ab.mp3", ""),
        ("/call_recording_a%ffb.mp3", ""),      # not UTF-8
        ("/call_recording_" + "a" * 2100 + ".mp3", ""),
    ],
    ids=["ext", "double-ext", "empty-id", "query-empty-id", "query-ext", "nul", "crlf",
         "not-utf8", "overlong"],
)
def test_malformed_upload(path: str, query: str) -> None:
    for env in both(path, query):
        with pytest.raises(MalformedUpload):
            Router().route(env)


@pytest.mark.parametrize("suffix", [".kzr.analysis.json", ".kzr.peaks.json",
                                    ".kzr.transcript.json"])
def test_names_a_store_keeps_beside_a_recording_are_refused(suffix: str) -> None:
    router = Router(attachments_prefix="/store", extensions=["mp3", "json"])
    for path in (f"/store/acct/doc/x.mp3{suffix}", f"/call_recording_x.mp3{suffix}"):
        with pytest.raises(MalformedUpload, match="reserved"):
            router.route(environ(path))
    # Only the whole ending is reserved.
    assert route(router, environ("/store/acct/doc/x.kzr.peaks.json.mp3")).ext == "mp3"


def test_extension_allowlist_is_configurable() -> None:
    router = Router(extensions=[".OGG"])
    assert route(router, environ("/call_recording_x.ogg")).ext == "ogg"
    with pytest.raises(MalformedUpload):
        router.route(environ("/call_recording_x.mp3"))


@pytest.mark.parametrize("method", ["GET", "HEAD", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_not_allowed(method: str) -> None:
    t = route(Router(), environ("/call_recording_x.mp3", method=method))
    assert t.action is Action.NOT_ALLOWED
    assert set(t.allow) == {"PUT", "POST"}


def test_read_back_turns_get_into_read() -> None:
    router = Router(read_back=True)
    assert route(router, environ("/call_recording_x.mp3", method="GET")).action is Action.READ
    t = route(router, environ("/call_recording_x.mp3", method="DELETE"))
    assert t.action is Action.NOT_ALLOWED
    assert set(t.allow) == {"GET", "HEAD", "PUT", "POST"}


# -- call ids are data: decoded exactly once -------------------------------------------------

HOSTILE = [
    # (as sent on the wire, the call id it stands for)
    ("call_recording_a%2Fb.mp3", "a/b"),
    ("call_recording_a/b.mp3", "a/b"),                 # 3.x unencoded "/"
    ("call_recording_../../etc/passwd.mp3", "../../etc/passwd"),
    ("call_recording_%2E%2E%2F%2E%2E%2Fx.mp3", "../../x"),
    ("call_recording_a%252eb.mp3", "a%2eb"),
    ("call_recording_a%252Fb.mp3", "a%2Fb"),
    ("call_recording_a\\b.mp3", "a\\b"),
    ("call_recording_a%5C..%5Cb.mp3", "a\\..\\b"),
    ("call_recording_a%22b'c.mp3", "a\"b'c"),
    ("call_recording_%C3%A9%E2%82%AC%F0%9F%93%9E.mp3", "é€📞"),
    ("call_recording_(a)<b>:[c]{d}~!+%25.mp3", "(a)<b>:[c]{d}~!+%"),
    ("call_recording_" + "x" * 1000 + ".mp3", "x" * 1000),
]


@pytest.mark.parametrize("wire, call_id", HOSTILE, ids=[c[:24] for _, c in HOSTILE])
def test_call_id_decoded_once(wire: str, call_id: str) -> None:
    for env in both("/" + wire):
        t = route(Router(), env)
        assert t.call_id == call_id
        assert t.name.segments == ()


def test_encoded_slash_in_segments_kept_apart_with_raw_uri() -> None:
    # Only the raw URI can tell "%2F" inside a segment from a separator.
    t = route(Router(), environ("/a%2Fb/call_recording_x.mp3", raw="/a%2Fb/call_recording_x.mp3"))
    assert t.name.segments == ("a/b",)
    t = route(Router(), environ("/a%2Fb/call_recording_x.mp3"))
    assert t.name.segments == ("a", "b")


# -- request_segments --------------------------------------------------------------------------


def test_segments_from_path_info_reencoded_as_utf8() -> None:
    # PATH_INFO is latin-1 text of the raw bytes: "é" arrives as "Ã©".
    env = environ("/%C3%A9/x")
    assert env["PATH_INFO"] == "/Ã©/x"
    assert request_segments(env) == ["é", "x"]


def test_segments_trailing_slash_and_empty() -> None:
    assert request_segments(environ("/a/")) == ["a", ""]
    assert request_segments({"PATH_INFO": ""}) == []


def test_segments_ignore_raw_uri_that_disagrees() -> None:
    # A proxy or middleware rewrote PATH_INFO: the raw URI no longer describes it.
    env = environ("/new/call_recording_x.mp3", raw="/old/call_recording_x.mp3")
    assert request_segments(env) == ["new", "call_recording_x.mp3"]


def test_segments_below_script_name() -> None:
    env = environ("/app/a%2Fb/call_recording_x.mp3", raw="/app/a%2Fb/call_recording_x.mp3",
                  script_name="/app")
    assert env["PATH_INFO"] == "/a/b/call_recording_x.mp3"
    assert request_segments(env) == ["a/b", "call_recording_x.mp3"]


def test_segments_absolute_form_raw_uri() -> None:
    env = environ("/a%2Fb/c", raw="http://pbx.example:8080/a%2Fb/c?x=1")
    assert request_segments(env) == ["a/b", "c"]


def test_segments_raw_uri_with_raw_utf8_bytes() -> None:
    # A server (uWSGI, for one) that passes raw non-ASCII bytes in REQUEST_URI gives them
    # as latin-1 text, like PATH_INFO: "%2F" must still stay apart from "/".
    raw = "/a%2Fb/call_recording_\u00c3\u00a9.mp3"
    env = environ(raw, raw=raw, raw_key="REQUEST_URI")
    assert request_segments(env) == ["a/b", "call_recording_é.mp3"]
