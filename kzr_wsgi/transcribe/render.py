"""A transcript as WebVTT, SubRip or plain text. Pure: text in, text out.

Each takes the transcript view's segments (``{"start", "end", "speaker", "text"}``,
seconds) in time order. Transcript text is untrusted (it is what someone said, as an
engine wrote it): in WebVTT, ``&`` and ``<`` are escaped, and so is ``>`` (a cue
text may not hold ``-->``); every format puts each cue on one line, so no text can
start a cue, a header or a timing line of its own.

>>> segments = [{"start": 0.5, "end": 2.25, "speaker": "caller", "text": "a <b> & c --> d"}]
>>> print(vtt(segments))
WEBVTT
<BLANKLINE>
1
00:00:00.500 --> 00:00:02.250
<v caller>a &lt;b&gt; &amp; c --&gt; d
<BLANKLINE>
>>> print(srt(segments))
1
00:00:00,500 --> 00:00:02,250
caller: a <b> & c -> d
<BLANKLINE>
>>> print(txt(segments), end="")
[00:00:00.500 caller] a <b> & c --> d
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

#: The formats, and their media types.
FORMATS: dict[str, str] = {
    "json": "application/json",
    "vtt": "text/vtt; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "txt": "text/plain; charset=utf-8",
}
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029\x0b\x0c\x85]+")


def clock(seconds: float, separator: str = ".") -> str:
    """``HH:MM:SS.mmm`` (SubRip: ``,`` before the milliseconds).

    >>> clock(3725.0416), clock(0, ",")
    ('01:02:05.042', '00:00:00,000')
    """
    ms = max(0, round(float(seconds) * 1000))
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def one_line(text: Any) -> str:
    """``text`` on one line: every line break a space."""
    return _LINE_BREAKS.sub(" ", str(text)).strip()


def vtt_escape(text: str) -> str:
    """Cue text as WebVTT holds it: ``&``, ``<`` and ``>`` as character references."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def vtt(segments: Iterable[Mapping[str, Any]]) -> str:
    """WebVTT: a cue per segment, its speaker as the cue's voice."""
    out = ["WEBVTT", ""]
    for i, s in enumerate(segments, start=1):
        voice = vtt_escape(one_line(s.get("speaker") or ""))
        text = vtt_escape(one_line(s.get("text") or ""))
        out += [str(i), f"{clock(s['start'])} --> {clock(s['end'])}",
                (f"<v {voice}>" if voice else "") + text, ""]
    return "\n".join(out)


def srt(segments: Iterable[Mapping[str, Any]]) -> str:
    """SubRip: a numbered cue per segment, ``speaker: text`` (an arrow in the text is
    shortened, so no line of text reads as a timing line)."""
    out = []
    for i, s in enumerate(segments, start=1):
        speaker = one_line(s.get("speaker") or "")
        text = one_line(s.get("text") or "").replace("-->", "->")
        out += [str(i), f"{clock(s['start'], ',')} --> {clock(s['end'], ',')}",
                f"{speaker}: {text}" if speaker else text, ""]
    return "\n".join(out)


def txt(segments: Iterable[Mapping[str, Any]]) -> str:
    """Plain text: a line per segment, ``[time speaker] text``."""
    lines = []
    for s in segments:
        speaker = one_line(s.get("speaker") or "")
        head = f"{clock(s['start'])} {speaker}".strip()
        lines.append(f"[{head}] {one_line(s.get('text') or '')}\n")
    return "".join(lines)


def render(fmt: str, segments: Iterable[Mapping[str, Any]]) -> str:
    """``segments`` in ``fmt`` (``vtt``, ``srt`` or ``txt``); ``ValueError`` for another."""
    makers = {"vtt": vtt, "srt": srt, "txt": txt}
    if fmt not in makers:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    return makers[fmt](segments)


__all__ = ["FORMATS", "clock", "one_line", "render", "srt", "txt", "vtt", "vtt_escape"]
