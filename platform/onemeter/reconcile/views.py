"""核对 pages under 台账: upload a utility's account list, watch the job, read the result and
download its workbook; the plan check (registry against the plan) on the list page.

Tenant-scoped exactly like 台账导入: the sub-district's staff run, the district office reads,
another sub-district's run is a 404.
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
from onemeter.jobs import CANCELLABLE, QueueUnavailable
from onemeter.plugins import hookimpl
from onemeter.reconcile.engine import CLASS_LABELS, ROUND_LABELS
from onemeter.reconcile.models import (
    DONE,
    RUN_STATE_LABELS,
    ReconcileRun,
)
from onemeter.reconcile.service import (
    ReconcileRefused,
    cancel,
    job_state,
    plan_check,
    rerun,
    result_bytes,
    settle,
    start_upload,
)
from onemeter.security import (
    DISTRICT_VIEWER,
    PLATFORM_ADMIN,
    READ_PERMISSIONS,
    TENANT_ADMIN,
    TENANT_STAFF,
)
from onemeter.tenancy import current_scope
from onemeter.utilities import utility_choices, utility_label
from onemeter.views import TenantModelView, xlsx_download


def _counts_text(counts: dict[str, Any] | None) -> str:
    counts = counts or {}
    return "，".join(f"{label} {counts.get(cls, 0):,}" for cls, label in CLASS_LABELS.items()
                    if cls in counts)


class ReconcileRunView(TenantModelView):
    """核对: one row per uploaded account list; its page shows the comparison."""

    datamodel = SQLAInterface(ReconcileRun)
    route_base = "/reconcile"
    list_template = "onemeter/reconcile_list.html"
    show_template = "onemeter/reconcile_show.html"
    om_roles = {TENANT_ADMIN: (*READ_PERMISSIONS, "can_run"),
                TENANT_STAFF: (*READ_PERMISSIONS, "can_run"),
                DISTRICT_VIEWER: READ_PERMISSIONS, PLATFORM_ADMIN: READ_PERMISSIONS}
    base_permissions = ["can_list", "can_show", "can_export", "can_run"]
    list_title = show_title = "核对"
    list_columns = ["id", "utility", "filename", "state", "counts", "created_at"]
    search_columns = ["filename", "utility", "state", "created_at"]
    label_columns = {"id": "编号", "utility": "公用事业", "filename": "公司账户清单",
                     "state": "状态", "counts": "结果", "created_at": "上传时间",
                     "message": "说明"}
    formatters_columns = {"utility": utility_label,
                          "state": lambda s: RUN_STATE_LABELS.get(s, s),
                          "counts": _counts_text, "created_at": local_datetime}
    base_order = ("id", "desc")

    @expose("/list/")
    @has_access
    def list(self) -> Response:
        """The runs, the upload form, and the plan check."""
        self.update_redirect()
        return self.render_template(
            self.list_template, title=self.list_title, widgets=self._list(),
            can_run=self.may_write("can_run"),
            utilities=utility_choices(self.appbuilder.sm.enabled_plugins()),
            check=plan_check(db.session), utility_label=utility_label)

    @expose("/upload", methods=["POST"])
    @has_access
    @permission_name("run")
    def upload(self) -> Response:
        """Store the account list and start its comparison."""
        if not self.may_write("can_run"):
            abort(403)
        back = redirect(url_for(f"{self.__class__.__name__}.list"))
        upload = request.files.get("accounts")
        utility = request.form.get("utility", "")
        enabled = dict(utility_choices(self.appbuilder.sm.enabled_plugins()))
        if utility not in enabled:
            flash("请选择本办事处已启用的公用事业单位", "danger")
            return back
        if upload is None or not upload.filename:
            flash("请选择公司账户清单文件（.xlsx、.xls 或 .csv）", "danger")
            return back
        try:
            run, job = start_upload(db.session, current_scope().write, g.user.id, utility,
                                    upload.filename, upload.stream)
        except (ReconcileRefused, QueueUnavailable) as exc:
            db.session.rollback()
            flash(str(exc), "danger")
            return back
        if run.notice:
            flash(run.notice, "warning")
        else:
            flash(f"已开始核对（后台任务 #{job.id}），本页会自动刷新", "info")
        return redirect(url_for(f"{self.__class__.__name__}.show", pk=run.id))

    @expose("/cancel/<int:pk>", methods=["POST"])
    @has_access
    @permission_name("run")
    def cancel(self, pk: int) -> Response:
        """Stop the run's comparison (it writes nothing; the run can be re-run)."""
        run = self.visible_or_404(pk)
        if not self.may_write("can_run", run):
            abort(403)
        if cancel(run):
            flash("已取消核对；需要时可重新核对", "info")
        else:
            flash("这次核对已经结束，无需取消", "warning")
        return redirect(url_for(f"{self.__class__.__name__}.show", pk=pk))

    @expose("/rerun/<int:pk>", methods=["POST"])
    @has_access
    @permission_name("run")
    def rerun(self, pk: int) -> Response:
        """Compare the same list again with today's ledger."""
        run = self.visible_or_404(pk)
        if not self.may_write("can_run", run):
            abort(403)
        try:
            job = rerun(run, g.user.id)
        except (ReconcileRefused, QueueUnavailable) as exc:
            db.session.rollback()
            flash(str(exc), "danger")
        else:
            flash(f"已重新开始核对（后台任务 #{job.id}），本页会自动刷新", "info")
        return redirect(url_for(f"{self.__class__.__name__}.show", pk=pk))

    @expose("/show/<pk>", methods=["GET"])
    @has_access
    def show(self, pk: Any) -> Any:
        """The run: progress while it runs, then counts, samples and the download."""
        pk = self._deserialize_pk_if_composite(pk)
        run = settle(self.visible_or_404(pk))
        job = job_state(run)
        running = job if job is not None and job.state in CANCELLABLE else None
        return self.render_template(
            self.show_template, title=f"核对：{run.filename}", run=run, running=running,
            state_label=RUN_STATE_LABELS.get(run.state), utility_label=utility_label,
            class_labels=CLASS_LABELS, round_labels=ROUND_LABELS,
            local_datetime=local_datetime, done=run.state == DONE,
            may_run=self.may_write("can_run", run))

    @expose("/download/<int:pk>", methods=["GET"])
    @has_access
    @permission_name("show")
    def download(self, pk: int) -> Response:
        """The result workbook: one sheet per class."""
        run = self.visible_or_404(pk)
        body = result_bytes(run)
        if body is None:
            abort(404)
        name = f"reconcile-{run.id}-{dt.date.today():%Y%m%d}.xlsx"
        return xlsx_download(body, name)


@hookimpl
def onemeter_register_views(registrar: Any) -> None:
    """核对 under 台账."""
    registrar.add_view(ReconcileRunView, "核对", category="台账", icon="fa-balance-scale")
