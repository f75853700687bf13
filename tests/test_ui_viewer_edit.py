"""The viewer file editor: add, rm, passwd as pure text edits; the atomic 0600 writer."""

from __future__ import annotations

import os
import stat
import subprocess
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kzr_wsgi.auth import Guard
from kzr_wsgi.ui.passwords import SecretKind
from kzr_wsgi.ui.viewer_edit import (
    ViewerEditError,
    add_viewer,
    change_password,
    edit_viewer_file,
    remove_viewer,
    viewer_line,
    write_viewer_file,
)
from kzr_wsgi.ui.viewers import Viewers, parse_viewer_file, read_viewer_file

FILE = "# viewers of rec.example.net\r\n\r\nops:plain-pw * share\r\n# customers\r\nacme:pw2 a1\r\n"


def viewers_of(text: str) -> Viewers:
    return Viewers(parse_viewer_file(text))


def test_add_keeps_every_other_line_and_hashes() -> None:
    text = add_viewer(FILE, "globex", "n3w pass", accounts=["a7", "a8"], share=True)
    assert text.startswith(FILE)  # comments, blank lines, CRLF: untouched
    added = text[len(FILE):]
    assert added.endswith("\r\n") and added.count("\n") == 1
    assert "n3w pass" not in text
    fields = added.split()
    assert fields[0].partition(":")[0] == "globex" and fields[1:] == ["a7,a8", "share"]
    viewer = viewers_of(text).check("globex", "n3w pass")
    assert viewer is not None and viewer.kind is SecretKind.ARGON2ID
    assert viewer.accounts == ("a7", "a8") and viewer.share


def test_add_bcrypt_on_request_and_to_an_empty_file() -> None:
    text = add_viewer("", "ops", "pw", kind=SecretKind.BCRYPT)
    assert text.startswith("ops:$2b$10$") and text.endswith("\n") and text.count("\n") == 1
    assert viewers_of(text).check("ops", "pw") is not None
    # A file without a final newline gets one before the new line.
    assert add_viewer("a:1", "b", "pw").startswith("a:1\nb:$argon2id$")


@pytest.mark.parametrize("user, accounts, message", [
    ("ops", None, "exists"),
    ("", None, "name"),
    ("a:b", None, "name"),
    ("a b", None, "name"),
    ("#x", None, "name"),
    ("x\x07", None, "name"),
    ("new", [], "empty account list"),
    ("new", ["a1", ""], "not an account id"),
    ("new", ["a,b"], "not an account id"),
    ("new", ["*"], "not an account id"),
    ("new", ["a b"], "not an account id"),
])
def test_add_refuses(user: str, accounts: list[str] | None, message: str) -> None:
    with pytest.raises(ViewerEditError, match=message):
        add_viewer(FILE, user, "pw", accounts=accounts)


def test_add_and_passwd_refuse_an_upload_credential() -> None:
    guard = Guard(basic=["kazoo:upload-pw", "ops:ops-upload"])
    with pytest.raises(ViewerEditError, match="upload credential") as caught:
        add_viewer("", "kazoo", "upload-pw", uploads=guard)
    assert "upload-pw" not in str(caught.value)
    with pytest.raises(ViewerEditError, match="upload credential"):
        change_password(FILE, "ops", "ops-upload", uploads=guard)
    assert add_viewer("", "kazoo", "another", uploads=guard)
    with pytest.raises(ViewerEditError, match="empty"):
        add_viewer("", "x", "")


def test_rm() -> None:
    text = remove_viewer(FILE, "ops")
    assert text == "# viewers of rec.example.net\r\n\r\n# customers\r\nacme:pw2 a1\r\n"
    with pytest.raises(ViewerEditError, match="no viewer 'ops'"):
        remove_viewer(text, "ops")


def test_passwd_keeps_accounts_share_and_mends_a_refused_kind() -> None:
    apr1 = subprocess.run(["htpasswd", "-n", "-b", "-m", "u", "old"], check=True,
                          capture_output=True, text=True).stdout.strip().partition(":")[2]
    text = FILE.replace("acme:pw2 a1", f"acme:{apr1} a1 share")
    with pytest.raises(ValueError, match="Apache MD5"):
        parse_viewer_file(text)
    mended = change_password(text, "acme", "fresh")
    lines = mended.split("\r\n")
    assert lines[:4] == FILE.split("\r\n")[:4] and mended.endswith("\r\n")
    assert lines[4].startswith("acme:$argon2id$") and lines[4].endswith(" a1 share")
    viewer = viewers_of(mended).check("acme", "fresh")
    assert viewer is not None and viewer.accounts == ("a1",) and viewer.share
    assert viewers_of(change_password(FILE, "ops", "x")).check("ops", "x") is not None
    with pytest.raises(ViewerEditError, match="no viewer"):
        change_password(FILE, "nobody", "pw")


def test_an_unreadable_file_is_not_edited() -> None:
    with pytest.raises(ViewerEditError, match="line 2: .*by hand"):
        add_viewer("a:1\nbroken line here\n", "b", "pw")
    with pytest.raises(ViewerEditError, match="twice"):
        remove_viewer("a:1\na:2\n", "a")


_NAME = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FFF,
                                       exclude_categories=["Cs", "Zs", "Zl", "Zp", "Cc"],
                                       exclude_characters=":,#*"), min_size=1, max_size=12)


@given(_NAME, st.none() | st.lists(_NAME, min_size=1, max_size=3), st.booleans())
@settings(max_examples=200)
def test_a_written_line_reads_back(user: str, accounts: list[str] | None, share: bool) -> None:
    if not user.isprintable() or any(not a.isprintable() for a in accounts or []):
        return
    line = viewer_line(user, "SECRET-X", accounts, share)
    [viewer] = parse_viewer_file(line + "\n")
    assert (viewer.user, viewer.secret, viewer.share) == (user, "SECRET-X", share)
    assert viewer.accounts == (tuple(accounts) if accounts is not None else None)


# -- the file -------------------------------------------------------------------------


def test_the_file_is_written_atomically_0600_through_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "conf" / "viewers"
    real.parent.mkdir()
    real.write_bytes(FILE.encode())
    real.chmod(0o644)
    link = tmp_path / "viewers"
    link.symlink_to(real)
    old = os.umask(0)
    try:
        edit_viewer_file(link, lambda t: add_viewer(t, "new", "pw"))
    finally:
        os.umask(old)
    assert link.is_symlink()  # the link kept, the file it names replaced
    assert stat.S_IMODE(real.stat().st_mode) == 0o600
    assert [v.user for v in read_viewer_file(link)] == ["ops", "acme", "new"]
    assert sorted(p.name for p in real.parent.iterdir()) == ["viewers"]  # no temporary left


def test_a_failed_edit_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "viewers"
    path.write_bytes(FILE.encode())
    with pytest.raises(ViewerEditError):
        edit_viewer_file(path, lambda t: remove_viewer(t, "nobody"))
    assert path.read_bytes() == FILE.encode() and os.listdir(tmp_path) == ["viewers"]
    edit_viewer_file(path, lambda t: remove_viewer(t, "acme"))
    assert path.read_bytes() == FILE.encode().replace(b"acme:pw2 a1\r\n", b"")


def test_a_missing_file_is_created_only_for_add(tmp_path: Path) -> None:
    path = tmp_path / "viewers"
    with pytest.raises(ViewerEditError, match="no such viewer file"):
        edit_viewer_file(path, lambda t: remove_viewer(t, "x"))
    edit_viewer_file(path, lambda t: add_viewer(t, "ops", "pw"), create=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Viewers(read_viewer_file(path)).check("ops", "pw") is not None


def test_concurrent_edits_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "viewers"
    write_viewer_file(path, "# start\n")
    users = [f"user{n}" for n in range(6)]
    threads = [threading.Thread(target=edit_viewer_file, args=(
        path, lambda t, u=u: add_viewer(t, u, "pw", kind=SecretKind.BCRYPT))) for u in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(v.user for v in read_viewer_file(path)) == users
