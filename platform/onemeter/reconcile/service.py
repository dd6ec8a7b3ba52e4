"""What the 核对 pages call: store an account list, start its job, read the result; and the
plan check (registry against the plan's targets, level by level).

Like the imports: the request stores the bytes under `<tenant>/reconcile/<sha256>.<ext>` and
enqueues `reconcile.run` on the `reconcile` queue; the worker reads the file with the import
reader's guards, compares it with the tenant's 户表 of that utility (`engine.reconcile`) and
stores counts, samples and a result workbook (one sheet per class, formula-safe).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pandas as pd
import sqlalchemy as sa
from openpyxl import Workbook

from onemeter.database import db
from onemeter.exports import safe_cell
from onemeter.imports.headers import (
    CORE_ALIASES,
    cell_strings,
    drop_non_data_rows,
    excel_errors,
    locate_header,
    merge_aliases,
    split_address,
)
from onemeter.imports.reader import ImportFileError, RawSheet, read_table
from onemeter.imports.service import (
    ImportRefused,
    _extension,
    _receive,
    _write_atomically,
    import_root,
    setting,
)
from onemeter.jobs import CANCELLABLE, RERUNNABLE, JobRun, cancel_job, enqueue_job
from onemeter.reconcile.engine import (
    CLASS_LABELS,
    CONFLICT,
    LEDGER_ONLY,
    MATCHED,
    ROUND_LABELS,
    UTILITY_ONLY,
    Result,
    reconcile,
)
from onemeter.reconcile.models import DONE, FAILED, RUNNING, UPLOADED, ReconcileRun
from onemeter.registry.models import Community, Household, MeterAccount, PlanTarget
from onemeter.tenancy import Tenant, current_scope
from onemeter.utilities import utility_spec

QUEUE, KIND = "reconcile", "reconcile.run"
_KEY = re.compile(r"([1-9][0-9]*)/reconcile/((?:result-)?[0-9a-f]{64})\.([a-z0-9]{1,8})")
SAMPLE_ROWS = 20
#: Columns shown in samples and the workbook: side → field → header.
FIELDS = {"account_no": "户号", "meter_no": "表号", "owner_name": "户名",
          "community": "小区", "natural_key": "楼-单元-室"}
ACCOUNT_FIELDS = ("account_no", "meter_no", "owner_name", "community", "building", "unit",
                  "room", "address")


class ReconcileRefused(ImportRefused):
    """A reconciliation step that is not started (Chinese message)."""


# --- files -----------------------------------------------------------------------------------

def key_path(key: str, tenant_id: int) -> Path:
    match = _KEY.fullmatch(key or "")
    if match is None or int(match.group(1)) != tenant_id:
        raise ReconcileRefused("核对文件路径无效")
    root = import_root().resolve()
    path = (root / match.group(1) / "reconcile" / f"{match.group(2)}.{match.group(3)}").resolve()
    if not path.is_relative_to(root):
        raise ReconcileRefused("核对文件路径无效")
    return path


def result_bytes(run: ReconcileRun) -> bytes | None:
    if not run.result_file:
        return None
    path = key_path(run.result_file, run.tenant_id)
    return path.read_bytes() if path.exists() else None


# --- runs ------------------------------------------------------------------------------------

def get_run(session: Any, run_id: int) -> ReconcileRun | None:
    """The run if the current scope may see it (another sub-district's: None)."""
    return session.get(ReconcileRun, run_id)


def list_runs(session: Any, limit: int = 50) -> list[ReconcileRun]:
    return list(session.execute(sa.select(ReconcileRun).order_by(
        ReconcileRun.created_at.desc(), ReconcileRun.id.desc()).limit(limit)).scalars())


def start_upload(session: Any, tenant_id: int, user_id: int | None, utility: str,
                 filename: str, stream: IO[bytes]) -> tuple[ReconcileRun, JobRun]:
    """Store the account list, record the run and enqueue its job; commits."""
    if current_scope().write != tenant_id:
        raise ReconcileRefused("不能为其他办事处核对")
    if utility_spec(utility) is None:
        raise ReconcileRefused("请选择供水或供电等已启用的公用事业单位")
    name = Path((filename or "").replace("\\", "/")).name.strip()[-255:] or "未命名文件"
    folder = import_root() / str(tenant_id) / "reconcile"
    temp, digest, size = _receive(stream, folder, int(setting("ONEMETER_IMPORT_MAX_BYTES")))
    try:
        ext = _extension(name)
        os.replace(temp, folder / f"{digest}.{ext}")
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    same = session.scalars(sa.select(ReconcileRun).where(
        ReconcileRun.tenant_id == tenant_id, ReconcileRun.utility == utility,
        ReconcileRun.content_hash == digest).order_by(ReconcileRun.id.desc())).first()
    if same is not None:
        # The same list again: no second run. Its page offers 重新核对 when the ledger moved.
        same.notice = (f"这份清单已于核对 #{same.id} 上传过，未重复核对；"
                       "如台账已有变化，请在该页点“重新核对”")
        return same, job_state(same)
    run = ReconcileRun(tenant_id=tenant_id, utility=utility, filename=name,
                       content_hash=digest, size=size,
                       file_key=f"{tenant_id}/reconcile/{digest}.{ext}", state=UPLOADED,
                       counts={}, created_by=user_id)
    session.add(run)
    session.commit()
    return run, _enqueue(run, user_id)


def _enqueue(run: ReconcileRun, user_id: int | None) -> JobRun:
    """Put the run's comparison on the `reconcile` queue (one job per attempt)."""
    attempt = (run.attempts or 0) + 1
    run.attempts = attempt
    job = enqueue_job(KIND, tenant_id=run.tenant_id, user_id=user_id, queue=QUEUE,
                      params={"run_id": run.id, "attempt": attempt},
                      idempotency_key=f"run:{run.id}:{attempt}")
    run.job_id = job.id
    db.session.commit()
    return job


def settle(run: ReconcileRun) -> ReconcileRun:
    """A run whose job failed or was cancelled (a killed worker, 取消) is marked failed."""
    job = job_state(run)
    if run.state in (UPLOADED, RUNNING) and job is not None and job.state in RERUNNABLE:
        run.state = FAILED
        run.message = f"核对任务 #{job.id} {job.state_label}：{job.error_summary}"
        db.session.commit()
    return run


def cancel(run: ReconcileRun) -> bool:
    """Cancel the run's job while it is queued or running; False when it had ended."""
    job = job_state(run)
    if job is None or job.state not in CANCELLABLE:
        return False
    return cancel_job(job)


def rerun(run: ReconcileRun, user_id: int | None) -> JobRun:
    """Compare the same account list again with today's ledger (after a failure, a
    cancellation, or because the ledger changed). Refused while a comparison runs."""
    settle(run)
    job = job_state(run)
    if job is not None and job.state in CANCELLABLE:
        raise ReconcileRefused("这次核对还在进行，请等它完成或先取消")
    if current_scope().write != run.tenant_id:
        raise ReconcileRefused("不能为其他办事处核对")
    run.state, run.message = UPLOADED, None
    return _enqueue(run, user_id)


# --- reading the account list ------------------------------------------------------------------

def account_aliases(utility: str) -> dict[str, tuple[str, ...]]:
    spec = utility_spec(utility)
    own = dict(spec.account_list_aliases or spec.header_aliases) if spec else {}
    core = {k: v for k, v in CORE_ALIASES.items()
            if k in ("community", "address", "building", "unit", "room", "owner_name")}
    # The company's own spellings win over the core's (户名 is a name, 地址 an address).
    taken = {s for spellings in own.values() for s in spellings}
    core = {k: tuple(s for s in v if s not in taken) for k, v in core.items()}
    return merge_aliases(core, {k: v for k, v in own.items() if k in ACCOUNT_FIELDS})


def account_frame(raw: RawSheet, utility: str) -> pd.DataFrame:
    """The account list's rows as a DataFrame of ACCOUNT_FIELDS (address split)."""
    header = locate_header(raw.rows, account_aliases(utility), merged=raw.merged,
                           hidden=raw.hidden_columns)
    if "account_no" not in header.columns and "meter_no" not in header.columns:
        raise ImportFileError("账户清单中没有找到户号（用户编号）或表号（资产编号）列")
    data = drop_non_data_rows(raw.rows, header)
    frame = pd.DataFrame({f: [row[i] if i < len(row) else "" for row in data.rows]
                          for f, i in header.columns.items()})
    for f in list(frame.columns):  # #N/A from a failed formula says nothing: compared as empty
        failed = excel_errors(cell_strings(frame[f], strip=True))
        if failed.any():
            frame[f] = frame[f].mask(failed, "")
    frame["row"] = data.row_numbers
    if "address" in frame and "room" not in frame:
        parts = split_address(frame["address"])
        for part in ("community", "building", "unit", "room"):
            if part not in frame:
                frame[part] = parts[part]
    return frame


def ledger_frame(session: Any, tenant_id: int, utility: str) -> pd.DataFrame:
    """The tenant's 户表 of one utility with household and community."""
    rows = session.execute(
        sa.select(MeterAccount.id, MeterAccount.account_no, MeterAccount.meter_no,
                  Household.owner_name, Community.name, Household.natural_key)
        .join(Household, Household.id == MeterAccount.household_id)
        .join(Community, Community.id == Household.community_id)
        .where(MeterAccount.tenant_id == tenant_id, MeterAccount.utility == utility)
        .order_by(MeterAccount.id)).all()
    return pd.DataFrame(rows, columns=["id", "account_no", "meter_no", "owner_name",
                                       "community", "natural_key"])


# --- results -----------------------------------------------------------------------------------

def _clean(value: Any) -> Any:
    if value is None or (isinstance(value, float) and value != value):
        return None
    return value.item() if hasattr(value, "item") else value


def _records(frame: pd.DataFrame, columns: list[str]) -> list[list[Any]]:
    cols = [c for c in columns if c in frame]
    return [[_clean(v) for v in row] for row in frame[cols].itertuples(index=False)] \
        if len(frame) else []


def classified(result: Result, ledger: pd.DataFrame, accounts: pd.DataFrame
               ) -> dict[str, tuple[list[str], pd.DataFrame]]:
    """Per class: (headers, rows) — ledger fields and the account list's side by side."""
    lcols = ["account_no", "meter_no", "owner_name", "community", "natural_key"]
    acols = ["row", "account_no", "meter_no", "owner_name", "community", "building", "unit",
             "room", "address"]
    acols = [c for c in acols if c in accounts]
    left = ledger.reindex(columns=lcols).add_prefix("台账")
    right = accounts.reindex(columns=acols).add_prefix("公司")
    pairs = result.pairs
    both = pd.concat([left.iloc[pairs["ledger"].to_numpy()].reset_index(drop=True),
                      right.iloc[pairs["account"].to_numpy()].reset_index(drop=True)], axis=1)
    both.insert(0, "匹配方式", pairs["matched_by"].map(ROUND_LABELS).to_numpy())
    diff = pd.Series("", index=both.index)
    diff = diff.mask(pairs["meter_differs"].to_numpy(), "表号不同")
    diff = diff.mask(pairs["name_differs"].to_numpy(),
                     diff.where(diff == "", diff + "、") + "户名不同")
    both.insert(1, "差异", diff.to_numpy())
    conflict = (pairs["meter_differs"] | pairs["name_differs"]).to_numpy()
    return {MATCHED: both[~conflict].drop(columns=["差异"]), CONFLICT: both[conflict],
            LEDGER_ONLY: left.iloc[result.ledger_only],
            UTILITY_ONLY: right.iloc[result.utility_only]}


_HEADER_TEXT = {"account_no": "户号", "meter_no": "表号", "owner_name": "户名",
                "community": "小区", "natural_key": "楼-单元-室", "row": "行号",
                "building": "楼栋", "unit": "单元", "room": "室号", "address": "地址"}


def _header(column: str) -> str:
    for side in ("台账", "公司"):
        if column.startswith(side):
            return side + _HEADER_TEXT.get(column[len(side):], column[len(side):])
    return column


def workbook(classes: dict[str, pd.DataFrame]) -> bytes:
    """One sheet per class, every cell through `safe_cell` (no formula from a file)."""
    wb = Workbook(write_only=True)
    for cls, frame in classes.items():
        ws = wb.create_sheet(CLASS_LABELS[cls])
        ws.append([_header(c) for c in frame.columns])
        for row in frame.itertuples(index=False):
            ws.append([safe_cell(_clean(v)) for v in row])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def store_result(run: ReconcileRun, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    _write_atomically(import_root() / str(run.tenant_id) / "reconcile", f"result-{digest}.xlsx",
                      data)
    return f"{run.tenant_id}/reconcile/result-{digest}.xlsx"


def samples(classes: dict[str, pd.DataFrame]) -> dict[str, dict[str, Any]]:
    return {cls: {"headers": [_header(c) for c in frame.columns],
                  "rows": _records(frame.head(SAMPLE_ROWS), list(frame.columns))}
            for cls, frame in classes.items()}


def run_reconcile(session: Any, run: ReconcileRun, raw: RawSheet,
                  progress: Any = None) -> dict[str, int]:
    """Compare, store counts, samples and the workbook on the run (state done)."""
    accounts = account_frame(raw, run.utility)
    if progress:
        progress(300, f"公司清单 {len(accounts):,} 行，正在读取台账…")
    ledger = ledger_frame(session, run.tenant_id, run.utility)
    if progress:
        progress(500, f"台账 {len(ledger):,} 户，正在核对…")
    result = reconcile(ledger, accounts)
    classes = classified(result, ledger, accounts)
    if progress:
        progress(800, "正在生成核对结果表…")
    run.result_file = store_result(run, workbook(classes))
    run.samples = samples(classes)
    run.counts = dict(result.counts)
    run.state = DONE
    run.message = None
    return run.counts


def fail(run: ReconcileRun, message: str) -> None:
    run.state = FAILED
    run.message = message
    run.counts = {}


def read_run_file(run: ReconcileRun) -> RawSheet:
    return read_table(key_path(run.file_key, run.tenant_id), run.filename,
                      max_bytes=int(setting("ONEMETER_IMPORT_MAX_BYTES")),
                      max_uncompressed_bytes=int(setting("ONEMETER_IMPORT_MAX_UNCOMPRESSED_BYTES")),
                      max_cells=int(setting("ONEMETER_IMPORT_MAX_CELLS")),
                      max_rows=int(setting("ONEMETER_IMPORT_MAX_ROWS")))


# --- the plan check ------------------------------------------------------------------------------

@dataclass(frozen=True)
class PlanDifference:
    """One number of the plan the registry does not reach (or exceeds)."""

    utility: str
    phase_year: int | None
    category: str | None
    measure: str  # communities / households
    registry: int
    plan: int

    @property
    def difference(self) -> int:
        return self.registry - self.plan

    def describe(self) -> str:
        from onemeter.registry.categories import CATEGORY_LABELS
        from onemeter.registry.plan import MEASURE_LABELS, MEASURE_UNITS
        from onemeter.utilities import utility_label

        when = f"{self.phase_year}年" if self.phase_year else "三年合计"
        what = CATEGORY_LABELS.get(self.category, self.category) if self.category else "合计"
        unit = MEASURE_UNITS[self.measure]
        return (f"{when} {utility_label(self.utility)} {what} {MEASURE_LABELS[self.measure]}："
                f"台账 {self.registry:,} {unit}，计划 {self.plan:,} {unit}，"
                f"差 {self.difference:+,} {unit}")


def registry_counts(session: Any) -> pd.DataFrame:
    """Communities and households with an account, per tenant × community × utility ×
    phase × category (the current scope's rows only)."""
    rows = session.execute(
        sa.select(Community.tenant_id, Community.id, Community.name, MeterAccount.utility,
                  Community.phase_year, Community.category,
                  sa.func.count(sa.distinct(Household.id)))
        .join(Household, Household.community_id == Community.id)
        .join(MeterAccount, MeterAccount.household_id == Household.id)
        .group_by(Community.tenant_id, Community.id, Community.name, MeterAccount.utility,
                  Community.phase_year, Community.category)).all()
    return pd.DataFrame(rows, columns=["tenant_id", "community_id", "community", "utility",
                                       "phase_year", "category", "households"])


@dataclass
class PlanCheck:
    """The registry against the plan: district differences, and counts per level."""

    differences: list[PlanDifference]
    by_tenant: list[dict[str, Any]]
    by_community: list[dict[str, Any]]
    #: True when the scope is one sub-district: the plan's targets are the district's, so
    #: no difference is computed (it would compare a part with the whole).
    scoped: bool = False


def plan_check(session: Any) -> PlanCheck:
    """District: per utility × phase × category (and per utility × phase, and per utility)
    communities and households with an account vs PlanTarget; every difference listed.
    Sub-district and community counts are returned for the page (the plan has none)."""
    counts = registry_counts(session)
    scoped = not current_scope().reads_all
    targets = [] if scoped else list(session.scalars(sa.select(PlanTarget)))
    differences: list[PlanDifference] = []

    def measured(frame: pd.DataFrame) -> tuple[int, int]:
        return int(frame["community_id"].nunique()), int(frame["households"].sum())

    for t in targets:
        part = counts[counts["utility"] == t.utility]
        if t.phase_year is not None:
            part = part[part["phase_year"] == t.phase_year]
        if t.category is not None:
            part = part[part["category"] == t.category]
        communities, households = measured(part)
        for measure, have, want in (("communities", communities, t.communities),
                                    ("households", households, t.households)):
            if have != want:
                differences.append(PlanDifference(t.utility, t.phase_year, t.category,
                                                  measure, have, want))
    names = dict(session.execute(sa.select(Tenant.id, Tenant.name)).all())
    by_tenant = []
    if len(counts):
        grouped = counts.groupby(["tenant_id", "utility"]).agg(
            communities=("community_id", "nunique"), households=("households", "sum"))
        for (tenant_id, utility), row in grouped.iterrows():
            by_tenant.append({"tenant": names.get(tenant_id, tenant_id), "utility": utility,
                              "communities": int(row["communities"]),
                              "households": int(row["households"])})
    by_community = [{"tenant": names.get(r.tenant_id, r.tenant_id), "community": r.community,
                     "utility": r.utility, "phase_year": _clean(r.phase_year),
                     "category": r.category, "households": int(r.households)}
                    for r in counts.sort_values(["tenant_id", "community"]).itertuples()]
    return PlanCheck(differences, by_tenant, by_community, scoped)


def job_state(run: ReconcileRun) -> JobRun | None:
    return db.session.get(JobRun, run.job_id) if run.job_id else None
