"""``kzr-wsgi transcript ID``: a recording's transcript from the catalog.

::

    kzr-wsgi transcript 3f2a… --root /srv/recordings               # JSON
    kzr-wsgi transcript 3f2a… --root /srv/recordings --format vtt

The same view as the page's ``…/transcript`` route (speakers named with the config
file's ``[analysis]`` mapping). A terminal never gets a control character from a
transcript: JSON is ASCII with escapes, the other formats have them replaced.
"""

from __future__ import annotations

import json
import re

import click

from ..catalog.transcripts import view
from ..configfile import ANALYSIS
from ..pipeline.settings import DEFAULT_SETTINGS
from ..transcribe.render import render
from .options import StoreSpec, store_options

#: Control characters but the line feed (what a transcript must not send a terminal).
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")


@click.command("transcript")
@click.argument("recording", metavar="ID")
@click.option("--format", "fmt", type=click.Choice(["json", "vtt", "srt", "txt"]),
              default="json", show_default=True, help="How to print it.")
@store_options(tables=(ANALYSIS,))
def transcript(spec: StoreSpec, recording: str, fmt: str) -> None:
    """Print the transcript of the recording ID (its id in `ls --json`)."""
    catalog = spec.open_catalog()
    try:
        row = catalog.get(recording)
        if row is None:
            raise click.ClickException(f"no recording {recording!r} in {catalog.url}")
        callers = (ANALYSIS.of(spec.config) or DEFAULT_SETTINGS).callers
        doc = view(catalog, row.id, callers.speaker)
    finally:
        catalog.close()
    if doc is None:
        state = row.transcript.state if row.transcript is not None else "none"
        raise click.ClickException(f"recording {row.id} has no transcript "
                                   f"(transcription: {state})")
    if fmt == "json":
        click.echo(json.dumps(doc, ensure_ascii=True, indent=1))
    else:
        click.echo(_CONTROL.sub("\ufffd", render(fmt, doc["segments"])), nl=False)


__all__ = ["transcript"]
