"""Reconciliation runs: an uploaded account list of one utility and what the comparison found."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from onemeter.database import Model
from onemeter.tenancy import TenantScoped, tenant_reference

UPLOADED, RUNNING, DONE, FAILED = "uploaded", "running", "done", "failed"
RUN_STATES = (UPLOADED, RUNNING, DONE, FAILED)
RUN_STATE_LABELS = {UPLOADED: "已上传", RUNNING: "核对中", DONE: "已完成", FAILED: "失败"}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class ReconcileRun(TenantScoped, Model):
    """核对: one utility's account list compared with the sub-district's 户表."""

    __tenant_id_index__ = False  # (tenant_id, id) serves it; see TenantScoped

    __tablename__ = "om_reconcile_run"
    __audit__ = False
    __tenant_table_args__ = (
        tenant_reference("job_id", "om_job_run"),
        sa.CheckConstraint("state IN (" + ", ".join(f"'{s}'" for s in RUN_STATES) + ")",
                           name="ck_om_reconcile_run_state"),
        sa.Index("ix_om_reconcile_run_tenant_created", "tenant_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    utility: Mapped[str] = mapped_column(sa.String(32), nullable=False, info={"checked": True})
    filename: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    content_hash: Mapped[str] = mapped_column(sa.String(64), nullable=False,
                                              info={"checked": True})
    size: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    #: `<tenant>/reconcile/<sha256>.<ext>` under ONEMETER_UPLOAD_DIR.
    file_key: Mapped[str] = mapped_column(sa.String(255), nullable=False, info={"checked": True})
    state: Mapped[str] = mapped_column(sa.String(16), nullable=False, default=UPLOADED,
                                       info={"checked": True})
    #: matched, conflict, ledger_only, utility_only, meter_differs, name_differs, by_* …
    counts: Mapped[dict] = mapped_column(sa.JSON, nullable=False, default=dict)
    #: A few rows per class for the page.
    samples: Mapped[dict | None] = mapped_column(sa.JSON, info={"pii": "logged_values"})
    message: Mapped[str | None] = mapped_column(sa.Text)
    #: The result workbook `<tenant>/reconcile/result-<sha256>.xlsx`.
    result_file: Mapped[str | None] = mapped_column(sa.String(255), info={"checked": True})
    job_id: Mapped[int | None] = mapped_column(sa.Integer)
    #: How many times the comparison was started (each attempt is its own job).
    attempts: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0,
                                          server_default="0", info={"checked": True})
    created_by: Mapped[int | None] = mapped_column(sa.Integer, sa.ForeignKey("ab_user.id"))
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime, nullable=False, default=_now)
    finished_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime)

    # Not stored: set by `service.start_upload` when the same list was uploaded before.
    notice = None

    def __repr__(self) -> str:
        return f"核对 #{self.id} {self.filename}"

    @property
    def state_label(self) -> str:
        return RUN_STATE_LABELS.get(self.state, self.state)

    @classmethod
    def om_sample(cls, session: Any, tenant_id: int, marker: str) -> ReconcileRun:
        """A finished run whose free text reads `marker` (for the access matrix)."""
        from onemeter.utilities import utilities

        digest = hashlib.sha256(f"{marker}{uuid.uuid4()}".encode()).hexdigest()
        run = cls(tenant_id=tenant_id, utility=sorted(utilities())[0],
                  filename=f"{marker}filename", content_hash=digest, size=1,
                  file_key=f"{tenant_id}/reconcile/{digest}.csv", state=DONE,
                  counts={"matched": 1}, message=f"{marker}message")
        session.add(run)
        session.flush()
        return run
