"""Import jobs (queue `imports`): the preview, commit and rollback of one uploaded batch.

Started by `onemeter.imports.service`; each runs in the worker under the batch's tenant
scope, inside one transaction the runner commits at the end (or rolls back: a kill -9, an
error or a cancel leaves nothing behind). Progress goes to the JobRun as it happens:
counts `rows_read`, `rows_validated`, `rows_written` and a message.

SQLite allows one writer: once a commit or rollback holds the write lock, the progress row
(written on another connection) cannot be updated, so on SQLite these jobs then report to
Redis (`JobContext.aside`), where the pages read it; a cancel reaches them through a flag
there. PostgreSQL writes the row throughout.

A file the reader refuses (not a spreadsheet, a zip bomb, truncated …) marks the batch
failed with the reader's Chinese message; a sheet whose header or columns cannot be
recognized leaves it uploaded with the message (a preview with chosen columns may follow).
In both cases the job itself ends normally: it did its work, and the batch says why.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from onemeter.database import db
from onemeter.imports.ledger import (
    RollbackRefused,
    error_workbook,
    lock_tenant_imports,
    plan_and_commit,
    plan_households,
    rollback_batch,
)
from onemeter.imports.models import (
    COMMITTED,
    COMMITTING,
    FAILED,
    PREVIEWED,
    PREVIEWING,
    ROLLED_BACK,
    ROLLING_BACK,
    UPLOADED,
    ImportBatch,
)
from onemeter.imports.reader import ImportFileError
from onemeter.imports.service import ImportRefused, read_ledger, setting, store_error_workbook
from onemeter_worker.runner import JobContext

#: Share of the progress bar per phase (per mille): reading, validating, writing.
_READ, _VALIDATE = 200, 400


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _batch(batch_id: int) -> ImportBatch:
    batch = db.session.get(ImportBatch, int(batch_id))
    if batch is None:
        raise LookupError(f"导入批次 #{batch_id} 不存在，或不属于本办事处")
    return batch


class _Reporter:
    """Turns the phases' progress into one bar and the counts the page shows.

    A commit checks and writes its blocks in turns (`plan_and_commit`), so the bar adds the
    two phases' shares — each only grows — instead of following whichever spoke last."""

    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx
        self.counts = {"rows_read": 0, "rows_validated": 0, "rows_written": 0}
        self.validated = self.written = 0.0  # the phases' shares done, 0…1

    def send(self, permille: int, message: str) -> None:
        self.ctx.check_cancelled()
        self.ctx.progress(permille, 1000, counts=dict(self.counts), message=message)

    def read(self, rows: int) -> None:
        self.counts["rows_read"] = rows
        self.send(_READ, f"已读取 {rows:,} 行数据")

    def _bar(self, message: str) -> None:
        self.send(_READ + int((_VALIDATE - _READ) * self.validated)
                  + int((1000 - _VALIDATE) * self.written), message)

    def validating(self, done: int, total: int, message: str) -> None:
        # Until the last call `total` counts every row below the header (blank, 小计 and
        # footer rows too); the last call gives the data rows found.
        if done >= total:
            self.counts["rows_read"] = total
        self.counts["rows_validated"] = min(done, total)
        self.validated = max(self.validated, min(1.0, done / max(total, 1)))
        self._bar(message)

    def writing(self, done: int, total: int, message: str) -> None:
        self.counts["rows_written"] = done
        self.ctx.check_cancelled()
        self.written = max(self.written, min(1.0, done / max(total, 1)))
        self._bar(message)


def _refuse_file(batch: ImportBatch, exc: ImportFileError) -> dict[str, Any]:
    batch.state = FAILED
    batch.failed_at = _now()
    batch.message = str(exc)
    batch.counts = {}
    batch.samples = None
    return {"file_refused": 1}


def _store_errors(batch: ImportBatch, plan: Any) -> None:
    if plan.counts.get("error"):
        batch.error_file = store_error_workbook(batch, error_workbook(plan))
    else:
        batch.error_file = None


def preview_import(ctx: JobContext, batch_id: int) -> dict[str, Any]:
    """The dry run: read, validate and classify every row; store counts, samples, mapping
    and the error workbook on the batch. Writes nothing else."""
    batch = _batch(batch_id)
    if batch.state not in (UPLOADED, PREVIEWING, PREVIEWED):
        raise ImportRefused(f"导入批次 #{batch.id} 当前“{batch.state_label}”，不能预览")
    report = _Reporter(ctx)
    report.send(0, "正在读取文件…")
    # The batch is changed only at the end: on SQLite an earlier write would lock the
    # database against the progress updates.
    try:
        raw = read_ledger(db.session, batch)
    except ImportFileError as exc:
        result = _refuse_file(batch, exc)
        batch.preview_job_id = ctx.job_run_id
        return result
    report.read(raw.height)
    try:
        plan = plan_households(db.session, batch.tenant_id, raw,
                               mapping_overrides=batch.mapping_overrides,
                               progress=report.validating)
    except ImportFileError as exc:  # no header, no community or room column
        batch.state = UPLOADED
        batch.previewed_at = None
        batch.message = f"{exc}。可以在预览页指定各列对应的字段后重新预览"
        batch.counts, batch.samples, batch.mapping = {}, None, None
        batch.preview_job_id = ctx.job_run_id
        return {"header_not_found": 1}
    _store_errors(batch, plan)
    batch.counts = dict(plan.counts)
    batch.preview_counts = dict(plan.counts)
    batch.mapping = plan.mapping
    batch.samples = plan.samples()
    batch.state = PREVIEWED
    batch.previewed_at = _now()
    batch.message = None
    batch.preview_job_id = ctx.job_run_id
    return {**plan.counts, "rows_read": plan.counts["rows"],
            "rows_validated": plan.counts["rows"]}


def commit_import(ctx: JobContext, batch_id: int) -> dict[str, Any]:
    """Write a previewed batch in one transaction: re-plan under the tenant's import lock
    (the registry may have changed since the preview), write, record the rows."""
    batch = _batch(batch_id)
    if batch.state == COMMITTED:
        return dict(batch.counts or {})  # a second delivery of a finished commit
    if batch.state not in (PREVIEWED, COMMITTING):
        raise ImportRefused(f"导入批次 #{batch.id} 当前“{batch.state_label}”，不能导入")
    report = _Reporter(ctx)
    report.send(0, "正在读取文件…")
    try:
        raw = read_ledger(db.session, batch)
    except ImportFileError as exc:
        result = _refuse_file(batch, exc)
        batch.commit_job_id = ctx.job_run_id
        return result
    report.read(raw.height)
    report.send(_READ, "正在写入…")
    lock_tenant_imports(db.session, batch)
    if db.session.get_bind().dialect.name == "sqlite":
        ctx.aside = True  # the write lock is held from here on: progress goes to Redis
    if batch.state == COMMITTED:
        return dict(batch.counts or {})
    if batch.state not in (PREVIEWED, COMMITTING):
        raise ImportRefused(f"导入批次 #{batch.id} 当前“{batch.state_label}”，不能导入")
    plan, counts, errors = plan_and_commit(
        db.session, batch, raw, mapping_overrides=batch.mapping_overrides,
        plan_progress=report.validating, progress=report.writing,
        chunk_rows=int(setting("ONEMETER_IMPORT_CHUNK_ROWS")),
        block_rows=int(setting("ONEMETER_IMPORT_BLOCK_ROWS")),
        pause=setting("ONEMETER_IMPORT_CHUNK_PAUSE"), check=ctx.check_cancelled)
    batch.error_file = store_error_workbook(batch, errors) if errors is not None else None
    batch.samples = plan.samples()
    batch.commit_job_id = ctx.job_run_id
    return {**counts, "rows_read": counts["rows"], "rows_validated": counts["rows"],
            "rows_written": counts["written"]}


def rollback_import(ctx: JobContext, batch_id: int) -> dict[str, Any]:
    """Undo a committed batch, or record why it cannot be undone (batch.message)."""
    batch = _batch(batch_id)
    if batch.state == ROLLED_BACK:
        return {}
    if batch.state not in (COMMITTED, ROLLING_BACK):
        raise ImportRefused(f"导入批次 #{batch.id} 当前“{batch.state_label}”，不能撤销")
    report = _Reporter(ctx)
    report.send(0, "正在检查能否撤销…")
    lock_tenant_imports(db.session, batch)
    if db.session.get_bind().dialect.name == "sqlite":
        ctx.aside = True
    if batch.state == ROLLED_BACK:
        return {}
    try:
        report.validated = 1.0  # no check share of its own: the bar runs 40 → 100 %
        result = rollback_batch(db.session, batch, progress=report.writing)
    except RollbackRefused as exc:
        batch.state = COMMITTED
        batch.message = str(exc)
        batch.rollback_job_id = ctx.job_run_id
        return {"refused": 1}
    batch.rollback_job_id = ctx.job_run_id
    return result
