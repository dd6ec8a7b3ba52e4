"""Runs one JobRun inside an RQ job: scope, progress, outcome, and recovery after a crash.

Progress is written in its own short transactions so the pages see it while the job's own
work is still inside its (all-or-nothing) transaction.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import traceback
from dataclasses import dataclass
from importlib import import_module
from typing import Any

import psutil
import sqlalchemy as sa
from flask import Flask, current_app, has_app_context
from onemeter.audit import acting_as
from onemeter.database import db
from onemeter.jobs import (
    CANCELLED,
    FAILED,
    FINISHED,
    STARTED,
    JobRun,
    job_kinds,
    redis_connection,
)
from onemeter.tenancy import TenantScope, use_scope
from rq import Worker
from rq.job import Job
from sqlalchemy.orm import Session

_app: Flask | None = None


class JobCancelled(Exception):
    """The user cancelled the job; its transaction is rolled back."""


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

    def _update(self, **values: Any) -> None:
        with use_scope(TenantScope.tenant(self.tenant_id)), Session(db.engine) as session:
            session.execute(sa.update(JobRun).where(JobRun.id == self.job_run_id)
                            .values(**values))
            session.commit()

    def progress(self, done: int, total: int, counts: dict[str, Any] | None = None,
                 message: str | None = None) -> None:
        """Record progress (done of total) and optional counts, visible at once on the page."""
        values: dict[str, Any] = {"progress": min(100, int(100 * done / max(total, 1)))}
        if counts is not None:
            values["counts"] = counts
        if message is not None:
            values["message"] = message
        self._update(**values)

    def check_cancelled(self) -> None:
        """Raise JobCancelled if the user cancelled this job."""
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


def run_job(job_run_id: int) -> dict[str, Any]:
    """The RQ entry point for every OneMeter job."""
    app = get_app()
    with app.app_context():
        if os.getpid() != app.config.get("_ONEMETER_PID", os.getpid()):
            db.engine.dispose(close=False)  # a forked work-horse must not share connections
        tenant_id, user_id, kind, params = _load(job_run_id)
        ctx = JobContext(job_run_id, tenant_id, user_id, params)
        ctx._update(state=STARTED, started_at=_now(), error=None,
                    attempts=JobRun.attempts + 1)
        module_name, _, func_name = job_kinds(app)[kind].partition(":")
        func = getattr(import_module(module_name), func_name)
        try:
            with use_scope(TenantScope.tenant(tenant_id), db.session), \
                    acting_as(user_id, f"job:{job_run_id}"):
                result = func(ctx, **params) or {}
                db.session.commit()
        except JobCancelled:
            db.session.rollback()
            ctx._update(state=CANCELLED, ended_at=_now(), message="已取消，未写入任何数据")
            return {}
        except Exception as exc:
            db.session.rollback()
            ctx._update(state=FAILED, ended_at=_now(), error=f"{exc!r}\n{traceback.format_exc()}"
                        [-4000:])
            raise
        finally:
            db.session.remove()
        ctx._update(state=FINISHED, ended_at=_now(), progress=100, counts=result)
        return result


def _mark_failed(app: Flask, job_run_id: int, reason: str) -> None:
    with app.app_context(), use_scope(TenantScope.all_read_only()), \
            Session(db.engine) as session:
        tenant_id = session.execute(sa.select(JobRun.tenant_id)
                                    .where(JobRun.id == job_run_id)).scalar()
    if tenant_id is None:
        return
    with app.app_context(), use_scope(TenantScope.tenant(tenant_id)), \
            Session(db.engine) as session:
        session.execute(sa.update(JobRun).where(JobRun.id == job_run_id,
                                                JobRun.state.in_(("queued", STARTED)))
                        .values(state=FAILED, ended_at=_now(), error=reason))
        session.commit()


def _job_run_id(job: Job) -> int | None:
    if job.func_name == "onemeter_worker.runner.run_job" and job.args:
        return int(job.args[0])
    return None


class OneMeterWorker(Worker):
    """An RQ worker that keeps JobRun rows true when a work-horse dies (kill -9, OOM)."""

    def handle_job_failure(self, job: Job, queue: Any, started_job_registry: Any = None,
                           exc_string: str = "") -> None:
        super().handle_job_failure(job, queue, started_job_registry=started_job_registry,
                                   exc_string=exc_string)
        run_id = _job_run_id(job)
        if run_id is not None:
            _mark_failed(get_app(), run_id,
                         "任务中断（工作进程异常退出），未写入部分数据，可重新运行。\n" + exc_string[-2000:])


def reap_abandoned(app: Flask) -> list[int]:
    """Mark JobRuns failed whose worker on this host died without telling (kill -9).

    Called when a worker starts. Returns the ids marked.
    """
    connection = redis_connection(app)
    reaped = []
    with app.app_context(), use_scope(TenantScope.all_read_only()), \
            Session(db.engine) as session:
        running = session.execute(sa.select(JobRun.id, JobRun.rq_job_id)
                                  .where(JobRun.state == STARTED)).all()
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
            elif worker is not None and worker.pid and psutil.pid_exists(worker.pid):
                alive = True
        if not alive:
            _mark_failed(app, run_id, "任务中断（工作进程已终止），未写入部分数据，可重新运行。")
            reaped.append(run_id)
    return reaped
