"""An OpenAI-compatible transcription server for the tests, on loopback, in a thread.

It implements ``POST /v1/audio/transcriptions`` as OpenAI documents it
(https://platform.openai.com/docs/api-reference/audio/createTranscription): a
``multipart/form-data`` body (parsed by werkzeug) with ``file``, ``model``,
``response_format``, ``timestamp_granularities[]`` and an optional ``language``; each
field is checked and a request that breaks the contract gets ``400`` (and is listed
in :attr:`TranscriptionServer.problems`, which a test asserts is empty).

It cannot recognise speech, so it answers what it hears plainly: each run of sound in
the WAV (20 ms frames above a fixed level, gaps under 0.3 s bridged) becomes a segment
``hello world`` timed where the sound is, ``hello`` in its first half and ``world`` in
its second. A test makes audio with sound where it wants speech, and checks the times
that come back.

The answer comes in the shape of a real server (``shape``), each taken from its source:

* ``openai``: OpenAI's documented ``verbose_json`` (the API reference's "verbose json
  object": ``task``, ``language`` as a name, ``duration``, ``text``, ``segments`` with
  ``id``/``seek``/``tokens``/``temperature``/``avg_logprob``/``compression_ratio``/
  ``no_speech_prob``, top-level ``words`` without spaces).
* ``whisper.cpp``: ggml-org/whisper.cpp ``examples/server/server.cpp`` (commit
  233fe1fc9b48, the ``vjson_format`` branch): ``language`` as a full name
  (``whisper_lang_str_full``), ``detected_language*`` and ``language_probabilities``,
  and each segment's tokens as ``words`` *inside the segment* (``word`` with its leading
  space, pieces of a word without one, ``start``/``end``/``t_dtw``/``probability``); no
  top-level ``words``.
* ``speaches``: speaches-ai/speaches ``src/speaches/executors/whisper.py`` (commit
  870e1e16a734, ``case "verbose_json"``): ``openai.types.audio.TranscriptionVerbose``
  dumped as JSON: ``language`` as a code, top-level ``words`` from faster-whisper
  (each with a leading space), segments as OpenAI's.
* ``localai``: mudler/LocalAI ``core/http/endpoints/openai/transcription.go`` and
  ``core/schema/transcription.go`` (commit 82c191afadf5): ``TranscriptionResultSeconds``,
  whose ``segments`` and ``words`` are ``omitempty``: with a backend that gives none,
  only ``text`` (and ``language``/``duration`` when known).
* ``vllm``: vllm-project/vllm ``vllm/entrypoints/openai/speech_to_text/protocol.py``
  (``TranscriptionResponseVerbose``) and ``speech_to_text.py``: ``duration`` as a
  *string*, ``language`` as asked (``null`` when not), ``segments`` with OpenAI's
  fields, ``words`` ``null``.

It can also be told what to do next (:meth:`TranscriptionServer.then`): ``ok``,
``500``, ``hang`` (answer nothing until the test ends), ``401``/``403``/``400``/``404``,
``redirect`` (``307`` to a path that would answer, and counts it if anyone follows),
``not-json``, ``huge`` (17 MiB of answer). It counts calls per (sha256 of the audio, model).
"""

from __future__ import annotations

import collections
import hashlib
import io
import json
import threading
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

SHAPES = ("openai", "whisper.cpp", "speaches", "localai", "vllm")
PATH = "/v1/audio/transcriptions"
MOVED = "/v1/audio/transcriptions-moved"
#: The fields our client sends, and the only ones it may send.
FIELDS = {"model", "response_format", "timestamp_granularities[]", "language"}


@dataclass
class Seen:
    """One request as the server received it."""

    path: str
    headers: dict[str, str]
    form: dict[str, list[str]]
    filename: str | None
    file_type: str | None
    audio: bytes


@dataclass
class TranscriptionServer:
    """The server's state; a test reads and steers it while it runs."""

    shape: str = "openai"
    #: The key it expects (``None``: no ``Authorization`` wanted).
    key: str | None = None
    #: Put the key it was sent into its 401 message (a careless server).
    echo_key: bool = False
    port: int = 0
    calls: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    seen: list[Seen] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    followed_redirects: int = 0
    script: collections.deque[str] = field(default_factory=collections.deque)
    #: What each run of sound says, in turn (empty: ``hello world``).
    say: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        """The base URL to configure (``…/v1``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def then(self, *actions: str) -> None:
        """Answer the next requests with ``actions`` in turn (then ``ok`` again)."""
        self.script.extend(actions)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        return self.respond(request)(environ, start_response)

    def respond(self, request: Request) -> Response:
        """Check the request, count it, answer as scripted."""
        if request.path == MOVED:
            self.followed_redirects += 1
            return _json({"text": "followed"})
        if request.path != PATH or request.method != "POST":
            return _error(404, f"no route {request.method} {request.path}")
        seen, problems = _read(request)
        with self.lock:
            self.seen.append(seen)
            self.problems.extend(problems)
            if seen.audio:
                model = seen.form.get("model", [""])[0]
                self.calls[(hashlib.sha256(seen.audio).hexdigest(), model)] += 1
            action = self.script.popleft() if self.script else "ok"
        if problems:
            return _error(400, "; ".join(problems))
        sent = request.headers.get("Authorization")
        if self.key is not None and sent != f"Bearer {self.key}":
            shown = sent if self.echo_key else "***"
            return _error(401, f"Incorrect API key provided: {shown}.", "invalid_api_key")
        return self._act(action, seen)

    def _act(self, action: str, seen: Seen) -> Response:
        if action == "ok":
            return _json(answer(self.shape, seen.audio, seen.form.get("language", [None])[0],
                                self.say))
        if action == "hang":
            self.release.wait(60)
            return _error(503, "too late")
        if action == "redirect":
            return Response(status=307, headers={"Location": MOVED})
        if action == "huge":  # more than any transcript: a server gone wrong
            return Response(b" " * (17 * 1024 * 1024), 200, mimetype="application/json")
        if action == "not-json":
            return Response("<html>a proxy's page</html>", 200, mimetype="text/html")
        status = int(action)
        messages = {500: "The server had an error while processing your request.",
                    403: "Your key may not use this model.", 400: "Invalid file format.",
                    404: "The model does not exist.", 401: "No key."}
        if status == 401 and self.echo_key:
            return _error(401, f"Incorrect API key: {seen.headers.get('authorization')}")
        return _error(status, messages.get(status, "error"))


def _read(request: Request) -> tuple[Seen, list[str]]:
    """What the request carried, and how it breaks the documented contract."""
    problems: list[str] = []
    if request.mimetype != "multipart/form-data":
        problems.append(f"content type {request.mimetype!r}, not multipart/form-data")
    form = {k: request.form.getlist(k) for k in request.form}
    upload = request.files.get("file")
    audio = upload.read() if upload is not None else b""
    seen = Seen(request.path, {k.lower(): v for k, v in request.headers.items()}, form,
                upload.filename if upload else None, upload.mimetype if upload else None, audio)
    if set(request.files) != {"file"}:
        problems.append(f"files {sorted(request.files)}, not exactly ['file']")
    if set(form) - FIELDS:
        problems.append(f"unexpected fields {sorted(set(form) - FIELDS)}")
    for name in ("model", "response_format"):
        if len(form.get(name, [])) != 1 or not form[name][0]:
            problems.append(f"{name}: one non-empty value wanted, got {form.get(name)}")
    if form.get("response_format") != ["verbose_json"]:
        problems.append(f"response_format {form.get('response_format')}")
    if sorted(form.get("timestamp_granularities[]", [])) != ["segment", "word"]:
        problems.append(f"timestamp_granularities[] {form.get('timestamp_granularities[]')}")
    if "language" in form and (len(form["language"]) != 1 or not form["language"][0]):
        problems.append(f"language {form['language']}")
    if audio:
        problems.extend(_wav_problems(audio))
    else:
        problems.append("no audio in 'file'")
    return seen, problems


def _wav_problems(audio: bytes) -> list[str]:
    try:
        with wave.open(io.BytesIO(audio)) as w:
            shape = (w.getnchannels(), w.getsampwidth(), w.getframerate())
    except (wave.Error, EOFError) as exc:
        return [f"file is not a WAV: {exc}"]
    return [] if shape == (1, 2, 16000) else [f"WAV is {shape}, not mono 16-bit 16 kHz"]


def sound_runs(audio: bytes) -> list[tuple[float, float]]:
    """Where the WAV has sound: (start, end) seconds of each run of loud 20 ms frames."""
    with wave.open(io.BytesIO(audio)) as w:
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32)
    frame = rate // 50
    count = len(pcm) // frame
    rms = np.sqrt((pcm[:count * frame].reshape(count, frame) ** 2).mean(axis=1))
    loud = rms > 1000
    runs: list[list[float]] = []
    for i in np.flatnonzero(loud):
        start, end = i * 0.02, (i + 1) * 0.02
        if runs and start - runs[-1][1] < 0.3:
            runs[-1][1] = end
        else:
            runs.append([start, end])
    return [(round(a, 3), round(b, 3)) for a, b in runs]


def answer(shape: str, audio: bytes, language: str | None,
           say: list[str] | None = None) -> dict[str, Any]:
    """The ``verbose_json`` a server of ``shape`` would send for ``audio``; each run of
    sound says ``say``'s sentences in turn (``hello world`` without them)."""
    with wave.open(io.BytesIO(audio)) as w:
        duration = w.getnframes() / w.getframerate()
    runs = sound_runs(audio)
    said = [(say[i % len(say)] if say else "hello world").split() for i in range(len(runs))]
    text = "".join(" " + " ".join(s) for s in said)
    segments = [{"id": i, "seek": 0, "start": a, "end": b, "text": " " + " ".join(said[i]),
                 "tokens": [50364, 2425, 1002], "temperature": 0.0, "avg_logprob": -0.2,
                 "compression_ratio": 0.9, "no_speech_prob": 0.01}
                for i, (a, b) in enumerate(runs)]
    words = [{"word": w, "start": a + (b - a) * j / len(said[i]),
              "end": a + (b - a) * (j + 1) / len(said[i])}
             for i, (a, b) in enumerate(runs) for j, w in enumerate(said[i])]
    if shape == "openai":
        return {"task": "transcribe", "language": "english", "duration": duration,
                "text": text.strip(), "segments": segments, "words": words}
    if shape == "speaches":
        return {"duration": duration, "language": language or "en", "text": text.strip(),
                "segments": segments, "task": "transcribe", "usage": None,
                "words": [{**w, "word": " " + w["word"]} for w in words]}
    if shape == "whisper.cpp":
        return {"task": "transcribe", "language": "english", "duration": duration, "text": text,
                "detected_language": "english", "detected_language_probability": 0.97,
                "language_probabilities": {"en": 0.97},
                "segments": [_whisper_cpp_segment(i, a, b) for i, (a, b) in enumerate(runs)]}
    if shape == "localai":
        return {"text": text, "duration": duration}
    if shape == "vllm":
        return {"duration": str(duration), "language": language, "text": text,
                "segments": segments, "words": None}
    raise ValueError(f"unknown shape {shape!r}")


def _whisper_cpp_segment(i: int, a: float, b: float) -> dict[str, Any]:
    mid = (a + b) / 2
    tokens = [(" hel", a, a + (mid - a) / 2), ("lo", a + (mid - a) / 2, mid), (" world", mid, b)]
    return {"id": i, "text": " hello world", "start": a, "end": b,
            "tokens": [50364, 2425, 1002],
            "words": [{"word": w, "start": s, "end": e, "t_dtw": -1, "probability": 0.9}
                      for w, s, e in tokens],
            "temperature": 0.0, "avg_logprob": -0.2, "no_speech_prob": 0.01}


def _json(doc: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(doc), status, mimetype="application/json")


def _error(status: int, message: str, code: str | None = None) -> Response:
    # OpenAI's error object: {"error": {"message", "type", "param", "code"}}
    return _json({"error": {"message": message, "type": "invalid_request_error",
                            "param": None, "code": code}}, status)


@contextmanager
def transcription_server(shape: str = "openai", *, key: str | None = None,
                         echo_key: bool = False, ssl_context: Any = None
                         ) -> Iterator[TranscriptionServer]:
    """Run a :class:`TranscriptionServer` on 127.0.0.1 until the block ends."""
    state = TranscriptionServer(shape=shape, key=key, echo_key=echo_key)
    server: BaseWSGIServer = make_server("127.0.0.1", 0, state, threaded=True,
                                         ssl_context=ssl_context)
    state.port = server.server_port
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()  # a hanging answer ends now
        server.shutdown()
        server.server_close()
        thread.join(10)
