"""台账导入 pages: upload a ledger, watch its dry run, confirm, undo; the work runs on RQ.

The request only stores the file and starts jobs (`onemeter.imports.service`); the page
reloads itself while a job runs and shows its progress, counts and samples.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Response, abort, flash, g, redirect, request, url_for
from flask_appbuilder import expose, has_access
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_appbuilder.security.decorators import permission_name

from onemeter.database import db
from onemeter.formatting import local_datetime
from onemeter.imports.headers import FIELD_NAMES
from onemeter.imports.ledger import HOUSEHOLD_FIELDS
from onemeter.imports.models import (
    BATCH_KIND_LABELS,
    BATCH_STATE_LABELS,
    COMMITTED,
    PREVIEWED,
    ROW_ACTION_LABELS,
    UPLOADED,
    ImportBatch,
    ImportProfile,
)
from onemeter.imports.service import (
    ImportRefused,
    cancel_running,
    column_choices,
    error_workbook_bytes,
    get_profile,
    list_profiles,
    profile_overrides,
    save_profile,
    settle,
    start_commit,
    start_preview,
    start_rollback,
    start_upload,
)
from onemeter.jobs import CANCELLABLE, JobRun, QueueUnavailable, job_progress
from onemeter.plugins import hookimpl
from onemeter.security import (
    DISTRICT_VIEWER,
    PLATFORM_ADMIN,
    READ_PERMISSIONS,
    TENANT_ADMIN,
    TENANT_STAFF,
    can_view_pii,
    mask_value,
)
from onemeter.tenancy import current_scope
from onemeter.views import TenantModelView, xlsx_download

#: What each button starts, in the order the page offers them.
ACTIONS = {"preview": (start_preview, "预览"), "commit": (start_commit, "导入"),
           "rollback": (start_rollback, "撤销")}
#: Sample columns holding residents' data, masked without view_pii.
_PII_SAMPLES = {"phone": "phone", "id_number": "id_number"}
_SAMPLE_LABELS = {"row": "行号", "community": "小区", "building": "楼栋", "unit": "单元",
                  "room": "室号", "owner_name": "户主", "phone": "联系电话",
                  "id_number": "身份证号", "opted_out": "自愿不改造", "reason": "原因"}


def _counts_text(counts: dict[str, Any] | None) -> str:
    counts = counts or {}
    parts = [f"{label} {counts.get(action, 0):,}" for action, label in ROW_ACTION_LABELS.items()
             if action in counts]
    return "，".join(parts)


def masked_samples(samples: dict[str, list[dict[str, Any]]] | None
                   ) -> dict[str, list[dict[str, Any]]]:
    """The preview's sample rows, phone and ID masked for users without view_pii."""
    if not samples:
        return {}
    if can_view_pii():
        return samples

    def mask(key: str, value: Any) -> Any:
        return mask_value(_PII_SAMPLES[key], value) if key in _PII_SAMPLES and value else value

    def row_masked(row: dict[str, Any]) -> dict[str, Any]:
        out = {k: mask(k, v) for k, v in row.items()}
        if isinstance(row.get("changes"), dict):
            out["changes"] = {f: [mask(f, old), mask(f, new)]
                              for f, (old, new) in row["changes"].items()}
        return out

    return {action: [row_masked(row) for row in rows] for action, rows in samples.items()}


class ImportBatchView(TenantModelView):
    """台账导入: one row per uploaded file; its page shows the dry run and the steps."""

    datamodel = SQLAInterface(ImportBatch)
    route_base = "/imports"
    list_template = "onemeter/import_list.html"
    show_template = "onemeter/import_show.html"
    om_roles = {TENANT_ADMIN: (*READ_PERMISSIONS, "can_run"),
                TENANT_STAFF: (*READ_PERMISSIONS, "can_run"),
                DISTRICT_VIEWER: READ_PERMISSIONS, PLATFORM_ADMIN: READ_PERMISSIONS}
    base_permissions = ["can_list", "can_show", "can_export", "can_run"]
    list_title = show_title = "台账导入"
    list_columns = ["id", "filename", "kind", "state", "counts", "created_at", "committed_at"]
    search_columns = ["filename", "state", "created_at"]
    label_columns = {"id": "批次", "filename": "文件", "kind": "内容", "state": "状态",
                     "counts": "行数", "created_at": "上传时间", "committed_at": "导入时间",
                     "message": "说明", "size": "大小（字节）"}
    formatters_columns = {"kind": lambda k: BATCH_KIND_LABELS.get(k, k),
                          "state": lambda s: BATCH_STATE_LABELS.get(s, s),
                          "counts": _counts_text, "created_at": local_datetime,
                          "committed_at": local_datetime}
    base_order = ("id", "desc")

    @expose("/list/")
    @has_access
    def list(self) -> Response:
        """The batches, with the upload form for those who may import."""
        self.update_redirect()
        can_run = self.may_write("can_run")
        return self.render_template(self.list_template, title=self.list_title,
                                    widgets=self._list(), can_run=can_run,
                                    profiles=list_profiles(db.session) if can_run else [])

    @expose("/upload", methods=["POST"])
    @has_access
    @permission_name("run")
    def upload(self) -> Response:
        """Store the file, start its dry run, and go to its page."""
        if not self.may_write("can_run"):
            abort(403)
        profile = None
        if request.form.get("profile", "").isdigit():
            profile = get_profile(db.session, int(request.form["profile"]))
            if profile is None:
                abort(404)
        upload = request.files.get("ledger")
        if upload is None or not upload.filename:
            flash("请选择要导入的台账文件（.xlsx、.xls 或 .csv）", "danger")
            return redirect(url_for(f"{self.__class__.__name__}.list"))
        try:
            batch = start_upload(db.session, current_scope().write, g.user.id,
                                 upload.filename, upload.stream)
        except ImportRefused as exc:
            db.session.rollback()
            flash(str(exc), "danger")
            return redirect(url_for(f"{self.__class__.__name__}.list"))
        notice = getattr(batch, "notice", None)
        if notice:
            flash(notice, "warning")
        elif batch.state == UPLOADED:
            if profile is not None:
                self._start(batch, "preview", mapping_overrides=dict(profile.overrides))
                flash(f"按列对应方案“{profile.name}”预览", "info")
            else:
                self._start(batch, "preview")
        return redirect(url_for(f"{self.__class__.__name__}.show", pk=batch.id))

    def _start(self, batch: ImportBatch, action: str, **options: Any) -> None:
        start, label = ACTIONS[action]
        try:
            run = start(batch, user_id=g.user.id, **options)
        except (ImportRefused, QueueUnavailable) as exc:
            db.session.rollback()
            flash(str(exc), "danger")
        else:
            flash(f"已开始{label}（后台任务 #{run.id}），本页会自动刷新", "info")

    @expose("/run/<int:pk>/<action>", methods=["POST"])
    @has_access
    @permission_name("run")
    def run(self, pk: int, action: str) -> Response:
        """Start the batch's preview, commit or rollback job."""
        batch = self.visible_or_404(pk)
        if action not in ACTIONS:
            abort(404)
        if not self.may_write("can_run", batch):
            abort(403)
        self._start(batch, action)
        return redirect(url_for(f"{self.__class__.__name__}.show", pk=pk))

    @expose("/cancel/<int:pk>", methods=["POST"])
    @has_access
    @permission_name("run")
    def cancel(self, pk: int) -> Response:
        """Stop the batch's running step; it rolls back and the batch is as before it."""
        batch = self.visible_or_404(pk)
        if not self.may_write("can_run", batch):
            abort(403)
        run = cancel_running(batch)
        if run is None:
            flash("没有正在进行的任务", "warning")
        else:
            flash(f"已取消后台任务 #{run.id}；这一步没有写入任何数据", "info")
        return redirect(url_for(f"{self.__class__.__name__}.show", pk=pk))

    @expose("/mapping/<int:pk>", methods=["POST"])
    @has_access
    @permission_name("run")
    def mapping(self, pk: int) -> Response:
        """列对应: preview again with the clerk's column choices; optionally save them as a
        profile (by header text) for the next files."""
        batch = self.visible_or_404(pk)
        if not self.may_write("can_run", batch):
            abort(403)
        back = redirect(url_for(f"{self.__class__.__name__}.show", pk=pk))
        chosen = {int(k[4:]): v for k, v in request.form.items()
                  if k.startswith("col_") and k[4:].isdigit()}
        try:
            overrides = column_choices(batch, chosen)
            name = request.form.get("profile_name", "").strip()
            if name:
                profile = save_profile(db.session, name, profile_overrides(batch, overrides),
                                       g.user.id)
                flash(f"已保存列对应方案“{profile.name}”，上传下一个文件时可选用", "success")
        except ImportRefused as exc:
            db.session.rollback()
            flash(str(exc), "danger")
            return back
        self._start(batch, "preview", mapping_overrides=overrides)
        return back

    @expose("/show/<pk>", methods=["GET"])
    @has_access
    def show(self, pk: Any) -> Any:
        """The batch: state, the running job's progress, counts, samples, next steps."""
        pk = self._deserialize_pk_if_composite(pk)
        batch = settle(self.visible_or_404(pk))
        runs = [db.session.get(JobRun, i) for i in (batch.preview_job_id, batch.commit_job_id,
                                                    batch.rollback_job_id) if i]
        running = next((r for r in runs if r is not None and r.state in CANCELLABLE), None)
        may_run = self.may_write("can_run", batch)
        offered = [a for a, ok in (("preview", batch.state in (UPLOADED, PREVIEWED)),
                                   ("commit", batch.state == PREVIEWED),
                                   ("rollback", batch.state == COMMITTED)) if ok] if may_run \
            else []
        return self.render_template(
            self.show_template, title=f"台账导入：{batch.filename}", batch=batch,
            running=running, shown=job_progress(running) if running else None,
            offered=offered, actions=ACTIONS,
            samples=masked_samples(batch.samples), sample_labels=_SAMPLE_LABELS, may_run=may_run,
            action_labels=ROW_ACTION_LABELS, state_label=BATCH_STATE_LABELS.get(batch.state),
            kind_label=BATCH_KIND_LABELS.get(batch.kind, batch.kind),
            local_datetime=local_datetime, has_errors=bool((batch.counts or {}).get("error")),
            columns=(batch.mapping or {}).get("columns", []) if "preview" in offered else [],
            field_choices=[(f, FIELD_NAMES.get(f, f)) for f in HOUSEHOLD_FIELDS])

    @expose("/errors/<int:pk>", methods=["GET"])
    @has_access
    @permission_name("run")
    def errors(self, pk: int) -> Response:
        """错误清单: every bad row as read, with its row number and the reason.

        Only for the sub-district's own clerks: the rows repeat residents' data unmasked.
        """
        batch = self.visible_or_404(pk)
        if not self.may_write("can_run", batch):
            abort(403)
        body = error_workbook_bytes(batch)
        if body is None:
            abort(404)
        name = f"errors-{batch.id}-{dt.date.today():%Y%m%d}.xlsx"
        return xlsx_download(body, name)


class ImportProfileView(TenantModelView):
    """列对应方案: the sub-district's saved column choices (saved from an import's page)."""

    datamodel = SQLAInterface(ImportProfile)
    route_base = "/imports/profiles"
    om_roles = {TENANT_ADMIN: (*READ_PERMISSIONS, "can_delete"),
                TENANT_STAFF: (*READ_PERMISSIONS, "can_delete"),
                DISTRICT_VIEWER: READ_PERMISSIONS, PLATFORM_ADMIN: READ_PERMISSIONS}
    base_permissions = ["can_list", "can_show", "can_export", "can_delete"]
    list_title = show_title = "列对应方案"
    list_columns = ["name", "description", "updated_at"]
    show_columns = ["name", "description", "updated_at"]
    search_columns = ["name"]
    label_columns = {"name": "方案名称", "description": "列的对应", "updated_at": "保存时间"}
    formatters_columns = {"updated_at": local_datetime}
    base_order = ("name", "asc")


@hookimpl
def onemeter_register_views(registrar: Any) -> None:
    """台账导入 and 列对应方案 under 台账."""
    registrar.add_view(ImportBatchView, "台账导入", category="台账", icon="fa-upload")
    registrar.add_view(ImportProfileView, "列对应方案", category="台账", icon="fa-columns")
