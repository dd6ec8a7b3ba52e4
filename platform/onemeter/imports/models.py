"""Import batches and their rows: what a clerk uploaded, what the preview found, what the
commit wrote (with before-images), so every batch can be shown, downloaded and rolled back.

A batch moves

    uploaded → previewing → previewed → committing → committed → rolling_back → rolled_back

or ends `failed` (the reader refused the file). The transitional states (…ing) are set when
the job is enqueued; if that job then fails or is cancelled, `service.settle` puts the batch
back where it was (the job's own transaction wrote nothing).

`ImportRow` rows are written by the commit, one per data row of the file (create, update,
unchanged, error), in the commit's transaction. Their `household_id` is a plain integer, not
a foreign key: the history of a batch outlives a household deleted later (or by a rollback).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from onemeter.database import Model
from onemeter.tenancy import TenantScoped, tenant_reference

UPLOADED, PREVIEWING, PREVIEWED = "uploaded", "previewing", "previewed"
COMMITTING, COMMITTED = "committing", "committed"
ROLLING_BACK, ROLLED_BACK, FAILED = "rolling_back", "rolled_back", "failed"
BATCH_STATES = (UPLOADED, PREVIEWING, PREVIEWED, COMMITTING, COMMITTED, ROLLING_BACK,
                ROLLED_BACK, FAILED)
BATCH_STATE_LABELS = {
    UPLOADED: "已上传", PREVIEWING: "预览中", PREVIEWED: "已预览", COMMITTING: "导入中",
    COMMITTED: "已导入", ROLLING_BACK: "撤销中", ROLLED_BACK: "已撤销", FAILED: "失败",
}
#: States in which a batch no longer counts for the "same file re-uploaded" guard: a new
#: upload of the same bytes then starts a new batch.
CLOSED_STATES = (FAILED, ROLLED_BACK)

#: Kinds of import (what the rows become). Only households for now.
BATCH_KINDS = ("households",)
BATCH_KIND_LABELS = {"households": "住户台账"}

CREATE, UPDATE, UNCHANGED, ERROR = "create", "update", "unchanged", "error"
ROW_ACTIONS = (CREATE, UPDATE, UNCHANGED, ERROR)
ROW_ACTION_LABELS = {CREATE: "新增", UPDATE: "更新", UNCHANGED: "无变化", ERROR: "错误"}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class ImportBatch(TenantScoped, Model):
    """One uploaded spreadsheet and what became of it."""

    __tenant_id_index__ = False  # (tenant_id, id) serves it; see TenantScoped

    __tablename__ = "om_import_batch"
    # Progress and samples change often; commit and rollback write their own summary entry
    # to the change log (without residents' phone or ID numbers).
    __audit__ = False
    __tenant_table_args__ = (
        tenant_reference("preview_job_id", "om_job_run"),
        tenant_reference("commit_job_id", "om_job_run"),
        tenant_reference("rollback_job_id", "om_job_run"),
        sa.CheckConstraint(
            "state IN (" + ", ".join(f"'{s}'" for s in BATCH_STATES) + ")",
            name="ck_om_import_batch_state"),
        sa.Index("ix_om_import_batch_tenant_created", "tenant_id", "created_at"),
        # The same file (same bytes) is one batch per tenant and kind while the batch is
        # open; a failed or rolled-back batch lets the file be imported afresh.
        sa.Index("uq_om_import_batch_same_file", "tenant_id", "kind", "content_hash",
                 unique=True,
                 postgresql_where=sa.text("state NOT IN ('failed', 'rolled_back')"),
                 sqlite_where=sa.text("state NOT IN ('failed', 'rolled_back')")),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(32), nullable=False, default="households", info={"checked": True})
    filename: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    #: SHA-256 of the bytes, lowercase hex.
    content_hash: Mapped[str] = mapped_column(sa.String(64), nullable=False, info={"checked": True})
    size: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    #: Where the bytes are: `<tenant>/imports/<sha256>.<ext>` under ONEMETER_UPLOAD_DIR.
    file_key: Mapped[str] = mapped_column(sa.String(255), nullable=False, info={"checked": True})
    state: Mapped[str] = mapped_column(sa.String(16), nullable=False, default=UPLOADED, info={"checked": True})
    #: The last plan's counts: create, update, unchanged, error, duplicate_in_file (a subset
    #: of error), rows (data rows), skipped (blank/小计/合计 rows), communities_create.
    counts: Mapped[dict] = mapped_column(sa.JSON, nullable=False, default=dict)
    #: The counts the preview showed (the commit re-plans: the database may have moved).
    preview_counts: Mapped[dict | None] = mapped_column(sa.JSON)
    #: How the sheet was read: header row(s), field → column, unmapped and ignored columns.
    mapping: Mapped[dict | None] = mapped_column(sa.JSON)
    #: What the clerk chose: field → column header text (or 0-based column index, or None).
    mapping_overrides: Mapped[dict | None] = mapped_column(sa.JSON)
    #: A few rows per action for the preview page: {"create": [{row, community, building,
    #: unit, room, owner_name, phone, id_number, opted_out, reason}, …], "update": [… with
    #: "changes": {field: [old, new]}], "unchanged": […], "error": [… with "source"]}.
    #: Phone and ID numbers are in clear (nested: the generic PII masking does not reach
    #: them); a page must mask them for users without view_pii.
    samples: Mapped[dict | None] = mapped_column(sa.JSON)
    #: Why the batch failed, or why the last commit/rollback was refused (Chinese).
    message: Mapped[str | None] = mapped_column(sa.Text)
    #: The error workbook (`<tenant>/imports/errors-<sha256>.xlsx`), when rows were bad.
    error_file: Mapped[str | None] = mapped_column(sa.String(255), info={"checked": True})
    created_by: Mapped[int | None] = mapped_column(sa.Integer, sa.ForeignKey("ab_user.id"))
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime, nullable=False, default=_now)
    previewed_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime)
    committed_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime)
    rolled_back_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime)
    failed_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime)
    preview_job_id: Mapped[int | None] = mapped_column(sa.Integer)
    commit_job_id: Mapped[int | None] = mapped_column(sa.Integer)
    rollback_job_id: Mapped[int | None] = mapped_column(sa.Integer)
    #: Communities the commit created (ids), removed again by a rollback.
    created_communities: Mapped[list | None] = mapped_column(sa.JSON)

    # Not stored: set by `service.start_upload` when the bytes were uploaded before.
    reused = False
    notice = None

    def __repr__(self) -> str:
        return f"导入批次 #{self.id} {self.filename}"

    @property
    def state_label(self) -> str:
        return BATCH_STATE_LABELS.get(self.state, self.state)

    @property
    def kind_label(self) -> str:
        return BATCH_KIND_LABELS.get(self.kind, self.kind)

    @classmethod
    def om_sample(cls, session: Any, tenant_id: int, marker: str) -> ImportBatch:
        """A previewed batch whose free text reads `marker` (for the access matrix)."""
        digest = hashlib.sha256(f"{marker}{uuid.uuid4()}".encode()).hexdigest()
        batch = cls(tenant_id=tenant_id, kind="households", filename=f"{marker}filename",
                    content_hash=digest, size=1, file_key=f"{tenant_id}/imports/{digest}.csv",
                    state=PREVIEWED, counts={"create": 1}, message=f"{marker}message")
        session.add(batch)
        session.flush()
        return batch


class ImportRow(TenantScoped, Model):
    """One data row of a committed batch: what the commit did with it, and the images needed
    to undo it (the household before an update, and every household as written)."""

    __tenant_id_index__ = False  # (tenant_id, batch_id, row_number) serves it
    __tenant_referenced__ = False  # nothing refers to a row; the batch's key checks the tenant

    __tablename__ = "om_import_row"
    __audit__ = False  # written in bulk with the batch; the batch logs one summary entry
    __tenant_table_args__ = (
        # On PostgreSQL this key is checked once per statement by triggers (migration 0012):
        # an import's 100,000 records all name one batch, and the declared key looked it up
        # again for each of them. Same guarantees, same error (23503, this key's name).
        tenant_reference("batch_id", "om_import_batch", ondelete="CASCADE",
                         checked_by_trigger=("postgresql",)),
        sa.CheckConstraint(
            "action IN (" + ", ".join(f"'{a}'" for a in ROW_ACTIONS) + ")",
            name="ck_om_import_row_action"),
        sa.Index("ix_om_import_row_tenant_batch_row", "tenant_id", "batch_id", "row_number"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                                    primary_key=True)
    batch_id: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    #: The row number as Excel shows it.
    row_number: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    action: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    household_id: Mapped[int | None] = mapped_column(sa.Integer)
    community_id: Mapped[int | None] = mapped_column(sa.Integer)
    natural_key: Mapped[str | None] = mapped_column(sa.String(100))
    #: The household as it was before an update (every column but id and tenant).
    before: Mapped[dict | None] = mapped_column(sa.JSON, info={"pii": "logged_values"})
    #: The household as the commit wrote it (create, update), or as it stood (unchanged).
    after: Mapped[dict | None] = mapped_column(sa.JSON, info={"pii": "logged_values"})
    #: The row's cells as read: field (or header text of an unmapped column) → value.
    source: Mapped[dict | None] = mapped_column(sa.JSON, info={"pii": "logged_values"})
    #: Why the row is an error, or which fields an update changes (Chinese).
    reason: Mapped[str | None] = mapped_column(sa.Text)

    batch: Mapped[ImportBatch] = relationship(ImportBatch, foreign_keys=[batch_id])

    @property
    def action_label(self) -> str:
        return ROW_ACTION_LABELS.get(self.action, self.action)


class ImportProfile(TenantScoped, Model):
    """列对应方案: a sub-district's saved column choices, reused for the next upload.

    `overrides` maps a field to the header text it comes from (never a column letter: the
    next file may order its columns differently), or to None for a field not to import.
    """

    __tenant_id_index__ = False  # (tenant_id, id) serves it; see TenantScoped

    __tablename__ = "om_import_profile"
    __tenant_table_args__ = (
        sa.UniqueConstraint("tenant_id", "name", name="uq_om_import_profile_tenant_name"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    overrides: Mapped[dict] = mapped_column(sa.JSON, nullable=False, default=dict)
    created_by: Mapped[int | None] = mapped_column(sa.Integer)
    updated_at: Mapped[dt.datetime] = mapped_column(sa.DateTime, nullable=False, default=_now,
                                                    onupdate=_now)

    def __repr__(self) -> str:
        return self.name

    @property
    def description(self) -> str:
        """The choices in words: 室号 ← 门牌；联系电话 ← 手机；身份证号：不导入."""
        from onemeter.imports.headers import FIELD_NAMES

        parts = [f"{FIELD_NAMES.get(f, f)} ← {t}" if t is not None else
                 f"{FIELD_NAMES.get(f, f)}：不导入" for f, t in sorted(self.overrides.items())]
        return "；".join(parts)

    @classmethod
    def om_sample(cls, session: Any, tenant_id: int, marker: str) -> ImportProfile:
        """A profile named `marker` (for the access matrix)."""
        profile = cls(tenant_id=tenant_id, name=f"{marker}name",
                      overrides={"room": f"{marker}header"})
        session.add(profile)
        session.flush()
        return profile
