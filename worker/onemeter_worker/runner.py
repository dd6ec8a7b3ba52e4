"""Runs one JobRun inside an RQ job: scope, progress, outcome, and recovery after a crash.

Progress is written in its own short transactions so the pages see it while the job's own
work is still inside its (all-or-nothing) transaction — or, while the job holds SQLite's one
write lock (`JobContext.aside`), to Redis, where the pages read it too.

A JobRun moves queued → started exactly once, so a job cancelled while queued, or one a
crash has already marked failed, is never run by a late or duplicate RQ delivery. Transient
errors (database or Redis connection, lock timeouts, `TransientJobError`) are retried here,
after ONEMETER_JOB_RETRY_DELAYS, with the transaction rolled back each time; RQ itself never
retries, so a retry cannot outlive a JobRun that says it failed. The end (finished) is
written in the job's own transaction, conditional on the run still being started: a cancel
that lands after the job's last check rolls the work back.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import signal
import socket
import time
import traceback
from dataclasses import dataclass
from importlib import import_module
from typing import Any

import psutil
import redis
import sqlalchemy as sa
from flask import Flask, current_app, has_app_context
from rq import Worker
from rq.job import Job
from sqlalchemy.orm import Session

from onemeter.audit import acting_as
from onemeter.database import db
from onemeter.jobs import (
    ABORTED_READING,
    CANCELLABLE,
    CANCELLED,
    FAILED,
    FINISHED,
    QUEUED,
    STARTED,
    JobRun,
    cancel_requested,
    clear_aside,
    job_kinds,
    redis_connection,
    report_aside,
)
from onemeter.tenancy import TenantScope, use_scope

_app: Flask | None = None
log = logging.getLogger(__name__)

#: Seconds to wait before each automatic retry of a transient error (one entry per retry).
DEFAULT_RETRY_DELAYS = (5.0, 30.0)


class JobCancelled(Exception):
    """The user cancelled the job; its transaction is rolled back."""


class TransientJobError(Exception):
    """Raised by a job function for a condition worth retrying (a busy remote service…)."""


#: Errors retried automatically: the job's transaction is rolled back and it starts over.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TransientJobError,
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    sa.exc.DisconnectionError,
    sa.exc.TimeoutError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,
    TimeoutError,
)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def get_app() -> Flask:
    """The app of this worker process (created once, inherited by forked work-horses)."""
    global _app
    if has_app_context():
        return current_app._get_current_object()  # type: ignore[attr-defined]
    if _app is None:
        from onemeter.app import create_app

        _app = create_app()
    return _app


@dataclass
class JobContext:
    """What a job function gets: its JobRun id, tenant, and a way to report progress."""

    job_run_id: int
    tenant_id: int
    user_id: int | None
    params: dict[str, Any]
    #: 1 for the first run, 2 for the first automatic retry, …
    attempt: int = 1
    #: Report progress to Redis, not the JobRun row: set by a job that holds SQLite's write
    #: lock, under which no other connection can write the row (onemeter.jobs.report_aside).
    aside: bool = False

    def _update(self, *where: Any, **values: Any) -> bool:
        """Update the JobRun in its own transaction; False when `where` matched nothing."""
        with use_scope(TenantScope.tenant(self.tenant_id)), Session(db.engine) as session:
            result = session.execute(
                sa.update(JobRun).where(JobRun.id == self.job_run_id, *where).values(**values)
                .execution_options(synchronize_session=False))
            session.commit()
            return bool(result.rowcount)

    def progress(self, done: int, total: int, counts: dict[str, Any] | None = None,
                 message: str | None = None) -> None:
        """Record progress (done of total) and optional counts, visible at once on the page."""
        percent = min(100, int(100 * done / max(total, 1)))
        if self.aside:
            report_aside(self.job_run_id, percent, counts, message)
            return
        values: dict[str, Any] = {"progress": percent}
        if counts is not None:
            values["counts"] = counts
        if message is not None:
            values["message"] = message
        self._update(**values)

    def check_cancelled(self) -> None:
        """Raise JobCancelled if the user cancelled this job (its row says so, or the cancel
        flag in Redis that a cancel raises first)."""
        if cancel_requested(self.job_run_id):
            raise JobCancelled()
        with use_scope(TenantScope.tenant(self.tenant_id)), Session(db.engine) as session:
            state = session.execute(sa.select(JobRun.state)
                                    .where(JobRun.id == self.job_run_id)).scalar()
        if state == CANCELLED:
            raise JobCancelled()


def _load(job_run_id: int) -> tuple[int, int | None, str, dict[str, Any]]:
    with use_scope(TenantScope.all_read_only()), Session(db.engine) as session:
        run = session.get(JobRun, job_run_id)
        if run is None:
            raise LookupError(f"JobRun {job_run_id} not found")
        return run.tenant_id, run.user_id, run.kind, dict(run.params or {})


def _retry_delays(app: Flask) -> tuple[float, ...]:
    """Seconds before each automatic retry (ONEMETER_JOB_RETRY_DELAYS)."""
    return tuple(float(d) for d in app.config.get("ONEMETER_JOB_RETRY_DELAYS",
                                                   DEFAULT_RETRY_DELAYS))


def _error_text(exc: BaseException) -> str:
    """What the page shows for a failed job: the error first, then the end of the traceback."""
    return f"任务出错：{exc!r}\n\n{traceback.format_exc()[-3000:]}"


def run_job(job_run_id: int) -> dict[str, Any]:
    """The RQ entry point for every OneMeter job.

    Returns the job's counts; returns {} without running when the JobRun is no longer
    queued (cancelled meanwhile, or already handled by an earlier delivery).
    """
    app = get_app()
    with app.app_context():
        if os.getpid() != app.config.get("_ONEMETER_PID", os.getpid()):
            db.engine.dispose(close=False)  # a forked work-horse must not share connections
            limit_memory(app.config.get("ONEMETER_JOB_MEMORY_LIMIT_MB", 0))
        tenant_id, user_id, kind, params = _load(job_run_id)
        ctx = JobContext(job_run_id, tenant_id, user_id, params)
        clear_aside(job_run_id, cancel=True)  # left by an earlier JobRun of the same id
        if not ctx._update(JobRun.state == QUEUED, state=STARTED, started_at=_now(),
                           error=None, message=None, attempts=JobRun.attempts + 1):
            log.info("JobRun %s is no longer queued: not running it", job_run_id)
            return {}
        module_name, _, func_name = job_kinds(app)[kind].partition(":")
        func = getattr(import_module(module_name), func_name)
        delays = _retry_delays(app)
        while True:
            try:
                with use_scope(TenantScope.tenant(tenant_id), db.session), \
                        acting_as(user_id, f"job:{job_run_id}"):
                    result = func(ctx, **params) or {}
                    # Finished in the job's own transaction, and only if still running: a
                    # cancel that got in after the job's last check rolls the work back (the
                    # page said nothing would be written), one arriving later waits for this
                    # commit and finds the job finished. The Redis flag is looked at last:
                    # a cancel whose own update gave up waiting for this job's lock (SQLite)
                    # has told the clerk the job is cancelled.
                    finished = db.session.execute(
                        sa.update(JobRun).where(JobRun.id == job_run_id, JobRun.state == STARTED)
                        .values(state=FINISHED, ended_at=_now(), progress=100, counts=result,
                                message=None)
                        .execution_options(synchronize_session=False))
                    if not finished.rowcount or cancel_requested(job_run_id):
                        raise JobCancelled()
                    db.session.commit()
                break
            except JobCancelled:
                db.session.rollback()
                ctx._update(state=CANCELLED, ended_at=_now(), message="已取消，未写入任何数据")
                return {}
            except TRANSIENT_ERRORS as exc:
                db.session.rollback()
                # The page shows the row again: the retry note below, then the next attempt.
                ctx.aside = False
                clear_aside(job_run_id)
                if ctx.attempt > len(delays):
                    ctx._update(state=FAILED, ended_at=_now(), error=_error_text(exc))
                    raise
                delay = delays[ctx.attempt - 1]
                ctx.attempt += 1
                log.warning("JobRun %s: transient error, retry %s in %ss: %r",
                            job_run_id, ctx.attempt - 1, delay, exc)
                # The database may be what failed: the note is best effort, the retry is not.
                with contextlib.suppress(sa.exc.SQLAlchemyError):
                    ctx._update(progress=0, counts={}, attempts=JobRun.attempts + 1,
                                message=f"暂时性错误，{delay:g} 秒后自动重试"
                                        f"（第 {ctx.attempt - 1} 次）：{exc}"[:1000])
                time.sleep(delay)
            except Exception as exc:
                db.session.rollback()
                ctx._update(state=FAILED, ended_at=_now(), error=_error_text(exc))
                raise
            finally:
                db.session.remove()
        return result


def limit_memory(megabytes: int) -> int | None:
    """Cap this process's address space at `megabytes` MiB (RLIMIT_AS); returns the limit
    set in bytes, or None (0 asked for, no `resource` module, or the process already uses
    more, which is logged).

    Called in each forked work-horse before its job: a file that gets past the reader's
    checks and makes calamine ask for a huge grid then fails to allocate, and the horse dies
    (SIGABRT: Rust aborts on a failed allocation) with the JobRun failed and nothing written,
    instead of taking the server's memory."""
    if megabytes <= 0:
        return None
    try:
        import resource
    except ImportError:  # not on POSIX
        return None
    limit = megabytes * 1024 * 1024
    used = psutil.Process().memory_info().vms
    if used >= limit:
        log.warning("ONEMETER_JOB_MEMORY_LIMIT_MB=%s is below this process's %s MiB: not set",
                    megabytes, used >> 20)
        return None
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    if hard != resource.RLIM_INFINITY and hard < limit:
        limit = hard
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    return limit


INTERRUPTED = "任务中断（工作进程异常退出），未写入部分数据，可重新运行。"


def _mark_failed(app: Flask, job_run_id: int, reason: str) -> None:
    """Record that a job's process died without saying so.

    Failed if it was queued or running; a job the user had cancelled ends as cancelled (its
    transaction died with the process, so nothing was written either way).
    """
    with app.app_context(), use_scope(TenantScope.all_read_only()), \
            Session(db.engine) as session:
        tenant_id = session.execute(sa.select(JobRun.tenant_id)
                                    .where(JobRun.id == job_run_id)).scalar()
    if tenant_id is None:
        return
    ctx = JobContext(job_run_id, tenant_id, None, {})
    with app.app_context():
        ctx._update(JobRun.state.in_(CANCELLABLE), state=FAILED, ended_at=_now(), error=reason)
        ctx._update(JobRun.state == CANCELLED, JobRun.ended_at.is_(None), ended_at=_now(),
                    message="已取消，未写入任何数据")


def _job_run_id(job: Job) -> int | None:
    if job.func_name == "onemeter_worker.runner.run_job" and job.args:
        return int(job.args[0])
    return None


class OneMeterWorker(Worker):
    """An RQ worker that keeps JobRun rows true when a work-horse dies (kill -9, OOM)."""

    def handle_job_failure(self, job: Job, queue: Any, started_job_registry: Any = None,
                           exc_string: str = "", **kwargs: Any) -> None:
        """RQ's failure handling, then the JobRun: failed as interrupted if still running.

        Called in the work-horse when the job raised (run_job has already recorded it) and
        in the worker when the horse died (kill -9, OOM): then only this records it.
        """
        super().handle_job_failure(job, queue, started_job_registry=started_job_registry,
                                   exc_string=exc_string, **kwargs)
        run_id = _job_run_id(job)
        if run_id is None:
            return
        aborted = f"(signal {signal.SIGABRT.value})" in exc_string
        reason = ABORTED_READING if aborted else INTERRUPTED
        try:
            _mark_failed(get_app(), run_id, reason + "\n" + exc_string[-2000:])
        except Exception:  # the database is down: reap_abandoned records it later
            log.exception("could not mark JobRun %s failed", run_id)


def _worker_process_alive(worker: Worker) -> bool:
    """Whether the process of a worker registered on this host still runs.

    A process id is not enough: after a container restart the new worker often has the dead
    one's pid (it may be this very process), so the process must predate the worker's birth.
    """
    if not worker.pid or worker.pid == os.getpid():
        return False
    try:
        process = psutil.Process(worker.pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        created = process.create_time()
    except psutil.Error:
        return False
    born = worker.birth_date
    return born is None or created <= born.timestamp() + 1


def reap_abandoned(app: Flask) -> list[int]:
    """Mark JobRuns failed whose worker on this host died without telling (kill -9).

    Called when a worker starts. A job the user cancelled whose worker died is closed as
    cancelled. Returns the ids marked.
    """
    connection = redis_connection(app)
    reaped = []
    with app.app_context(), use_scope(TenantScope.all_read_only()), \
            Session(db.engine) as session:
        running = session.execute(
            sa.select(JobRun.id, JobRun.rq_job_id).where(sa.or_(
                JobRun.state == STARTED,
                sa.and_(JobRun.state == CANCELLED, JobRun.started_at.is_not(None),
                        JobRun.ended_at.is_(None))))).all()
    for run_id, rq_job_id in running:
        try:
            job = Job.fetch(rq_job_id, connection=connection) if rq_job_id else None
        except Exception:
            job = None
        worker_name = getattr(job, "worker_name", None) if job else None
        alive = False
        if worker_name:
            worker = Worker.find_by_key(Worker.redis_worker_namespace_prefix + worker_name,
                                        connection=connection)
            if worker is not None and worker.hostname != socket.gethostname():
                alive = True  # another host: its own worker will report
            elif worker is not None:
                alive = _worker_process_alive(worker)
        if not alive:
            _mark_failed(app, run_id, "任务中断（工作进程已终止），未写入部分数据，可重新运行。")
            reaped.append(run_id)
    return reaped
