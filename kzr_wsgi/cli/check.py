"""``kzr-wsgi check URL``: a Kazoo-shaped self-test of a receiver.

The work is done in :mod:`kzr_wsgi.selftest.check`; this command parses options and prints.
"""

from __future__ import annotations

import json

import click

from ..selftest.check import DEFAULT_TIMEOUT, Step, passed, run_check


@click.command()
@click.argument("url")
@click.option("--read-back", is_flag=True,
              help="The receiver serves GET on its upload URLs (serve --read-back): check "
                   "that every upload comes back, Range included.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=DEFAULT_TIMEOUT,
              show_default=True, metavar="SECONDS", help="Longest wait for any one request.")
@click.option("--json", "as_json", is_flag=True,
              help='Print the steps as a JSON list of {"step", "name", "status", "hint"}.')
def check(url: str, read_back: bool, timeout: float, as_json: bool) -> None:
    """Upload to URL as Kazoo and FreeSWITCH do, and say whether it took them right.

    URL is the one Kazoo is configured with, credentials included
    (http://USER:PASS@recorder:8080/kzr). Each step prints PASS, WARN, FAIL or SKIP,
    with what to change on a failure. Exit status 0 when no step failed, 1 otherwise.
    The uploads are small MP3s under call ids starting with kzr-check-.
    """

    def show(step: Step) -> None:
        click.secho(step.line(), fg=_COLOURS[step.status], bold=step.status == "FAIL")

    try:
        steps = run_check(url, timeout=timeout, read_back=read_back,
                          echo=None if as_json else show)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="URL") from exc
    if as_json:
        click.echo(json.dumps([s.to_json() for s in steps], indent=2))
    ok = passed(steps)
    if not as_json:
        failed = sum(s.status == "FAIL" for s in steps)
        click.echo("check passed" if ok else f"check FAILED: {failed} step(s)", err=True)
    raise SystemExit(0 if ok else 1)


_COLOURS = {"PASS": "green", "WARN": "yellow", "FAIL": "red", "SKIP": "cyan"}
