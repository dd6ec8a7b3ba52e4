"""Base classes for tenant pages and APIs, and the core's own pages (registered as a plugin).

`TenantModelView` and `TenantModelRestApi` add PII masking, an Excel export and the default
role permissions; the access-matrix test covers every view built on them or on FAB's bases.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Response, abort, current_app, flash, g, jsonify, redirect, request, url_for
from flask_appbuilder import IndexView, ModelRestApi, ModelView, expose, has_access
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_appbuilder.security.decorators import permission_name
from flask_appbuilder.urltools import get_filter_args, get_order_args
from flask_appbuilder.widgets import ListWidget
from markupsafe import Markup, escape

from onemeter.audit import ChangeLog
from onemeter.errors import ApiSaveErrors, SaveErrorMessages
from onemeter.exports import write_report
from onemeter.formatting import local_datetime, yes_no
from onemeter.jobs import (
    CANCELLABLE,
    RERUNNABLE,
    STATE_LABELS,
    JobRun,
    QueueUnavailable,
    cancel_job,
    enqueue_job,
    job_progress,
    rerun_job,
)
from onemeter.plugins import hookimpl
from onemeter.security import (
    DISTRICT_VIEWER,
    PLATFORM_ADMIN,
    READ_PERMISSIONS,
    TENANT_ADMIN,
    TENANT_STAFF,
    WRITE_PERMISSIONS,
    TenantStaffView,
    can_view_pii,
    mask_value,
    pii_columns,
)
from onemeter.tenancy import Tenant, current_scope

API_READ = ("can_get", "can_info")
API_WRITE = (*API_READ, "can_post", "can_put", "can_delete")


XLSX_MIMETYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def xlsx_download(body: bytes, filename: str) -> Response:
    """An .xlsx workbook as a download named `filename` (ASCII, dated by the caller)."""
    return Response(body, mimetype=XLSX_MIMETYPE,
                    headers={"Content-Disposition": f"attachment; filename={filename}"})


def _masking_formatter(kind: str) -> Any:
    def format_value(value: Any) -> Any:
        return value if can_view_pii() else mask_value(kind, value)
    return format_value


class TenantModelView(SaveErrorMessages, ModelView):
    """A page over a tenant-owned model: tenant staff edit, cross-tenant roles read.

    PII columns (`info={"pii": ...}`) are masked for users without `view_pii`, in the list,
    the detail page and the export. Override `om_roles` to change who may do what.
    """

    om_roles: dict[str, tuple[str, ...]] = {
        TENANT_ADMIN: WRITE_PERMISSIONS,
        TENANT_STAFF: WRITE_PERMISSIONS,
        DISTRICT_VIEWER: READ_PERMISSIONS,
        PLATFORM_ADMIN: READ_PERMISSIONS,
    }
    page_size = 25

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.formatters_columns = dict(self.formatters_columns)
        self.om_pii = pii_columns(self.datamodel.obj)
        for column, kind in self.om_pii.items():
            # Mask first, then any formatter the view declares: a custom formatter on a PII
            # column must never switch masking off.
            mask, custom = _masking_formatter(kind), self.formatters_columns.get(column)
            self.formatters_columns[column] = (
                mask if custom is None else (lambda v, m=mask, f=custom: f(m(v))))

    def may_write(self, permission: str, row: Any = None) -> bool:
        """Whether the user holds `permission` here and writes in the scope of `row` (if
        given): a cross-tenant reader sees a row but never writes it."""
        write = current_scope().write
        return (write is not None and (row is None or row.tenant_id == write)
                and self.appbuilder.sm.has_access(permission, self.class_permission_name))

    def visible_or_404(self, pk: Any) -> Any:
        """Row `pk` as this user may read it (tenant scope and base filters), else 404."""
        item = self.datamodel.get(pk, self._base_filters)
        if item is None:
            abort(404)
        return item

    def export_rows(self) -> tuple[list[str], list[list[Any]]]:
        """The current list (same filters and order as on screen) as headers and rows."""
        get_filter_args(self._filters)
        order_column, order_direction = get_order_args().get(self.__class__.__name__, ("", ""))
        if not order_column and self.base_order:
            order_column, order_direction = self.base_order
        joined = self._filters.get_joined_filters(self._base_filters)
        _, items = self.datamodel.query(joined, order_column, order_direction)
        columns = list(self.list_columns)
        headers = [str(self.label_columns.get(c, c)) for c in columns]
        show_pii = can_view_pii()
        rows = []
        for item in items:
            row = []
            for column in columns:
                value = getattr(item, column, None)
                if column in self.om_pii and not show_pii:
                    value = mask_value(self.om_pii[column], value)
                row.append(value)
            rows.append(row)
        return headers, rows

    @expose("/export/")
    @has_access
    def export(self) -> Response:
        """Download the filtered list as .xlsx in the government layout."""
        headers, rows = self.export_rows()
        scope = current_scope()
        unit = "平桥区" if scope.read is None else "、".join(
            t.name for t in self.datamodel.session.query(Tenant)
            .filter(Tenant.id.in_(scope.read or {-1})))
        title = str(self.list_title or self.__class__.__name__)
        body = write_report(title, headers, rows, unit=unit or "—")
        return xlsx_download(body, f"{self.__class__.__name__}-{dt.date.today():%Y%m%d}.xlsx")


class TenantModelRestApi(ApiSaveErrors, ModelRestApi):
    """A REST API over a tenant-owned model, with the same roles and masking as the pages."""

    om_roles: dict[str, tuple[str, ...]] = {
        TENANT_ADMIN: API_WRITE,
        TENANT_STAFF: API_WRITE,
        DISTRICT_VIEWER: API_READ,
        PLATFORM_ADMIN: API_READ,
    }
    # PII and tenant come from the server, never from the client.
    add_exclude_columns = ["tenant_id", "tenant"]
    edit_exclude_columns = ["tenant_id", "tenant"]

    def _mask(self, record: dict[str, Any]) -> None:
        for column, kind in pii_columns(self.datamodel.obj).items():
            if column in record:
                record[column] = mask_value(kind, record[column])

    def pre_get(self, data: dict[str, Any]) -> None:
        if not can_view_pii():
            self._mask(data.get("result", {}))

    def pre_get_list(self, data: dict[str, Any]) -> None:
        if not can_view_pii():
            for record in data.get("result", []):
                self._mask(record)


# --- core pages -------------------------------------------------------------------------

class OneMeterIndexView(IndexView):
    """The landing page: who you are, which sub-district, what you can do."""

    index_template = "onemeter/index.html"

    @expose("/")
    def index(self) -> Any:
        scope = current_scope()
        tenant = None
        if scope.write is not None:
            tenant = self.appbuilder.session.get(Tenant, scope.write)
        labels = self.appbuilder.sm.role_labels
        roles = [labels.get(r.name, r.name) for r in getattr(g.user, "roles", []) or []]
        summary = None
        if getattr(g.user, "is_authenticated", False) and self.appbuilder.sm.has_access(
                "can_list", "ProgressView"):
            from onemeter.retrofit.progress import progress_summary, project_progress
            from onemeter.retrofit.service import beijing_today
            from onemeter.utilities import utility_choices

            codes = [c for c, _ in utility_choices(self.appbuilder.sm.enabled_plugins())]
            summary = progress_summary(project_progress(self.appbuilder.session,
                                                        beijing_today(), utilities=codes))
        return self.render_template(self.index_template, appbuilder=self.appbuilder,
                                    tenant=tenant, scope=scope, role_labels=roles,
                                    summary=summary)


class TenantView(SaveErrorMessages, ModelView):
    """Sub-districts as synced from tenants/*.toml (the files are the source of truth)."""

    datamodel = SQLAInterface(Tenant)
    route_base = "/tenants"
    om_roles = {PLATFORM_ADMIN: ("can_list", "can_show"),
                DISTRICT_VIEWER: ("can_list", "can_show")}
    base_permissions = ["can_list", "can_show"]
    list_title = show_title = "办事处"
    list_columns = ["code", "name", "active", "utilities", "plugins", "synced_at"]
    show_columns = [*list_columns, "contacts", "source_file"]
    label_columns = {"code": "代码", "name": "名称", "active": "启用", "utilities": "公用事业",
                     "plugins": "启用的插件", "synced_at": "同步时间", "contacts": "联系人",
                     "source_file": "配置文件"}
    formatters_columns = {"active": yes_no, "synced_at": local_datetime,
                          "utilities": "、".join, "plugins": "、".join}


def _progress_bar(progress: int | None) -> Markup:
    value = int(progress or 0)
    return Markup(
        '<div class="progress" style="margin:0;min-width:120px">'
        f'<div class="progress-bar" role="progressbar" style="width:{value}%">{value}%</div></div>'
    )


def _counts_text(counts: dict[str, Any] | None) -> str:
    return "，".join(f"{k}：{v:,}" if isinstance(v, int) else f"{k}：{v}"
                    for k, v in (counts or {}).items())


class JobRunListWidget(ListWidget):
    """The job list with a 取消 button on queued/running rows and 重新运行 on ended ones."""

    template = "onemeter/jobrun_list_widget.html"

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("can_start", current_app.appbuilder.sm.has_access(
            "can_start", "JobRunView"))
        kwargs.setdefault("cancellable_labels", [STATE_LABELS[s] for s in CANCELLABLE])
        kwargs.setdefault("rerunnable_labels", [STATE_LABELS[s] for s in RERUNNABLE])
        super().__init__(**kwargs)


class JobRunView(TenantModelView):
    """Background jobs of the sub-district: progress, counts, outcome; polled while running."""

    datamodel = SQLAInterface(JobRun)
    route_base = "/jobs"
    list_template = "onemeter/jobrun_list.html"
    list_widget = JobRunListWidget
    om_roles = {TENANT_ADMIN: (*READ_PERMISSIONS, "can_start"),
                TENANT_STAFF: (*READ_PERMISSIONS, "can_start"),
                PLATFORM_ADMIN: READ_PERMISSIONS}
    base_permissions = ["can_list", "can_show", "can_export", "can_start"]
    list_title = show_title = "后台任务"
    base_order = ("created_at", "desc")
    list_columns = ["id", "kind", "state_label", "shown_progress", "shown_counts", "created_at",
                    "ended_at",
                    "error_summary"]
    show_columns = ["id", "kind", "queue", "state_label", "shown_progress", "shown_counts", "params",
                    "shown_message", "error", "attempts", "created_at", "started_at", "ended_at"]
    search_columns = ["kind", "state", "created_at"]
    label_columns = {"id": "编号", "kind": "类型", "state": "状态", "state_label": "状态",
                     "progress": "进度", "counts": "计数", "shown_progress": "进度",
                     "shown_counts": "计数", "shown_message": "消息", "created_at": "创建时间",
                     "started_at": "开始时间", "ended_at": "结束时间", "error": "错误",
                     "queue": "队列", "params": "参数", "message": "消息", "attempts": "尝试次数",
                     "error_summary": "错误"}
    formatters_columns = {"shown_progress": _progress_bar, "created_at": local_datetime,
                          "shown_counts": _counts_text,
                          "started_at": local_datetime, "ended_at": local_datetime}

    @expose("/progress/<int:pk>")
    @has_access
    @permission_name("show")
    def progress(self, pk: int) -> Response:
        """JSON progress of one job, for the page's polling."""
        run = self.datamodel.get(pk, self._base_filters)
        if run is None:
            abort(404)
        shown = job_progress(run)
        return jsonify(id=run.id, state=run.state, state_label=STATE_LABELS.get(run.state),
                       progress=shown.progress, counts=shown.counts, message=shown.message,
                       error=run.error)

    def _own_run(self, pk: int) -> JobRun:
        """The job `pk` of the user's own sub-district: 404 for others' (they do not exist)."""
        run = self.datamodel.get(pk, self._base_filters)
        if run is None:
            abort(404)
        if current_scope().write != run.tenant_id:
            abort(403)  # visible but not writable (a read-only role with can_start)
        return run

    def _to_list(self) -> Response:
        return redirect(url_for(f"{self.__class__.__name__}.list"))

    @expose("/cancel/<int:pk>", methods=["POST"])
    @has_access
    @permission_name("start")
    def cancel(self, pk: int) -> Response:
        """Cancel a queued or running job; a running one stops at its next step, rolled back."""
        run = self._own_run(pk)
        if cancel_job(run):
            flash(f"任务 #{pk} 已取消，已做的部分不会写入", "info")
        else:
            flash(f"任务 #{pk} 已结束（{run.state_label}），无法取消", "warning")
        return self._to_list()

    @expose("/rerun/<int:pk>", methods=["POST"])
    @has_access
    @permission_name("start")
    def rerun(self, pk: int) -> Response:
        """重新运行: start a failed or cancelled job again (same kind, queue and params)."""
        run = self._own_run(pk)
        try:
            new, created = rerun_job(run, user_id=g.user.id)
        except ValueError as exc:
            flash(f"任务 #{pk}（{run.state_label}）：{exc}", "warning")
        except QueueUnavailable as exc:
            flash(str(exc), "danger")
        else:
            if created:
                flash(f"已重新运行任务 #{pk}，新任务 #{new.id}", "info")
            else:
                flash(f"相同的任务 #{new.id} 已在进行或已完成（{new.state_label}），未重复启动",
                      "warning")
        return self._to_list()

    @expose("/start-demo", methods=["POST"])
    @has_access
    @permission_name("start")
    def start_demo(self) -> Response:
        """Start the demo job (counts to 20 with progress) to check the worker is alive."""
        scope = current_scope()
        if scope.write is None:
            abort(403)
        try:
            run = enqueue_job("demo.count", tenant_id=scope.write, user_id=g.user.id,
                              queue="reports", params={"n": 20})
            flash(f"已启动演示任务 #{run.id}", "info")
        except QueueUnavailable as exc:
            flash(str(exc), "danger")
        return self._to_list()


#: Residents' phone and ID numbers inside a logged change, masked without view_pii.
_masked_log = _masking_formatter("logged_values")


class ChangeLogView(TenantModelView):
    """The change log of the sub-district's data: who changed what, when, before and after."""

    datamodel = SQLAInterface(ChangeLog)
    route_base = "/changelog"
    om_roles = {TENANT_ADMIN: READ_PERMISSIONS, PLATFORM_ADMIN: READ_PERMISSIONS,
                DISTRICT_VIEWER: READ_PERMISSIONS}
    base_permissions = ["can_list", "can_show", "can_export"]
    list_title = show_title = "变更记录"
    base_order = ("id", "desc")
    list_columns = ["id", "at", "actor", "model", "object_id", "action", "before", "after"]
    show_columns = [*list_columns, "request_id", "prev_hash", "hash"]
    search_columns = ["model", "object_id", "action", "actor", "at"]
    label_columns = {"at": "时间", "actor": "操作人", "model": "对象类型", "object_id": "对象编号",
                     "action": "操作", "before": "修改前", "after": "修改后",
                     "request_id": "请求编号", "prev_hash": "上一条哈希", "hash": "哈希"}
    formatters_columns = {"action": lambda a: ChangeLog.ACTION_LABELS.get(a, a),
                          "at": local_datetime,
                          "before": lambda v: escape(_masked_log(v)) if v else "",
                          "after": lambda v: escape(_masked_log(v)) if v else ""}


@hookimpl
def onemeter_register_views(registrar: Any) -> None:
    registrar.add_view(TenantStaffView, "本办事处人员", category="办事处管理",
                       icon="fa-users", category_icon="fa-building")
    registrar.add_view(JobRunView, "后台任务", category="办事处管理", icon="fa-tasks")
    registrar.add_view(ChangeLogView, "变更记录", category="办事处管理", icon="fa-history")
    registrar.add_view(TenantView, "办事处", category="平台管理", icon="fa-building",
                       category_icon="fa-cogs")


def request_wants_json() -> bool:
    return request.accept_mimetypes.best == "application/json"


__all__ = ["TenantModelRestApi", "TenantModelView", "current_app"]
