"""Viewer secrets: hash kinds told apart, checked, refused; viewer lines; remembered checks.

bcrypt hashes come from Debian's ``htpasswd -B`` (apache2-utils), argon2id ones from
argon2-cffi, the refused kinds from ``htpasswd -m``/``-s`` and ``openssl passwd``. No
sockets: the viewer file's rules and :class:`Viewers`' checking are pure.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from typing import Any

import argon2
import bcrypt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kzr_wsgi.auth import Guard
from kzr_wsgi.errors import Unauthorized
from kzr_wsgi.ui import viewers as viewers_module
from kzr_wsgi.ui.passwords import (
    SecretKind,
    UnsupportedSecret,
    bcrypt_cost,
    classify,
    hash_password,
    verify,
)
from kzr_wsgi.ui.viewers import (
    Viewer,
    ViewerFileError,
    Viewers,
    ended_users,
    is_upload_credential,
    parse_viewer,
    parse_viewer_file,
    plaintext_lines,
    secret_warnings,
    upload_clashes,
)


def htpasswd(*args: str) -> str:
    """``htpasswd -n -b ARGS user pw``'s hash (the part after ``user:``)."""
    out = subprocess.run(["htpasswd", "-n", "-b", *args], check=True, capture_output=True,
                         text=True, timeout=60).stdout
    return out.strip().partition(":")[2]


def openssl_passwd(flag: str, password: str) -> str:
    return subprocess.run(["openssl", "passwd", flag, password], check=True,
                          capture_output=True, text=True, timeout=60).stdout.strip()


@pytest.fixture(scope="module")
def bcrypt_hash() -> str:
    return htpasswd("-B", "alice", "w0nderland pass")


# -- kinds ------------------------------------------------------------------------------


def test_htpasswd_bcrypt_is_bcrypt_and_checks(bcrypt_hash: str) -> None:
    assert bcrypt_hash.startswith("$2y$05$")
    assert classify(bcrypt_hash) is SecretKind.BCRYPT
    assert bcrypt_cost(bcrypt_hash) == 5
    assert verify(bcrypt_hash, SecretKind.BCRYPT, "w0nderland pass")
    assert not verify(bcrypt_hash, SecretKind.BCRYPT, "w0nderland pasS")
    assert not verify(bcrypt_hash, SecretKind.BCRYPT, "")


@pytest.mark.parametrize("prefix", [b"2a", b"2b"])
def test_bcrypt_2a_and_2b(prefix: bytes) -> None:
    secret = bcrypt.hashpw(b"pw", bcrypt.gensalt(4, prefix=prefix)).decode()
    assert secret.startswith("$" + prefix.decode() + "$")
    assert classify(secret) is SecretKind.BCRYPT
    assert verify(secret, SecretKind.BCRYPT, "pw") and not verify(secret, SecretKind.BCRYPT, "pW")


def test_a_long_password_checks_against_htpasswd_as_htpasswd_reads_it() -> None:
    # htpasswd's bcrypt reads 72 bytes; so does the check (bcrypt itself would refuse).
    long = "x" * 80
    secret = htpasswd("-B", "u", long)
    assert verify(secret, SecretKind.BCRYPT, long)
    assert not verify(secret, SecretKind.BCRYPT, "x" * 71)
    with pytest.raises(ValueError, match="72 bytes"):
        hash_password(long, SecretKind.BCRYPT)


def test_argon2id_from_argon2_cffi() -> None:
    secret = argon2.PasswordHasher().hash("s3cret")
    assert classify(secret) is SecretKind.ARGON2ID
    assert verify(secret, SecretKind.ARGON2ID, "s3cret")
    assert not verify(secret, SecretKind.ARGON2ID, "s3cre")
    assert not verify(secret, SecretKind.ARGON2ID, "s3cret\0")


@pytest.mark.parametrize("make, named", [
    (lambda: htpasswd("-m", "u", "pw"), "$apr1$"),
    (lambda: htpasswd("-s", "u", "pw"), "{SHA}"),
    (lambda: openssl_passwd("-1", "pw"), "$1$"),
    (lambda: openssl_passwd("-5", "pw"), "$5$"),
    (lambda: openssl_passwd("-6", "pw"), "$6$"),
    (lambda: argon2.PasswordHasher(type=argon2.Type.I).hash("pw"), "argon2i"),
    (lambda: argon2.PasswordHasher(type=argon2.Type.D).hash("pw"), "argon2d"),
    (lambda: "$pbkdf2-sha256$29000$abc$def", "$pbkdf2-sha256$"),
    (lambda: "{SSHA}abcdef", "{SSHA}"),
    (lambda: "$2y$05$tooShort", "malformed bcrypt"),
    (lambda: "$argon2id$v=19$m=x$y", "malformed argon2id"),
], ids=["apr1", "sha", "md5crypt", "sha256crypt", "sha512crypt", "argon2i", "argon2d",
        "pbkdf2", "ssha", "bad-bcrypt", "bad-argon2id"])
def test_other_hash_kinds_are_refused_by_name(make: Callable[[], str], named: str) -> None:
    secret = make()
    with pytest.raises(UnsupportedSecret) as caught:
        classify(secret)
    assert named in str(caught.value)
    assert secret not in str(caught.value)
    # In a file: the line is named, the secret never shown.
    with pytest.raises(ViewerFileError) as in_file:
        parse_viewer_file(f"# viewers\nok:pw\n\nbob:{secret} acct-1\n")
    assert str(in_file.value).startswith("line 4: viewer 'bob': ")
    assert secret not in str(in_file.value)


@pytest.mark.parametrize("secret", ["pw", "$notahash", "a$b$c", "{x", "$$", "pass word"])
def test_plaintext(secret: str) -> None:
    assert classify(secret) is SecretKind.PLAIN
    assert verify(secret, SecretKind.PLAIN, secret)
    assert not verify(secret, SecretKind.PLAIN, secret + "x")
    assert not verify(secret, SecretKind.PLAIN, secret[:-1])


@given(st.text(max_size=200))
@settings(max_examples=600)
def test_classify_never_fails_but_by_refusing(text: str) -> None:
    try:
        kind = classify(text)
    except UnsupportedSecret:
        return
    assert kind is SecretKind.PLAIN or text.startswith(("$2", "$argon2id$"))


@given(st.sampled_from(["apr1", "1", "5", "6", "y", "sha1", "md5", "argon2i", "2x", "gy"]),
       st.text(alphabet=st.characters(exclude_characters="$", exclude_categories=["Cs"]),
               max_size=60))
def test_dollar_shaped_secrets_are_refused(kind: str, rest: str) -> None:
    with pytest.raises(UnsupportedSecret):
        classify(f"${kind}${rest}")


@given(st.text(alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\0"),
               min_size=1, max_size=40),
       st.sampled_from([SecretKind.ARGON2ID, SecretKind.BCRYPT]))
@settings(max_examples=15, deadline=None)
def test_made_hashes_are_classified_and_check(password: str, kind: SecretKind) -> None:
    if kind is SecretKind.BCRYPT and len(password.encode()) > 72:
        return
    secret = hash_password(password, kind)
    assert classify(secret) is kind
    assert verify(secret, kind, password)
    assert not verify(secret, kind, password + "!")


def test_no_plaintext_is_made() -> None:
    with pytest.raises(ValueError):
        hash_password("pw", SecretKind.PLAIN)
    with pytest.raises(ValueError, match="empty"):
        hash_password("")


# -- viewer lines -----------------------------------------------------------------------


def test_viewer_lines_accounts_star_and_share(bcrypt_hash: str) -> None:
    argon = hash_password("pw2")
    text = (f"# ops\nops:{bcrypt_hash} * share\nacme:{argon} a1,a2\n"
            "plain:pw\nsharer:pw3 share\nboth:pw4 a1 share\n")
    got = [(v.user, v.kind, v.accounts, v.share, v.line) for v in parse_viewer_file(text)]
    assert got == [
        ("ops", SecretKind.BCRYPT, None, True, 2),
        ("acme", SecretKind.ARGON2ID, ("a1", "a2"), False, 3),
        ("plain", SecretKind.PLAIN, None, False, 4),
        ("sharer", SecretKind.PLAIN, None, True, 5),
        ("both", SecretKind.PLAIN, ("a1",), True, 6),
    ]
    assert "pw" not in repr(parse_viewer_file(text)) and bcrypt_hash not in repr(
        parse_viewer_file(text))


@pytest.mark.parametrize("text, message", [
    ("ops:pw a1 b2\n", "expected USER:PASS"),
    ("ops:pw a1 share extra\n", "expected USER:PASS"),
    ("ops:pw a1,*\n", "* stands alone"),
    ("ops:pw a1,,a2\n", "empty account id"),
    ("ops:\n", "empty password"),
    (":pw\n", "USER:PASS"),
    ("nocolon share\n", "USER:PASS"),
])
def test_malformed_lines(text: str, message: str) -> None:
    with pytest.raises(ViewerFileError, match=f"^line 1: .*{re.escape(message)}"):
        parse_viewer_file(text)


@given(st.text(max_size=300))
@settings(max_examples=800)
def test_the_viewer_file_parser_never_crashes(text: str) -> None:
    try:
        viewers = parse_viewer_file(text)
    except ViewerFileError:
        return
    for viewer in viewers:
        assert viewer.user and viewer.secret and ":" not in viewer.user
        assert viewer.accounts is None or all(viewer.accounts)


def test_every_other_way_to_name_a_viewer_takes_the_same_secrets(bcrypt_hash: str) -> None:
    # --viewer / KZR_VIEWER / config / Flask: "USER:SECRET", everything after ':' the secret.
    assert parse_viewer(f"ops:{bcrypt_hash}").kind is SecretKind.BCRYPT
    assert parse_viewer("ops:pass with spaces").secret == "pass with spaces"
    with pytest.raises(ViewerFileError, match="Apache MD5"):
        parse_viewer("ops:" + htpasswd("-m", "u", "pw"))
    with pytest.raises(ViewerFileError, match="Apache MD5"):
        Viewers(["ops:" + htpasswd("-m", "u", "pw")])
    assert Viewers([f"ops:{bcrypt_hash}"]).check("ops", "w0nderland pass") is not None


# -- what serve says at start ---------------------------------------------------------


def test_plaintext_lines_and_warnings(bcrypt_hash: str) -> None:
    strong = htpasswd("-B", "-C", "10", "u", "pw")
    listed = parse_viewer_file(f"a:{hash_password('x')}\nb:plain\n#\nc:{bcrypt_hash}\n"
                               f"d:{strong}\n")
    listed.append(parse_viewer("e:also-plain"))
    assert plaintext_lines(listed) == [(2, "b"), (None, "e")]
    warnings = secret_warnings(listed, "/etc/kzr/viewers")
    assert warnings == [
        "/etc/kzr/viewers: line 2: viewer 'b' has a plaintext password: replace it with a "
        "hash (kzr-wsgi viewer passwd, or htpasswd -B -C 10)",
        "/etc/kzr/viewers: line 4: viewer 'c' has a bcrypt hash of cost 5: remake it with a "
        "cost of at least 10 (htpasswd -B -C 10, or kzr-wsgi viewer passwd)",
        "viewer 'e' has a plaintext password: replace it with a hash (kzr-wsgi viewer "
        "passwd, or htpasswd -B -C 10)",
    ]
    assert all("also-plain" not in w for w in warnings)  # never the secret itself


def test_no_viewer_may_hold_an_upload_credential() -> None:
    guard = Guard(basic=["kazoo:upload-pw", "ops:shared-pw"])
    listed = [parse_viewer("ops:shared-pw"), parse_viewer("kazoo:other"),
              Viewer("hashed", hash_password("upload-pw"))]
    assert [v.user for v in upload_clashes(listed, guard)] == ["ops"]
    assert is_upload_credential("kazoo", "upload-pw", guard)
    assert not is_upload_credential("kazoo2", "upload-pw", guard)


def test_ended_users_on_reread() -> None:
    before = parse_viewer_file("a:1\nb:2\nc:3\n")
    after = parse_viewer_file("a:1\nc:changed\nd:4\n")
    assert ended_users(before, after) == {"b", "c"}


# -- checking: by name, a dummy for strangers, remembered a while -----------------------


class Spy:
    """Counts the calls of a function of :mod:`kzr_wsgi.ui.viewers` and passes them on."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
        self.calls = 0
        real = getattr(viewers_module, name)

        def counted(*args: Any) -> Any:
            self.calls += 1
            return real(*args)

        monkeypatch.setattr(viewers_module, name, counted)


def test_check_by_name_with_a_dummy_for_unknown_users(
        monkeypatch: pytest.MonkeyPatch, bcrypt_hash: str) -> None:
    dummy, real = Spy(monkeypatch, "verify_dummy"), Spy(monkeypatch, "verify")
    viewers = Viewers([Viewer("alice", bcrypt_hash, ("a1",)), Viewer("bob", hash_password("b"))])
    assert viewers.check("mallory", "w0nderland pass") is None
    assert (dummy.calls, real.calls) == (1, 0)
    assert viewers.check("alice", "nope") is None
    assert (dummy.calls, real.calls) == (1, 1)
    found = viewers.check("alice", "w0nderland pass")
    assert found is not None and found.accounts == ("a1",)
    assert viewers.check("bob", "w0nderland pass") is None  # another viewer's password


def test_a_plaintext_check_costs_what_a_strangers_does(monkeypatch: pytest.MonkeyPatch) -> None:
    from kzr_wsgi.ui import passwords

    calls: list[str] = []
    real = passwords.verify_dummy
    monkeypatch.setattr(passwords, "verify_dummy", lambda pw: (calls.append(pw), real(pw)))
    assert verify("pw", SecretKind.PLAIN, "guess") is False
    assert calls == ["guess"]


def test_a_verified_credential_is_remembered_for_a_while(
        monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    real = Spy(monkeypatch, "verify")
    viewers = Viewers([Viewer("alice", hash_password("pw"))], clock=lambda: now[0])
    for _ in range(5):
        assert viewers.check("alice", "pw") is not None
    assert real.calls == 1
    assert viewers.check("alice", "PW") is None  # a wrong one is never taken from memory
    assert real.calls == 2
    now[0] += 59
    assert viewers.check("alice", "pw") is not None and real.calls == 2
    now[0] += 2  # past 60 s: verified again
    assert viewers.check("alice", "pw") is not None and real.calls == 3
    viewers.forget()
    assert viewers.check("alice", "pw") is not None and real.calls == 4
    # What is kept is a keyed digest: never the password.
    remembered = viewers._remembered  # noqa: SLF001 - the point of the test
    assert all(len(key) == 32 and b"pw" not in key for key in remembered)
    assert "pw" not in repr(remembered.values())


def test_a_reread_file_remembers_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    real = Spy(monkeypatch, "verify")
    text = f"alice:{hash_password('pw')}\n"
    first = Viewers(parse_viewer_file(text))
    assert first.check("alice", "pw") is not None and real.calls == 1
    again = Viewers(parse_viewer_file(text))
    assert again.check("alice", "pw") is not None and real.calls == 2
    changed = Viewers(parse_viewer_file(f"alice:{hash_password('new')}\n"))
    assert changed.check("alice", "pw") is None
    assert changed.get("alice") is not None and changed.get("gone") is None


_TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=30)


@given(_TEXT.filter(lambda u: u != "" and ":" not in u), _TEXT)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_authenticate_keeps_answering_as_before(user: str, password: str) -> None:
    import base64

    viewers = Viewers([Viewer("ops", "ops-pw")])
    environ = {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(
        f"{user}:{password}".encode()).decode()}
    if (user, password) == ("ops", "ops-pw"):
        assert viewers.authenticate(environ).user == "ops"
    else:
        with pytest.raises(Unauthorized):
            viewers.authenticate(environ)


def test_authenticate_matches() -> None:
    import base64

    environ = {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b"ops:ops-pw").decode()}
    assert Viewers([Viewer("ops", "ops-pw")]).authenticate(environ).user == "ops"


def test_the_manuals_viewer_file_sample_reads_and_checks() -> None:
    from pathlib import Path

    page = (Path(__file__).parent.parent / "docs" / "ui.md").read_text()
    sample = page.split("```text\n# /etc/kzr/viewers")[1].split("```")[0]
    viewers = Viewers(parse_viewer_file("#" + sample))
    assert [(v.user, v.kind, v.share) for v in viewers] == [
        ("ops", SecretKind.ARGON2ID, True), ("acme", SecretKind.BCRYPT, False),
        ("globex", SecretKind.BCRYPT, False)]
    assert viewers.check("acme", "Tr0ub4dor&3") is not None
    assert viewers.check("globex", "hunter2-but-longer") is not None
    assert viewers.check("ops", "correct-horse-battery-staple") is not None
