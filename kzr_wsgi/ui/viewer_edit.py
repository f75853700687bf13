"""Editing a viewer file: add a viewer, remove one, change a password; and writing it safely.

The edits are pure (text in, text out): every line but the one edited is kept as it was,
comments, blank lines and line endings included, and a new viewer goes at the end. A new
password is always hashed (argon2id unless bcrypt is asked for). Given the upload
credentials, an edit refuses a password that would also upload.

:func:`edit_viewer_file` applies an edit to a file: read, edit, write to a temporary
file beside it (mode ``0600``, its owner kept), ``fsync``, rename over it, ``fsync`` the
folder; two edits at once wait for each other.

>>> text = add_viewer("# viewers\\n", "acme", "s3cret", accounts=["a1", "a2"], share=True)
>>> text.splitlines()[1].split()[1:]
['a1,a2', 'share']
>>> remove_viewer(text, "acme")
'# viewers\\n'
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..stores.directory.files import fsync_dir
from ..stores.tempfiles import write_all
from .passwords import SecretKind, hash_password
from .viewers import (
    EVERY_ACCOUNT,
    SHARE,
    UploadCredentials,
    ViewerFileError,
    is_upload_credential,
    split_viewer_line,
)

#: A viewer file holds password hashes: readable by its owner only.
FILE_MODE = 0o600


class ViewerEditError(ViewerFileError):
    """An edit that cannot be made; the message says why (never holding a password)."""


def viewer_line(user: str, secret: str, accounts: Iterable[str] | None = None,
                share: bool = False) -> str:
    """``USER:SECRET [ACCOUNTS] [share]`` for a viewer (no line ending).

    >>> viewer_line("ops", "HASH", None, True)
    'ops:HASH * share'
    """
    listed = None if accounts is None else list(accounts)
    _check_user(user)
    if listed is not None:
        _check_accounts(listed)
    fields = [f"{user}:{secret}"]
    if listed is not None:
        fields.append(",".join(listed))
    elif share:
        fields.append(EVERY_ACCOUNT)
    if share:
        fields.append(SHARE)
    return " ".join(fields)


def add_viewer(
    text: str,
    user: str,
    password: str,
    *,
    accounts: Iterable[str] | None = None,
    share: bool = False,
    kind: SecretKind = SecretKind.ARGON2ID,
    uploads: UploadCredentials | None = None,
) -> str:
    """``text`` with a new viewer's line at the end.

    :param accounts: the accounts it may see; ``None`` for every account.
    :raises ViewerEditError: the user exists, a name or account id that a line cannot
        hold, an empty password, or one that is an upload credential.
    """
    if _find(text, user) is not None:
        raise ViewerEditError(f"viewer {user!r} exists: use passwd to change its password")
    line = viewer_line(user, _hashed(user, password, kind, uploads), accounts, share)
    ending = _ending(text)
    if text and not text.endswith(("\n", "\r")):
        text += ending
    return text + line + ending


def remove_viewer(text: str, user: str) -> str:
    """``text`` without ``user``'s line; :raises ViewerEditError: no such viewer."""
    lines = text.splitlines(keepends=True)
    index = _find(text, user)
    if index is None:
        raise ViewerEditError(f"no viewer {user!r}")
    del lines[index]
    return "".join(lines)


def change_password(
    text: str,
    user: str,
    password: str,
    *,
    kind: SecretKind = SecretKind.ARGON2ID,
    uploads: UploadCredentials | None = None,
) -> str:
    """``text`` with ``user``'s SECRET replaced by a hash of ``password``.

    Its accounts and right to share are kept; a line with a hash of a kind that is not
    taken (``$apr1$``, ...) can be mended this way.
    :raises ViewerEditError: no such viewer, an empty password or an upload credential.
    """
    lines = text.splitlines(keepends=True)
    index = _find(text, user)
    if index is None:
        raise ViewerEditError(f"no viewer {user!r}: use add")
    fields = split_viewer_line(lines[index].strip())
    body = lines[index].rstrip("\r\n")
    new = viewer_line(user, _hashed(user, password, kind, uploads), fields.accounts,
                      fields.share)
    lines[index] = new + lines[index][len(body):]
    return "".join(lines)


# -- the file -----------------------------------------------------------------------


def edit_viewer_file(path: str | os.PathLike[str], change: Callable[[str], str], *,
                     create: bool = False) -> None:
    """Apply ``change`` to the viewer file at ``path`` and write the result atomically.

    A symbolic link is followed (the file it names is replaced, the link kept).
    :param create: a missing file is edited as an empty one (for ``add``).
    :raises ViewerEditError: no such file (unless ``create``), or not UTF-8.
    :raises ViewerFileError: what ``change`` raises.
    """
    target = Path(path).resolve()
    with _folder_locked(target.parent):
        try:
            # Bytes, not read_text: its newline translation would rewrite CRLF lines.
            text = target.read_bytes().decode("utf-8")
        except FileNotFoundError:
            if not create:
                raise ViewerEditError(f"{path}: no such viewer file") from None
            text = ""
        except UnicodeDecodeError as exc:
            raise ViewerEditError(f"{path}: not UTF-8 ({exc})") from None
        write_viewer_file(target, change(text))


def write_viewer_file(path: str | os.PathLike[str], text: str) -> None:
    """Replace (or create) the file at ``path`` with ``text``, atomically and durably.

    Mode ``0600``; the owner and group of the file it replaces are kept when the
    process may set them (root editing a file that a service account reads).
    """
    target = Path(path)
    try:
        before: os.stat_result | None = target.stat()
    except FileNotFoundError:
        before = None
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        try:
            os.fchmod(fd, FILE_MODE)  # the umask may have taken bits, never added them
            if before is not None:
                # Not root: the new file is ours, as the old one must have been.
                with contextlib.suppress(PermissionError):
                    os.fchown(fd, before.st_uid, before.st_gid)
            data = text.encode("utf-8")
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(target.parent)


# -- helpers ------------------------------------------------------------------------


def _find(text: str, user: str) -> int | None:
    """The index (in ``splitlines``) of ``user``'s line; refuses a file it cannot read."""
    found = None
    for index, raw in enumerate(text.splitlines()):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            fields = split_viewer_line(line)
        except ViewerFileError as exc:
            raise ViewerEditError(f"line {index + 1}: {exc}; mend it by hand first") from None
        if fields.user == user:
            if found is not None:
                raise ViewerEditError(f"viewer {user!r} is listed twice; mend it by hand first")
            found = index
    return found


def _hashed(user: str, password: str, kind: SecretKind,
            uploads: UploadCredentials | None) -> str:
    _check_user(user)
    if uploads is not None and is_upload_credential(user, password, uploads):
        raise ViewerEditError(
            f"that password would make viewer {user!r} an upload credential (--basic-auth): "
            "a viewer must not be able to upload; choose another")
    try:
        return hash_password(password, kind)
    except ValueError as exc:
        raise ViewerEditError(str(exc)) from None


def _check_user(user: str) -> None:
    if not user or user.startswith("#") or any(
            c == ":" or c.isspace() or not c.isprintable() for c in user):
        raise ViewerEditError(
            "a viewer's name is printable, holds no ':' and no white space, and does not "
            "start with #")


def _check_accounts(accounts: list[str]) -> None:
    if not accounts:
        raise ViewerEditError("an empty account list: leave it out for every account")
    for account in accounts:
        if (not account or account == EVERY_ACCOUNT or any(
                c == "," or c.isspace() or not c.isprintable() for c in account)):
            raise ViewerEditError(
                f"{account!r} is not an account id (printable, no ',' and no white space; "
                "leave the list out for every account)")


def _ending(text: str) -> str:
    """The line ending ``text`` uses (``\\n`` for a new file)."""
    return "\r\n" if "\r\n" in text else "\n"


@contextmanager
def _folder_locked(folder: Path) -> Iterator[None]:
    """An exclusive ``flock`` on the folder, so two edits do not lose one another's line."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
