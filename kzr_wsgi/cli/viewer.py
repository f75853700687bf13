"""``kzr-wsgi viewer add|rm|passwd``: edit a viewer file without writing a password in it.

The edits are :mod:`kzr_wsgi.ui.viewer_edit`'s (every other line kept as it was, the file
replaced atomically, mode ``0600``); a new password is hashed, argon2id unless
``--bcrypt``. The password is asked for on a terminal (twice), or read from standard
input (its first line) when that is not a terminal; never an option, which ``ps`` would
show. A password that is also an upload credential is refused: the upload credentials
are read from the options ``serve`` takes (``--basic-auth``, ``--basic-auth-file``,
``--config``, and their ``KZR_…`` variables), so the same environment serves both.

``serve`` rereads the file on ``SIGHUP``; until then it keeps the viewers it read.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..auth import Guard, read_secrets
from ..configfile import Config
from .config import config_option

F = TypeVar("F", bound=Callable[..., Any])

_AFTER = ("kzr-wsgi: serve reads it at start-up, and again on SIGHUP "
          "(kill -HUP the master's pid)")


def _file_options(*, uploads: bool) -> Callable[[F], F]:
    """``--file`` (also ``--viewer-file``, as ``serve`` names it) and ``--config``."""
    keys = ("viewer-file", "basic-auth", "basic-auth-file") if uploads else ("viewer-file",)

    def declare(func: F) -> F:
        func = click.option("--viewer-file", "--file", "path", required=True, metavar="FILE",
                            type=click.Path(dir_okay=False),
                            help="The viewer file (as `serve --viewer-file`).")(func)
        return config_option(keys=keys)(func)

    return declare


def _upload_options(func: F) -> F:
    """The upload credentials a new password must not equal (as ``serve`` takes them)."""
    func = click.option("--basic-auth", multiple=True, metavar="USER:PASS",
                        help="An upload credential (as `serve --basic-auth`): a viewer's "
                             "password may not equal one. Repeatable.")(func)
    return click.option("--basic-auth-file", type=click.Path(dir_okay=False, exists=True),
                        default=None,
                        help="File of upload credentials (as `serve --basic-auth-file`).")(func)


def _uploads(basic_auth: tuple[str, ...], basic_auth_file: str | None) -> Guard:
    try:
        return Guard(basic=[*basic_auth,
                            *(read_secrets(basic_auth_file) if basic_auth_file else ())])
    except (ValueError, OSError) as exc:
        raise click.ClickException(f"--basic-auth/--basic-auth-file: {exc}") from exc


def _password() -> str:
    """The new password: asked twice on a terminal, else standard input's first line."""
    if sys.stdin.isatty():
        return str(click.prompt("New password", hide_input=True, confirmation_prompt=True))
    line = sys.stdin.readline()
    return line[:-1] if line.endswith("\n") else line


def _edit(path: str, change: Callable[[str], str], *, create: bool = False) -> None:
    from ..ui.viewer_edit import edit_viewer_file
    from ..ui.viewers import ViewerFileError

    try:
        edit_viewer_file(path, change, create=create)
    except (ViewerFileError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
def viewer() -> None:
    """Edit the search page's viewer file: add, remove, change a password."""


@viewer.command("add")
@click.argument("user")
@click.option("--account", "accounts", multiple=True, metavar="ID",
              help="An account this viewer may see (and no other). Repeatable; none: every "
                   "account.")
@click.option("--share", is_flag=True, help="May make share links.")
@click.option("--bcrypt", is_flag=True, help="Hash with bcrypt (cost 10) rather than argon2id.")
@_upload_options
@_file_options(uploads=True)
def viewer_add(user: str, accounts: tuple[str, ...], share: bool, bcrypt: bool, path: str,
               basic_auth: tuple[str, ...], basic_auth_file: str | None,
               config: Config | None) -> None:
    """Add USER to the viewer file (made if missing), its password hashed."""
    from ..ui.passwords import SecretKind
    from ..ui.viewer_edit import add_viewer

    uploads = _uploads(basic_auth, basic_auth_file)
    password = _password()
    kind = SecretKind.BCRYPT if bcrypt else SecretKind.ARGON2ID
    _edit(path, lambda text: add_viewer(text, user, password, accounts=accounts or None,
                                        share=share, kind=kind, uploads=uploads), create=True)
    scope = ", ".join(accounts) if accounts else "every account"
    click.echo(f"kzr-wsgi: viewer {user!r} added to {path} ({scope}"
               f"{', may share' if share else ''})", err=True)
    click.echo(_AFTER, err=True)


@viewer.command("rm")
@click.argument("user")
@_file_options(uploads=False)
def viewer_rm(user: str, path: str, config: Config | None) -> None:
    """Remove USER from the viewer file (serve signs it out when it rereads the file)."""
    from ..ui.viewer_edit import remove_viewer

    _edit(path, lambda text: remove_viewer(text, user))
    click.echo(f"kzr-wsgi: viewer {user!r} removed from {path}", err=True)
    click.echo(_AFTER, err=True)


@viewer.command("passwd")
@click.argument("user")
@click.option("--bcrypt", is_flag=True, help="Hash with bcrypt (cost 10) rather than argon2id.")
@_upload_options
@_file_options(uploads=True)
def viewer_passwd(user: str, bcrypt: bool, path: str, basic_auth: tuple[str, ...],
                  basic_auth_file: str | None, config: Config | None) -> None:
    """Give USER a new password (hashed); its accounts and right to share are kept."""
    from ..ui.passwords import SecretKind
    from ..ui.viewer_edit import change_password

    uploads = _uploads(basic_auth, basic_auth_file)
    password = _password()
    kind = SecretKind.BCRYPT if bcrypt else SecretKind.ARGON2ID
    _edit(path, lambda text: change_password(text, user, password, kind=kind, uploads=uploads))
    click.echo(f"kzr-wsgi: the password of viewer {user!r} in {path} is changed", err=True)
    click.echo(_AFTER, err=True)
