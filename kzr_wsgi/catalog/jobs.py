"""The queue of work on recordings, kept in the catalog: claimed, leased, retried, done.

One row of ``kzr_jobs`` per recording (catalog row) and kind of work: ``analyse`` today;
a ``transcribe`` job is one more row beside it, with its own state, attempts and backoff,
so a second kind of work needs no second queue. A recording's ``analyse`` job is written
in the same transaction as its catalog row (:meth:`Catalog.add_rows
<kzr_wsgi.catalog.Catalog.add_rows>`), so a row never exists without its job unless the
job could not be written (then the row says so, and :meth:`JobQueue.repair` writes it).

**States** (:class:`~kzr_wsgi.catalog.analysis.JobState`): ``pending`` until it is done,
``failed`` (after ``attempts`` tries, its error kept) or ``skipped`` (its reason kept).
A pending job carries ``due_us``, the time it may next be claimed: now when queued, the
end of the backoff after a failure, and the end of the lease while a worker holds it.

**Claiming** (:meth:`JobQueue.claim`) takes the pending job due longest ago and, in the
same transaction, counts an attempt, names the worker and moves ``due_us`` to the end of
the lease. On PostgreSQL the job is read ``FOR UPDATE SKIP LOCKED``, so workers on any
number of hosts each take a different job without waiting on each other; on SQLite the
transaction takes the database's write lock, which serialises claims on one host. A
worker renews its lease while it works (:meth:`JobQueue.renew`); a worker that dies
stops renewing, and its job is claimed again when the lease ends. A job claimed
``attempts`` times whose worker never finished it (one that kills its worker every time)
is failed rather than claimed forever.

Every statement is written once, with ``:name`` parameters, as the catalog's are.

>>> queue = JobQueue(open_catalog("sqlite:////srv/rec/.kzr/catalog.sqlite3"))  # doctest: +SKIP
>>> claim = queue.claim("host:123", lease=600, max_attempts=5)                  # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .analysis import ANALYSE, DEFECT_MASK, AnalysisState, JobState, Origin, bits_of
from .codec import SELECT_COLUMNS, row_from_db
from .schema import JOBS_TABLE, OWED, QUEUED, TABLE, UNQUEUED
from .search import Query, where_clause

if TYPE_CHECKING:
    from .connections import Transaction
    from .facade import Catalog
    from .rows import Row

#: Queue a recording's job (a no-op when it has one).
INSERT_JOB = (
    f"INSERT INTO {JOBS_TABLE} (row_id, job, state, origin, sha256, attempts, due_us, reason,"
    " created_us, updated_us) VALUES (:row_id, :job, :state, :origin, :sha256, 0, :now,"
    " :reason, :now, :now) ON CONFLICT (row_id, job) DO NOTHING"
)
#: Put back a done job from what a file beside the recording says (``reindex``): only
#: over a job not done already.
RESTORE_JOB = (
    f"INSERT INTO {JOBS_TABLE} (row_id, job, state, origin, sha256, attempts, due_us,"
    " created_us, updated_us, finished_us, fingerprint, result, files) VALUES (:row_id, :job,"
    " 'done', :origin, :sha256, 0, :now, :now, :now, :now, :fingerprint, :result, :files)"
    " ON CONFLICT (row_id, job) DO UPDATE SET state = 'done', origin = excluded.origin,"
    " worker = NULL, reason = NULL, error = NULL, updated_us = excluded.updated_us,"
    " finished_us = excluded.finished_us, fingerprint = excluded.fingerprint,"
    f" result = excluded.result, files = excluded.files WHERE {JOBS_TABLE}.state <> 'done'"
)
#: What a row carries of its analysis.
_STATE_COLUMNS = "row_id, state, attempts, reason, error, result"
#: Rows fetched per statement when repairing or backfilling.
BATCH = 500


@dataclass(frozen=True)
class Claim:
    """A job this worker holds: which recording, which attempt, and for how long."""

    row_id: str
    job: str
    #: This attempt's number (1 for the first).
    attempts: int
    origin: str
    sha256: str
    worker: str
    #: When the lease ends (microseconds since the epoch) unless renewed.
    lease_until: int


@dataclass(frozen=True)
class DoneResult:
    """A done job's result: its recording (row id), summary and files' sha256s."""

    row_id: str
    summary: dict[str, Any]
    #: Ending (``.kzr.analysis.json``…) -> sha256 of the file beside the recording.
    files: dict[str, str]
    fingerprint: str | None


def now_us() -> int:
    """Now, in integer microseconds since the Unix epoch (how the catalog keeps times)."""
    return time.time_ns() // 1000


def job_params(row: Row, job: str, origin: str, now: int) -> dict[str, Any]:
    """The parameters of :data:`INSERT_JOB` for ``row``: a self-test is skipped at once."""
    skipped = row.self_test and job == ANALYSE
    return {"row_id": row.id, "job": job, "origin": str(origin), "sha256": row.sha256,
            "now": now, "state": str(JobState.SKIPPED if skipped else JobState.PENDING),
            "reason": "self_test" if skipped else None}


def set_analysis_flags(tx: Transaction, row_id: str, flags: Sequence[str]) -> None:
    """Record a finished analysis's flags on its row (what searches filter by)."""
    bits = bits_of(tuple(flags))
    tx.execute(
        f"UPDATE {TABLE} SET analysis_bits = :bits,"
        " flagged = CASE WHEN flag_bits <> 0 THEN 1 ELSE :defect END,"
        " noted = CASE WHEN flag_bits <> 0 THEN 1 ELSE :any END WHERE id = :id",
        {"bits": bits, "defect": int(bool(bits & DEFECT_MASK)), "any": int(bool(bits)),
         "id": row_id})


class JobQueue:
    """The queue of one kind of job (``analyse``) in ``catalog``; see the module docstring."""

    def __init__(self, catalog: Catalog, job: str = ANALYSE) -> None:
        self.catalog = catalog
        self.job = job

    # -- working ----------------------------------------------------------------------

    def claim(self, worker: str, *, lease: float, max_attempts: int,
              now: int | None = None) -> Claim | None:
        """Take the pending job due longest ago, or ``None`` when none is due.

        ``worker`` names the claimer (host, process); ``lease`` is in seconds. A job
        already claimed ``max_attempts`` times whose lease ran out is failed instead.
        """
        now = now_us() if now is None else now
        due = {"job": self.job, "now": now}
        # A plain read first: an idle worker polling the queue never takes the write lock.
        if not self.catalog.fetch(
                f"SELECT 1 FROM {JOBS_TABLE} WHERE job = :job AND state = 'pending'"
                " AND due_us <= :now LIMIT 1", due):
            return None
        lock = self.catalog.backend.lock_rows

        def run(tx: Transaction) -> Claim | None:
            tx.execute(
                f"UPDATE {JOBS_TABLE} SET state = 'failed', worker = NULL, updated_us = :now,"
                " finished_us = :now, error = :error WHERE job = :job AND state = 'pending'"
                " AND due_us <= :now AND attempts >= :max",
                {**due, "max": max_attempts,
                 "error": f"its worker died or lost its lease in each of {max_attempts} "
                          "attempts"})
            found = tx.fetchall(
                f"SELECT row_id, attempts, origin, sha256 FROM {JOBS_TABLE} WHERE job = :job"
                f" AND state = 'pending' AND due_us <= :now ORDER BY due_us LIMIT 1{lock}", due)
            if not found:
                return None
            row_id, attempts, origin, sha256 = found[0]
            until = now + int(lease * 1_000_000)
            tx.execute(
                f"UPDATE {JOBS_TABLE} SET attempts = attempts + 1, worker = :worker,"
                " due_us = :until, started_us = :now, updated_us = :now"
                " WHERE row_id = :row_id AND job = :job",
                {**due, "worker": worker, "until": until, "row_id": row_id})
            return Claim(str(row_id), self.job, int(attempts) + 1, str(origin), str(sha256),
                         worker, until)

        return self.catalog.within(run)

    def renew(self, claim: Claim, lease: float) -> Claim | None:
        """Extend ``claim``'s lease by ``lease`` seconds from now; ``None`` when it is no
        longer this worker's (its lease ran out and another took it, or it was removed)."""
        now = now_us()
        until = now + int(lease * 1_000_000)
        changed = self.catalog.execute(
            f"UPDATE {JOBS_TABLE} SET due_us = :until, updated_us = :now WHERE row_id = :row_id"
            " AND job = :job AND worker = :worker AND state = 'pending'",
            {"until": until, "now": now, "row_id": claim.row_id, "job": claim.job,
             "worker": claim.worker})
        return replace(claim, lease_until=until) if changed else None

    def finish(self, claim: Claim, summary: Mapping[str, Any], files: Mapping[str, str],
               fingerprint: str) -> bool:
        """Mark ``claim`` done with its result, and its flags on its row, in one
        transaction; ``False`` when it is no longer this worker's (nothing changed)."""
        now = now_us()

        def run(tx: Transaction) -> bool:
            changed = tx.execute(
                f"UPDATE {JOBS_TABLE} SET state = 'done', worker = NULL, due_us = :now,"
                " updated_us = :now, finished_us = :now, error = NULL, reason = NULL,"
                " fingerprint = :fingerprint, result = :result, files = :files"
                " WHERE row_id = :row_id AND job = :job AND worker = :worker"
                " AND state = 'pending'",
                {"now": now, "fingerprint": fingerprint,
                 "result": json.dumps(dict(summary), sort_keys=True),
                 "files": json.dumps(dict(files), sort_keys=True), "row_id": claim.row_id,
                 "job": claim.job, "worker": claim.worker})
            if changed and claim.job == ANALYSE:
                set_analysis_flags(tx, claim.row_id, list(summary.get("flags") or ()))
            return bool(changed)

        return self.catalog.within(run)

    def skip(self, claim: Claim, reason: str) -> bool:
        """Mark ``claim`` skipped for ``reason`` (never retried); ``False`` if not ours."""
        now = now_us()

        def run(tx: Transaction) -> bool:
            changed = tx.execute(
                f"UPDATE {JOBS_TABLE} SET state = 'skipped', reason = :reason, error = NULL,"
                " worker = NULL, due_us = :now, updated_us = :now, finished_us = :now,"
                " result = NULL, files = NULL WHERE row_id = :row_id AND job = :job"
                " AND worker = :worker AND state = 'pending'",
                {"reason": reason, "now": now, "row_id": claim.row_id, "job": claim.job,
                 "worker": claim.worker})
            if changed and claim.job == ANALYSE:
                set_analysis_flags(tx, claim.row_id, ())
            return bool(changed)

        return self.catalog.within(run)

    def fail(self, claim: Claim, error: str, *, max_attempts: int, retry_in: float) -> str:
        """Record a failed attempt: ``failed`` (its error kept) once ``max_attempts`` are
        spent, else ``pending`` again after ``retry_in`` seconds; the state it is left in
        (``""`` when the job is no longer this worker's)."""
        now = now_us()
        final = claim.attempts >= max_attempts
        state = JobState.FAILED if final else JobState.PENDING
        changed = self.catalog.execute(
            f"UPDATE {JOBS_TABLE} SET state = :state, error = :error, worker = NULL,"
            " due_us = :due, updated_us = :now, finished_us = :finished"
            " WHERE row_id = :row_id AND job = :job AND worker = :worker AND state = 'pending'",
            {"state": str(state), "error": error[:2000], "now": now,
             "due": now + int(retry_in * 1_000_000), "finished": now if final else None,
             "row_id": claim.row_id, "job": claim.job, "worker": claim.worker})
        return str(state) if changed else ""

    def release(self, worker: str) -> int:
        """End every lease ``worker`` holds now (it died): its jobs are due again at once.
        Returns how many."""
        now = now_us()
        return self.catalog.execute(
            f"UPDATE {JOBS_TABLE} SET due_us = :now, updated_us = :now WHERE worker = :worker"
            " AND state = 'pending' AND due_us > :now", {"now": now, "worker": worker})

    def done_result(self, sha256: str, fingerprint: str, *, besides: str) -> DoneResult | None:
        """A done result of the same audio and settings on another recording than
        ``besides`` (a row id), if there is one: it is copied rather than decoded again."""
        found = self.catalog.fetch(
            f"SELECT row_id, result, files, fingerprint FROM {JOBS_TABLE} WHERE sha256 = :sha256"
            " AND job = :job AND fingerprint = :fingerprint AND state = 'done'"
            " AND row_id <> :besides LIMIT 1",
            {"sha256": sha256, "job": self.job, "fingerprint": fingerprint, "besides": besides})
        if not found:
            return None
        row_id, result, files, fp = found[0]
        return DoneResult(str(row_id), json.loads(result or "{}"), json.loads(files or "{}"),
                          fp)

    def result_of(self, row_id: str) -> DoneResult | None:
        """The done result of the recording ``row_id`` (``None`` unless done)."""
        found = self.catalog.fetch(
            f"SELECT result, files, fingerprint FROM {JOBS_TABLE} WHERE row_id = :row_id"
            " AND job = :job AND state = 'done'", {"row_id": row_id, "job": self.job})
        if not found:
            return None
        result, files, fp = found[0]
        return DoneResult(row_id, json.loads(result or "{}"), json.loads(files or "{}"), fp)

    # -- queueing ---------------------------------------------------------------------

    def repair(self) -> int:
        """Write the jobs owed: rows stored while their job could not be written. Reads
        only those rows (their own index): the cost grows with what is missing. Returns
        how many were queued."""
        return self._queue_rows(OWED, Origin.UPLOAD)

    def backfill(self) -> int:
        """Queue every row that has no job (a store from before the analysis, or stored
        with the pipeline off); returns how many."""
        return self._queue_rows(UNQUEUED, Origin.BACKFILL)

    def _queue_rows(self, queued: int, origin: Origin) -> int:
        total = 0
        while True:
            found = self.catalog.fetch(
                f"SELECT {SELECT_COLUMNS} FROM {TABLE} WHERE queued = :queued LIMIT :n",
                {"queued": queued, "n": BATCH})
            if not found:
                return total
            rows = [row_from_db(values) for values in found]
            jobs = [job_params(r, self.job, origin, now_us()) for r in rows]
            marks = [{"id": r.id} for r in rows]

            def run(tx: Transaction, jobs: list[dict[str, Any]] = jobs,
                    marks: list[dict[str, Any]] = marks) -> None:
                tx.executemany(INSERT_JOB, jobs)
                tx.executemany(f"UPDATE {TABLE} SET queued = {QUEUED} WHERE id = :id", marks)

            self.catalog.within(run)
            total += len(rows)

    def requeue(self, states: Iterable[JobState], query: Query, origin: Origin) -> int:
        """Queue again the jobs in ``states`` whose rows match ``query`` (``ls``'s filters):
        ``--retry-failed`` (failed ones) and ``--reanalyze`` (done ones). Their attempts
        start again from 0. Returns how many."""
        where, params = where_clause(replace(query, after=None, max_seq=None), None)
        names = []
        for i, state in enumerate(sorted(set(states))):
            params[f"state{i}"] = str(state)
            names.append(f":state{i}")
        now = now_us()
        return self.catalog.execute(
            f"UPDATE {JOBS_TABLE} SET state = 'pending', attempts = 0, origin = :origin,"
            " worker = NULL, error = NULL, reason = NULL, due_us = :now, updated_us = :now"
            f" WHERE job = :job AND state IN ({', '.join(names)})"
            f" AND row_id IN (SELECT id FROM {TABLE} WHERE {where})",
            {**params, "origin": str(origin), "now": now, "job": self.job})

    # -- reading ----------------------------------------------------------------------

    def states(self, row_ids: Sequence[str]) -> dict[str, AnalysisState]:
        """The state of each of these rows' jobs (rows without one are left out)."""
        out: dict[str, AnalysisState] = {}
        for start in range(0, len(row_ids), BATCH):
            chunk = list(dict.fromkeys(row_ids[start:start + BATCH]))
            params: dict[str, Any] = {f"id{i}": row_id for i, row_id in enumerate(chunk)}
            if not params:
                continue
            found = self.catalog.fetch(
                f"SELECT {_STATE_COLUMNS} FROM {JOBS_TABLE} WHERE job = :job AND row_id IN"
                f" ({', '.join(':' + k for k in params)})", {**params, "job": self.job})
            for row_id, *rest in found:
                out[str(row_id)] = AnalysisState.from_db(*rest)
        return out

    def counts(self, now: int | None = None) -> dict[tuple[str, str], int]:
        """How many jobs there are by ``(job, state)``; ``running`` are the pending ones a
        live lease holds (counted in ``pending`` too)."""
        now = now_us() if now is None else now
        out = {(str(job), str(state)): int(n) for job, state, n in self.catalog.fetch(
            f"SELECT job, state, COUNT(*) FROM {JOBS_TABLE} GROUP BY job, state", {})}
        for job, n in self.catalog.fetch(
                f"SELECT job, COUNT(*) FROM {JOBS_TABLE} WHERE state = 'pending'"
                " AND worker IS NOT NULL AND due_us > :now GROUP BY job", {"now": now}):
            out[(str(job), "running")] = int(n)
        return out
