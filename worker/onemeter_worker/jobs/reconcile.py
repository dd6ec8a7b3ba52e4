"""Reconciliation job (queue `reconcile`): one uploaded account list against the 户表.

Started by `onemeter.reconcile.service.start_upload` (and `rerun`); runs under the run's
tenant scope. The run is first marked 核对中 and committed (the page shows it); the comparison
then runs in one transaction. A file the reader refuses (or whose header is not found) fails
the run with the reader's Chinese message; the job itself then ends normally. A job that
fails or is cancelled leaves the run 核对中, which the pages settle to 失败 (re-runnable).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from onemeter.database import db
from onemeter.imports.reader import ImportFileError
from onemeter.reconcile.models import RUNNING, UPLOADED, ReconcileRun
from onemeter.reconcile.service import fail, read_run_file, run_reconcile
from onemeter_worker.runner import JobContext


def reconcile_run(ctx: JobContext, run_id: int, attempt: int | None = None) -> dict[str, Any]:
    """Read the account list, compare, store the result on the run."""
    run = db.session.get(ReconcileRun, int(run_id))
    if run is None:
        raise LookupError(f"核对 #{run_id} 不存在，或不属于本办事处")
    if run.state not in (UPLOADED, RUNNING) or (attempt is not None and attempt != run.attempts):
        # A stale attempt (the run was re-run or finished meanwhile): nothing to do.
        return dict(run.counts or {})
    run.state = RUNNING
    db.session.commit()  # short: the page shows 核对中 while the comparison runs

    def progress(permille: int, message: str) -> None:
        ctx.check_cancelled()
        ctx.progress(permille, 1000, message=message)

    progress(0, "正在读取公司账户清单…")
    try:
        raw = read_run_file(run)
        progress(200, f"已读取 {raw.height:,} 行")
        counts = run_reconcile(db.session, run, raw, progress=progress)
    except ImportFileError as exc:
        fail(run, str(exc))
        counts = {"file_refused": 1}
    run.finished_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    return counts
