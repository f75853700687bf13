"""The pipeline's metrics (extra ``metrics``): what the queue holds, what the workers did.

* ``kzr_jobs{job, state}``: a gauge read from the queue when scraped
  (:func:`queue_collector`): ``pending``, ``running`` (the pending ones a live lease
  holds), ``done``, ``failed``, ``skipped``. The queue is the catalog every host shares,
  so every host reports the same numbers: aggregate them with ``max by (job, state)``,
  never ``sum`` (the manual's metrics page).
* ``kzr_job_seconds{job}`` (a histogram): how long each finished job took, decoding
  included; ``kzr_audio_seconds_processed_total{job}``: seconds of audio decoded.
* ``kzr_transcribe_requests_total{outcome}``: each request to the transcription engine
  (``ok``, ``error``, ``timeout``, ``refused``, ``unauthorized``), and
  ``kzr_transcribe_audio_seconds_total``: the seconds of audio it transcribed.
* ``kzr_analysis_flags_total{flag}``: the analysis's flags of newly uploaded recordings
  (not self-tests, not backfills, reindexes or re-analyses, so a backfill does not fire
  the flagged-audio alert). ``silent`` is counted only where the upload's inspection did
  not already count it (``kzr_audio_flags_total{flag="silent"}``, WAVs): adding the two
  counters counts each silent recording once.

Worker processes write theirs through prometheus_client's multiprocess files (the
directory ``serve --metrics`` makes, which its background workers inherit), so
``/metrics`` sums them with the receiver's own.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ..analysis.channels import FLAGS
from ..catalog.analysis import ANALYSE
from ..catalog.transcript_state import TRANSCRIBE
from ..transcribe.errors import OUTCOMES

if TYPE_CHECKING:
    from ..catalog import Catalog

log = logging.getLogger("kzr_wsgi.pipeline")

#: The job kinds, pre-created at zero.
JOBS = (ANALYSE, TRANSCRIBE)
#: The states ``kzr_jobs`` reports, each pre-created at zero.
STATES = ("pending", "running", "done", "failed", "skipped")
#: Jobs run from a short call (well under a second) to a six-hour recording (a minute).
JOB_SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)


class WorkerMetrics:
    """A worker process's counters (one per process; see the module docstring)."""

    def __init__(self, registry: Any = None) -> None:
        """``registry``: the ``prometheus_client.CollectorRegistry`` the metrics go to
        (``None``: prometheus_client's multiprocess files, when ``PROMETHEUS_MULTIPROC_DIR``
        is set, else its default registry)."""
        from prometheus_client import Counter, Histogram

        self.job_seconds = Histogram("kzr_job_seconds", "Time each finished job took.",
                                     ["job"], buckets=JOB_SECONDS_BUCKETS, registry=registry)
        self.audio_seconds = Counter("kzr_audio_seconds_processed",
                                     "Seconds of audio decoded by the workers.", ["job"],
                                     registry=registry)
        self.flags = Counter("kzr_analysis_flags",
                             "Analysis flags of newly uploaded recordings.", ["flag"],
                             registry=registry)
        self.requests = Counter("kzr_transcribe_requests",
                                "Requests to the transcription engine, by outcome.",
                                ["outcome"], registry=registry)
        self.transcribed = Counter("kzr_transcribe_audio_seconds",
                                   "Seconds of audio the engine transcribed (answered ok).",
                                   registry=registry)
        for outcome in OUTCOMES:
            self.requests.labels(outcome)
        for job in JOBS:
            self.job_seconds.labels(job)
            self.audio_seconds.labels(job)
        for flag in FLAGS:
            self.flags.labels(flag)

    def finished(self, job: str, seconds: float, audio_seconds: float) -> None:
        """Count one finished job."""
        self.job_seconds.labels(job).observe(seconds)
        if audio_seconds:
            self.audio_seconds.labels(job).inc(audio_seconds)

    def transcribe_request(self, outcome: str, audio_seconds: float) -> None:
        """Count one request to the engine (``outcome``: one of
        :data:`~kzr_wsgi.transcribe.errors.OUTCOMES`) and the audio it transcribed."""
        self.requests.labels(outcome).inc()
        if audio_seconds:
            self.transcribed.inc(audio_seconds)

    def upload_flags(self, flags: Iterable[str], inspected: Iterable[str]) -> None:
        """Count a new upload's analysis flags (``inspected``: its inspection's flags)."""
        already = set(inspected)
        for flag in flags:
            if flag in FLAGS and not (flag == "silent" and "silent" in already):
                self.flags.labels(flag).inc()


class _QueueCollector:
    """``kzr_jobs{job,state}``, counted from the queue at each scrape."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily("kzr_jobs", "Jobs in the queue (the same on every host: "
                                   "aggregate with max).", labels=["job", "state"])
        try:
            counts = self.catalog.jobs.counts()
        except Exception as exc:  # a catalog out of reach: no numbers, not a failed scrape
            log.warning("kzr_jobs: the queue cannot be read: %s", exc)
            return
        finally:
            self.catalog.release()
        for job in sorted({*JOBS, *(j for j, _ in counts)}):
            for state in STATES:
                family.add_metric([job, state], counts.get((job, state), 0))
        yield family


def queue_collector(catalog: Catalog) -> Any:
    """A collector reporting ``kzr_jobs`` from ``catalog``'s queue at scrape time."""
    return _QueueCollector(catalog)
