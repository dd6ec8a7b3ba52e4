"""What the import pages call: store an upload, start its preview, commit and rollback jobs.

The web request never reads a spreadsheet: `start_upload` stores the bytes and records an
`ImportBatch`; `start_preview`, `start_commit` and `start_rollback` check the batch's state,
refuse in Chinese (`ImportRefused`) what makes no sense, and enqueue a job on the `imports`
queue (`onemeter_worker.jobs.imports`) with the idempotency key `<kind>:<batch id>`, so a
double submit starts one job. They return the `JobRun` the page polls for progress.

Every function works on the Flask-SQLAlchemy session (`db.session`) under the request's
tenant scope: a batch of another sub-district is invisible (`get_batch` → None) and
unusable (ImportRefused). When Redis is down they raise `onemeter.jobs.QueueUnavailable`
(Chinese message) and leave the batch as it was.

Files live under ONEMETER_UPLOAD_DIR as `<tenant>/imports/<sha256>.<ext>` (written atomically);
the reader decides what they are when the preview runs, so any file may be uploaded here.
Limits: ONEMETER_IMPORT_MAX_BYTES (default 50 MB) on the upload; the reader's further limits
ONEMETER_IMPORT_MAX_UNCOMPRESSED_BYTES, ONEMETER_IMPORT_MAX_CELLS, ONEMETER_IMPORT_MAX_ROWS.
Each is read from the app config, else from the environment (the worker has no other way).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Session

from onemeter.database import db
from onemeter.imports.headers import FIELD_NAMES
from onemeter.imports.ledger import (
    HOUSEHOLD_FIELDS,
    check_overrides,
    error_workbook,
    pick_sheet,
    refusal_text,
    rollback_problems,
)
from onemeter.imports.models import (
    BATCH_STATE_LABELS,
    CLOSED_STATES,
    COMMITTED,
    COMMITTING,
    FAILED,
    PREVIEWED,
    PREVIEWING,
    ROLLED_BACK,
    ROLLING_BACK,
    UPLOADED,
    ImportBatch,
    ImportProfile,
    ImportRow,
)
from onemeter.imports.reader import RawSheet, read_table
from onemeter.jobs import (
    ABORTED_READING,
    CANCELLABLE,
    RERUNNABLE,
    JobRun,
    QueueUnavailable,
    cancel_job,
    enqueue_job,
)
from onemeter.tenancy import current_scope

QUEUE = "imports"
PREVIEW_KIND, COMMIT_KIND, ROLLBACK_KIND = "imports.preview", "imports.commit", "imports.rollback"

#: Defaults of the limits (bytes, cells, rows).
DEFAULTS: dict[str, float] = {
    "ONEMETER_IMPORT_MAX_BYTES": 50 * 1024 * 1024,
    "ONEMETER_IMPORT_MAX_UNCOMPRESSED_BYTES": 500 * 1024 * 1024,
    "ONEMETER_IMPORT_MAX_CELLS": 5_000_000,
    "ONEMETER_IMPORT_MAX_ROWS": 200_000,
    # Rows per write step of a commit, and a pause between steps (seconds; for tests that
    # must catch a commit half-way: a kill -9 then must leave nothing behind).
    "ONEMETER_IMPORT_CHUNK_ROWS": 5000,
    "ONEMETER_IMPORT_CHUNK_PAUSE": 0.0,
    # Rows per block of a plan: a commit writes one block while it plans the next.
    "ONEMETER_IMPORT_BLOCK_ROWS": 20000,
}
_CHUNK = 1024 * 1024
_EXTENSION = re.compile(r"[a-z0-9]{1,8}")
_KEY = re.compile(r"([1-9][0-9]*)/imports/((?:errors-)?[0-9a-f]{64})\.([a-z0-9]{1,8})")


class ImportRefused(ValueError):
    """An import step that is not started; the message says why, in Chinese, for the clerk."""


def setting(name: str) -> float:
    """An import setting: the app config, else the environment, else DEFAULTS."""
    value = current_app.config.get(name)
    if value in (None, ""):
        value = os.environ.get(name)
    if value in (None, ""):
        return DEFAULTS[name]
    return float(value)


def _size_text(n: float) -> str:
    mb = n / (1024 * 1024)
    return f"{mb:g} MB" if mb >= 1 else f"{int(n):,} 字节"


# --- files ---------------------------------------------------------------------------------

def import_root() -> Path:
    """ONEMETER_UPLOAD_DIR (uploads of every kind live below it, per tenant)."""
    configured = current_app.config.get("ONEMETER_UPLOAD_DIR") or os.environ.get(
        "ONEMETER_UPLOAD_DIR")
    if configured:
        return Path(configured)
    return Path(current_app.config["ONEMETER_VAR_DIR"]) / "uploads"


def key_path(key: str, tenant_id: int) -> Path:
    """The path of a stored import file `key` of `tenant_id`; refuses anything else."""
    match = _KEY.fullmatch(key or "")
    if match is None or int(match.group(1)) != tenant_id:
        raise ImportRefused("导入文件路径无效")
    root = import_root().resolve()
    path = (root / match.group(1) / "imports" / f"{match.group(2)}.{match.group(3)}").resolve()
    if not path.is_relative_to(root):
        raise ImportRefused("导入文件路径无效")
    return path


def batch_file(batch: ImportBatch) -> Path:
    """The uploaded file of a batch."""
    return key_path(batch.file_key, batch.tenant_id)


def error_file(batch: ImportBatch) -> Path | None:
    """The error workbook of a batch (preview or commit), None when no row was bad."""
    return key_path(batch.error_file, batch.tenant_id) if batch.error_file else None


def _write_atomically(folder: Path, name: str, data: bytes) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=".import-", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, folder / name)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    return name


def store_error_workbook(batch: ImportBatch, data: bytes) -> str:
    """Store an error workbook for `batch`; returns its key (content-addressed)."""
    digest = hashlib.sha256(data).hexdigest()
    folder = import_root() / str(batch.tenant_id) / "imports"
    _write_atomically(folder, f"errors-{digest}.xlsx", data)
    return f"{batch.tenant_id}/imports/errors-{digest}.xlsx"


def read_batch(batch: ImportBatch, *, sheet: str | None = None) -> RawSheet:
    """Read the batch's file (its first visible sheet with data, or `sheet`) with the
    reader's guards (ImportFileError, Chinese, if refused)."""
    return read_table(batch_file(batch), batch.filename,
                      max_bytes=int(setting("ONEMETER_IMPORT_MAX_BYTES")),
                      max_uncompressed_bytes=int(setting("ONEMETER_IMPORT_MAX_UNCOMPRESSED_BYTES")),
                      max_cells=int(setting("ONEMETER_IMPORT_MAX_CELLS")),
                      max_rows=int(setting("ONEMETER_IMPORT_MAX_ROWS")), sheet=sheet)


def read_ledger(session: Session, batch: ImportBatch) -> RawSheet:
    """`read_batch`, on the sheet that holds the ledger (`ledger.pick_sheet`: a workbook
    opening with a 填表说明 sheet is read from its next sheet with a header)."""
    return pick_sheet(session, batch.tenant_id, read_batch(batch), batch.mapping_overrides,
                      lambda name: read_batch(batch, sheet=name))


def _extension(filename: str) -> str:
    ext = Path(filename).suffix.lower().lstrip(".")
    return ext if _EXTENSION.fullmatch(ext) else "bin"


def _receive(stream: IO[bytes], folder: Path, limit: int) -> tuple[Path, str, int]:
    """Copy the stream into a temporary file in `folder`: (path, sha256, size)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=".import-", suffix=".part", dir=folder)
    digest, size = hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb") as out:
            while True:
                try:
                    chunk = stream.read(min(_CHUNK, limit + 1 - size))
                except (OSError, ValueError) as exc:
                    raise ImportRefused("读取上传的文件失败，请重新上传") from exc
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise ImportRefused(f"文件太大：超过{_size_text(limit)}的上限，"
                                        "请拆分成几个文件后分批导入")
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if size == 0:
            raise ImportRefused("文件是空的（0字节），请检查是否选错了文件")
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    return Path(temp), digest.hexdigest(), size


# --- batches -------------------------------------------------------------------------------

def get_batch(session: Any, batch_id: int) -> ImportBatch | None:
    """The batch if the current scope may see it (another sub-district's: None)."""
    return session.get(ImportBatch, batch_id)


def list_batches(session: Any, *, limit: int = 50, offset: int = 0) -> list[ImportBatch]:
    """The current scope's batches, newest first (another sub-district's are not listed)."""
    return list(session.execute(
        sa.select(ImportBatch).order_by(ImportBatch.created_at.desc(), ImportBatch.id.desc())
        .limit(limit).offset(offset)).scalars())


def batch_rows(session: Any, batch: ImportBatch, *, action: str | None = None,
               limit: int = 100, offset: int = 0) -> list[ImportRow]:
    """The rows a commit recorded (by spreadsheet row number), optionally of one action
    (create/update/unchanged/error). Empty before the commit: the preview keeps samples."""
    query = sa.select(ImportRow).where(ImportRow.tenant_id == batch.tenant_id,
                                       ImportRow.batch_id == batch.id)
    if action:
        query = query.where(ImportRow.action == action)
    return list(session.execute(query.order_by(ImportRow.row_number).limit(limit)
                                .offset(offset)).scalars())


def _open_batch(session: Any, tenant_id: int, kind: str, content_hash: str
                ) -> ImportBatch | None:
    return session.execute(
        sa.select(ImportBatch).where(ImportBatch.tenant_id == tenant_id,
                                     ImportBatch.kind == kind,
                                     ImportBatch.content_hash == content_hash,
                                     ImportBatch.state.not_in(CLOSED_STATES))
    ).scalars().first()


def _same_file(batch: ImportBatch) -> ImportBatch:
    when = batch.created_at.strftime("%Y-%m-%d %H:%M") if batch.created_at else ""
    batch.reused = True
    batch.notice = (f"这个文件（内容完全相同）已于{when}上传过，是导入批次 #{batch.id}"
                    f"（{batch.state_label}），没有重复导入；请在该批次中继续操作")
    return batch


def _check_tenant(tenant_id: int) -> None:
    if current_scope().write != tenant_id:
        raise ImportRefused("不能为其他办事处导入台账，也不能操作其他办事处的导入批次")


def start_upload(session: Any, tenant_id: int, user_id: int | None, filename: str,
                 stream: IO[bytes], *, kind: str = "households") -> ImportBatch:
    """Store an uploaded file and record its batch (state `uploaded`); commits.

    The same bytes uploaded again by the same sub-district while their batch is open return
    that batch with `reused` True and `notice` saying so in Chinese; nothing new is written.
    Raises ImportRefused for an empty or oversized file, or another sub-district's scope.
    """
    _check_tenant(tenant_id)
    name = Path((filename or "").replace("\\", "/")).name.strip() or "未命名文件"
    name = name[-255:]
    limit = int(setting("ONEMETER_IMPORT_MAX_BYTES"))
    folder = import_root() / str(tenant_id) / "imports"
    temp, content_hash, size = _receive(stream, folder, limit)
    try:
        existing = _open_batch(session, tenant_id, kind, content_hash)
        if existing is not None:
            return _same_file(existing)
        ext = _extension(name)
        final = folder / f"{content_hash}.{ext}"
        os.replace(temp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    batch = ImportBatch(tenant_id=tenant_id, kind=kind, filename=name,
                        content_hash=content_hash, size=size,
                        file_key=f"{tenant_id}/imports/{content_hash}.{ext}", state=UPLOADED,
                        counts={}, created_by=user_id)
    session.add(batch)
    try:
        session.commit()
    except sa.exc.IntegrityError:
        # The same file uploaded at the same moment by a colleague: theirs is the batch.
        session.rollback()
        existing = _open_batch(session, tenant_id, kind, content_hash)
        if existing is None:
            raise
        return _same_file(existing)
    return batch


def _run(run_id: int | None) -> JobRun | None:
    return db.session.get(JobRun, run_id) if run_id else None


_JOB_OF = {PREVIEWING: ("preview_job_id", "预览"), COMMITTING: ("commit_job_id", "导入"),
           ROLLING_BACK: ("rollback_job_id", "撤销")}


def _state_before(batch: ImportBatch) -> str:
    if batch.state == PREVIEWING:
        return PREVIEWED if batch.previewed_at else UPLOADED
    if batch.state == COMMITTING:
        return PREVIEWED
    return COMMITTED


def settle(batch: ImportBatch) -> ImportBatch:
    """Put a batch whose job failed or was cancelled (a kill -9, a cancel, Redis down) back
    in the state before that job (the job's transaction wrote nothing). Commits if changed.

    Pages call it before showing a batch; every start_* calls it first.
    """
    if batch.state not in _JOB_OF:
        return batch
    column, what = _JOB_OF[batch.state]
    run = _run(getattr(batch, column))
    if run is not None and run.state in RERUNNABLE:
        if batch.state == PREVIEWING and (run.error or "").startswith(ABORTED_READING):
            # The file made reading run out of memory: a re-run would only do so again.
            batch.state, batch.failed_at = FAILED, dt.datetime.now(dt.UTC).replace(tzinfo=None)
            batch.message = ABORTED_READING
        else:
            batch.state = _state_before(batch)
            batch.message = (f"上次的{what}任务 #{run.id} {run.state_label}，没有写入任何数据；"
                             f"可以重新{what}")
        db.session.commit()
    return batch


def cancel_running(batch: ImportBatch) -> JobRun | None:
    """Cancel the batch's queued or running preview, commit or rollback job.

    Returns the cancelled JobRun, or None when no job of the batch was running. A running
    job stops at its next step and rolls back, so nothing of it stays; the batch is then
    put back where it was by `settle`.
    """
    settle(batch)
    if batch.state not in _JOB_OF:
        return None
    run = _run(getattr(batch, _JOB_OF[batch.state][0]))
    if run is None or run.state not in CANCELLABLE or not cancel_job(run):
        return None
    return run


def _active(run: JobRun | None) -> bool:
    return run is not None and run.state in CANCELLABLE


def _release_finished_key(kind: str, batch: ImportBatch) -> None:
    """A finished run keeps its idempotency key; the state checks allow a new run, so the
    key passes to it (a failed or cancelled one enqueue_job releases itself)."""
    key = f"{kind}:{batch.id}"
    holder = db.session.execute(
        sa.select(JobRun).where(JobRun.tenant_id == batch.tenant_id, JobRun.kind == kind,
                                JobRun.idempotency_key == key)).scalar_one_or_none()
    if holder is not None and holder.state not in CANCELLABLE + RERUNNABLE:
        holder.idempotency_key = None
        db.session.flush()


def _start(kind: str, batch: ImportBatch, new_state: str, column: str,
           user_id: int | None) -> JobRun:
    previous, previous_message = batch.state, batch.message
    _release_finished_key(kind, batch)
    batch.state = new_state
    batch.message = None
    try:
        # enqueue_job commits the batch's new state together with the JobRun, before the
        # job can reach a worker.
        run = enqueue_job(kind, tenant_id=batch.tenant_id, user_id=user_id, queue=QUEUE,
                          params={"batch_id": batch.id}, idempotency_key=f"{kind}:{batch.id}")
    except QueueUnavailable:
        db.session.rollback()
        batch = db.session.get(ImportBatch, batch.id)
        batch.state, batch.message = previous, previous_message
        db.session.commit()
        raise
    except BaseException:
        db.session.rollback()
        raise
    setattr(batch, column, run.id)
    db.session.commit()
    return run


def _refuse_state(batch: ImportBatch, doing: str) -> None:
    if batch.state == FAILED:
        raise ImportRefused(f"这批导入已失败：{batch.message or '文件无法读取'}。"
                            "请修改文件后重新上传")
    if batch.state == ROLLED_BACK:
        raise ImportRefused(f"这批导入已撤销，不能再{doing}；如需重新导入，请重新上传文件")
    label = BATCH_STATE_LABELS.get(batch.state, batch.state)
    raise ImportRefused(f"这批导入当前“{label}”，不能{doing}")


def start_preview(batch: ImportBatch, *, user_id: int | None = None,
                  mapping_overrides: Any = ...) -> JobRun:
    """Start (or restart) the dry run: counts and samples of create/update/unchanged/error.

    `mapping_overrides` (field → header text, 0-based column index, or None to ignore a
    column) replaces the batch's saved choices; leave it out to keep them. Allowed while the
    batch is uploaded or previewed (a new preview replaces the last); a preview already
    running is returned as is. Refused once committing/committed/rolled back, or failed.
    """
    settle(batch)
    _check_tenant(batch.tenant_id)
    if batch.state == PREVIEWING:
        run = _run(batch.preview_job_id)
        if _active(run):
            if mapping_overrides is not ... and \
                    check_overrides(mapping_overrides) != (batch.mapping_overrides or None):
                raise ImportRefused("正在预览，请等这次预览完成后再修改列的对应关系")
            return run
    elif batch.state not in (UPLOADED, PREVIEWED):
        if batch.state in (COMMITTING, COMMITTED, ROLLING_BACK):
            raise ImportRefused("这批数据已经开始导入或已导入，不能再预览；"
                                "如需按新的设置重新导入，请先撤销这批导入")
        _refuse_state(batch, "预览")
    if mapping_overrides is not ...:
        try:
            batch.mapping_overrides = check_overrides(mapping_overrides)
        except ValueError as exc:
            raise ImportRefused(str(exc)) from exc
    return _start(PREVIEW_KIND, batch, PREVIEWING, "preview_job_id", user_id)


def start_commit(batch: ImportBatch, *, user_id: int | None = None) -> JobRun:
    """Start writing a previewed batch (one transaction; bad rows are left out).

    Refused before a preview, while a preview runs, when the preview found nothing to write,
    after a commit (never twice), after a rollback, or for a failed batch. A commit already
    running is returned as is; after a failed or cancelled commit it may start again.
    """
    settle(batch)
    _check_tenant(batch.tenant_id)
    if batch.state == COMMITTING:
        run = _run(batch.commit_job_id)
        if _active(run):
            return run
        # No job of this batch is running (the process died before it was recorded).
        return _start(COMMIT_KIND, batch, COMMITTING, "commit_job_id", user_id)
    if batch.state == UPLOADED:
        raise ImportRefused("请先预览：确认新增、更新和错误的行数后再导入")
    if batch.state == PREVIEWING:
        raise ImportRefused("预览还没有完成，请等预览完成、核对结果后再导入")
    if batch.state in (COMMITTED, ROLLING_BACK):
        when = batch.committed_at.strftime("%Y-%m-%d %H:%M") if batch.committed_at else ""
        raise ImportRefused(f"这批数据已于{when}导入，不能重复导入")
    if batch.state != PREVIEWED:
        _refuse_state(batch, "导入")
    counts = batch.counts or {}
    if not counts.get("create") and not counts.get("update"):
        if counts.get("error"):
            raise ImportRefused(f"没有可以导入的行：{counts.get('error')}行有错误。"
                                "请下载错误明细，修改后重新上传")
        raise ImportRefused("没有需要导入的内容：所有行都与现有台账一致")
    return _start(COMMIT_KIND, batch, COMMITTING, "commit_job_id", user_id)


def start_rollback(batch: ImportBatch, *, user_id: int | None = None) -> JobRun:
    """Start undoing a committed batch: created households removed, updated ones restored.

    Checked at once (and again by the job, under its lock): refused in Chinese, naming the
    rows, when later changes depend on the batch (a created household now has a meter
    account, a household was changed again after the import, a created community was used).
    Only a committed batch can be rolled back; a rollback already running is returned.
    """
    settle(batch)
    _check_tenant(batch.tenant_id)
    if batch.state == ROLLING_BACK:
        run = _run(batch.rollback_job_id)
        if _active(run):
            return run
    # ROLLING_BACK with no job of it running (the process died before it was recorded):
    # checked and started afresh like a committed batch.
    if batch.state not in (COMMITTED, ROLLING_BACK):
        if batch.state in (UPLOADED, PREVIEWING, PREVIEWED, COMMITTING):
            raise ImportRefused("这批数据还没有导入，无需撤销")
        if batch.state == ROLLED_BACK:
            raise ImportRefused("这批导入已经撤销过了")
        _refuse_state(batch, "撤销")
    problems, _ = rollback_problems(db.session, batch)
    if problems:
        raise ImportRefused(refusal_text(problems))
    return _start(ROLLBACK_KIND, batch, ROLLING_BACK, "rollback_job_id", user_id)


def error_workbook_bytes(batch: ImportBatch) -> bytes | None:
    """The batch's error workbook: the stored one, else rebuilt from a committed batch's
    rows; None when no row was bad."""
    path = error_file(batch)
    if path is not None and path.exists():
        return path.read_bytes()
    if batch.state in (COMMITTED, ROLLING_BACK, ROLLED_BACK) and (batch.counts or {}).get("error"):
        return error_workbook(batch, session=db.session)
    return None


# ---------------------------------------------------------------------------------------------
# Column choices and saved profiles (列对应方案)


def column_choices(batch: ImportBatch, chosen: dict[int, str]) -> dict[str, Any]:
    """The overrides for a new preview from the clerk's per-column choices.

    `chosen` maps a 0-based column index to a field ("" or missing: not imported). A field
    the last preview took from a column no longer chosen is set to None (not imported).
    Raises ImportRefused (Chinese) for an unknown field or a field chosen for two columns.
    """
    columns = {c["index"]: c for c in (batch.mapping or {}).get("columns", [])}
    overrides: dict[str, Any] = {}
    for index, name in sorted(chosen.items()):
        if not name:
            continue
        if index not in columns:
            raise ImportRefused(f"第{index + 1}列不在这个文件的表头里")
        if name in overrides:
            first = columns[overrides[name]]["letter"]
            raise ImportRefused(f"“{FIELD_NAMES.get(name, name)}”同时对应了{first}列和"
                                f"{columns[index]['letter']}列，只能选一列")
        overrides[name] = index
    for name in (batch.mapping or {}).get("fields", {}):
        if name in HOUSEHOLD_FIELDS and name not in overrides:
            overrides[name] = None
    try:
        return check_overrides(overrides) or {}
    except ValueError as exc:
        raise ImportRefused(str(exc)) from exc


def profile_overrides(batch: ImportBatch, overrides: dict[str, Any]) -> dict[str, Any]:
    """Column-index overrides as header texts, so they apply to the next file whatever its
    column order. Refused for a chosen column without a header text."""
    columns = {c["index"]: c for c in (batch.mapping or {}).get("columns", [])}
    out: dict[str, Any] = {}
    for name, target in overrides.items():
        if isinstance(target, int):
            column = columns.get(target)
            label = (column or {}).get("label") or ""
            if not label or label == f"{(column or {}).get('letter')}列":
                raise ImportRefused(f"{(column or {}).get('letter', target + 1)}列没有表头文字，"
                                    "不能存为方案（方案按表头文字对应列）")
            out[name] = label
        else:
            out[name] = target
    return out


def list_profiles(session: Any) -> list[ImportProfile]:
    """The current sub-district's saved profiles, by name."""
    return list(session.scalars(sa.select(ImportProfile).order_by(ImportProfile.name)))


def save_profile(session: Any, name: str, overrides: dict[str, Any],
                 user_id: int | None) -> ImportProfile:
    """Create or replace the current sub-district's profile `name` (the caller commits)."""
    tenant_id = current_scope().write
    if tenant_id is None:
        raise ImportRefused("只有办事处的工作人员可以保存列对应方案")
    name = " ".join((name or "").split())
    if not name or len(name) > 100:
        raise ImportRefused("方案名称不能为空，且不超过100个字")
    try:
        checked = check_overrides(overrides) or {}
    except ValueError as exc:
        raise ImportRefused(str(exc)) from exc
    if not checked:
        raise ImportRefused("没有可保存的列对应设置")
    profile = session.scalars(sa.select(ImportProfile).where(
        ImportProfile.tenant_id == tenant_id, ImportProfile.name == name)).first()
    if profile is None:
        profile = ImportProfile(tenant_id=tenant_id, name=name, created_by=user_id)
        session.add(profile)
    profile.overrides = checked
    session.flush()
    return profile


def get_profile(session: Any, profile_id: int) -> ImportProfile | None:
    """A profile of the current scope (None for another sub-district's)."""
    return session.scalars(sa.select(ImportProfile).where(
        ImportProfile.id == profile_id)).first()
