"""区领导小组办公室 pages: 汇总 (rollups, plugin figures, charts, drill-down), 逾期与倒排工期,
考核排名. Registered through the core's `onemeter_register_views` (DEFAULT_PLUGINS).

Who sees what: the district viewer and the platform admin read every sub-district; a
sub-district's admin and staff read their own sub-district's rollup and overdue list (no
ranking: it compares sub-districts); utility staff read their own utility across
sub-districts (no plugin figures, no ranking); finance has no page here (funding only).
"""

from __future__ import annotations

import calendar
import datetime as dt
import hashlib
import json
from typing import Any

import sqlalchemy as sa
from flask import abort, current_app, flash, g, redirect, request, url_for
from flask_appbuilder import BaseView, ModelView, expose, has_access
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_appbuilder.security.decorators import permission_name
from werkzeug.wrappers import Response

from onemeter.database import db
from onemeter.district import bulletin, service
from onemeter.district.models import RECORD_KINDS, BulletinSnapshot, DistrictRecord
from onemeter.district.supervision import (
    OFFICE_KEEPS,
    ActionItemView,
    NoticeReplyView,
    SupervisionNoticeView,
)
from onemeter.errors import SaveErrorMessages
from onemeter.formatting import count, local_date, local_datetime, money, percent
from onemeter.plugins import RollupMetric, hookimpl, plugin_infos
from onemeter.registry.categories import CATEGORIES, PHASE_YEARS, category_label
from onemeter.registry.models import Community
from onemeter.retrofit.procedure import state_label
from onemeter.retrofit.progress import tenant_options
from onemeter.retrofit.service import beijing_today
from onemeter.security import (
    DISTRICT_VIEWER,
    PLATFORM_ADMIN,
    TENANT_ADMIN,
    TENANT_STAFF,
    UTILITY_STAFF,
)
from onemeter.tenancy import TenantScope, current_scope, use_scope
from onemeter.utilities import utility_choices
from onemeter.views import xlsx_download

CATEGORY = "区领导小组办公室"
_READERS = (TENANT_ADMIN, TENANT_STAFF, UTILITY_STAFF, DISTRICT_VIEWER, PLATFORM_ADMIN)


def _today() -> dt.date:
    """Beijing today; `?as_of=YYYY-MM-DD` looks at another day (figures as of then)."""
    wanted = request.args.get("as_of", "")
    try:
        return dt.date.fromisoformat(wanted) if wanted else beijing_today()
    except ValueError:
        abort(400, description="日期格式应为 年-月-日，如 2022-06-30")


def plugin_metrics(tenant_ids: list[int], as_of: dt.date) -> list[RollupMetric]:
    """The plugins' figures (`onemeter_rollup_metrics`) for the readable tenants only.

    Called under a read-only scope over the tenants the user reads (all of them for the
    district viewer), and the answer is filtered to them again: a sub-district's user gets
    its own figures, even from a plugin that would report more. Utility staff get none
    (they are not utility figures).
    """
    scope = current_scope()
    if scope.utility is not None or not tenant_ids:
        return []
    pm = current_app.extensions["onemeter_plugins"]
    wanted = set(tenant_ids)
    # Read-only (no write tenant) over what the user reads: a plugin cannot write on a GET.
    readonly = TenantScope(scope.read, None, scope.orm_enforced, label="rollup-metrics")
    with use_scope(readonly, db.session):
        answers = pm.hook.onemeter_rollup_metrics(tenant_ids=list(tenant_ids), as_of=as_of)
    metrics = []
    for answer in answers:
        for metric in answer or []:
            values = {t: v for t, v in metric.values.items() if t in wanted}
            metrics.append(RollupMetric(metric.code, metric.label, metric.unit, values,
                                        metric.plugin))
    return metrics


def metric_value(metric: RollupMetric, value: Any) -> str:
    """A plugin figure shown the local way: money in 元 with two decimals, counts with unit."""
    if value is None:
        return "—"
    if metric.unit == "元":
        return money(value)
    return f"{count(value) if isinstance(value, int) else value} {metric.unit}"


def _helpers() -> dict[str, Any]:
    return {"count": count, "percent": percent, "local_date": local_date, "money": money,
            "category_label": category_label, "state_label": state_label,
            "metric_value": metric_value, "time_elapsed": service.time_elapsed}


class DistrictRollupView(BaseView):
    """汇总: sub-district × utility × phase × category against the plan, with charts."""

    route_base = "/district"
    default_view = "index"
    om_roles = {role: ("can_list",) for role in _READERS}
    base_permissions = ["can_list"]
    #: Walked by the access matrix ({tenant}: a sub-district's id).
    om_matrix_pages = ("/district/", "/district/subdistrict/{tenant}",
                       "/district/tasks/2021.xlsx", "/district/tasks/2022.xlsx")

    def _utilities(self) -> dict[str, str]:
        return dict(utility_choices(self.appbuilder.sm.enabled_plugins()))

    @expose("/")
    @has_access
    @permission_name("list")
    def index(self) -> Any:
        """The district (or the user's own sub-district): tables, plugin figures, charts."""
        today = _today()
        session = self.appbuilder.session
        tenants = tenant_options(session)
        data = service.dashboard(session, self._utilities(), tenants, today)
        metrics = plugin_metrics([t for t, _ in tenants], today)
        charts = self._charts(data)
        infos = plugin_infos(current_app.extensions["onemeter_plugins"])
        return self.render_template(
            "onemeter/district_rollup.html", title="一户一表改造汇总", data=data,
            metrics=metrics, charts=json.dumps(charts, ensure_ascii=False),
            plugin_labels={name: info.label for name, info in infos.items()},
            today=today, phases=PHASE_YEARS, **_helpers())

    @staticmethod
    def _charts(data: service.Dashboard) -> dict[str, Any]:
        names = dict(data.tenants)
        per_category = service.totals(data.cells, lambda k: k.category)
        planned: dict[str | None, int] = {}
        for (utility, _phase, category), plan in data.plan.items():
            if utility in data.utilities:
                planned[category] = planned.get(category, 0) + plan.households
        categories = [c for c in (*CATEGORIES, None) if c in per_category or c in planned]
        return {
            "monthly": service.monthly_acceptances(data.per_month, data.today, data.utilities),
            "utilities": data.utilities,
            "tenants": {
                "names": [names[t] for t, _ in data.tenants],
                "done": [data.per_tenant.get(t, service.Figures()).done for t, _ in data.tenants],
                "remaining": [max(f.denominator - f.done, 0) for f in
                              (data.per_tenant.get(t, service.Figures()) for t, _ in data.tenants)],
                "opted_out": [data.per_tenant.get(t, service.Figures()).opted_out
                              for t, _ in data.tenants],
            },
            "categories": {
                "names": [category_label(c) for c in categories],
                "planned": [planned.get(c, 0) for c in categories],
                "done": [per_category.get(c, service.Figures()).done for c in categories],
            },
        }

    @expose("/subdistrict/<int:tenant_id>")
    @has_access
    @permission_name("list")
    def subdistrict(self, tenant_id: int) -> Any:
        """One sub-district, community by community, with links to its pages (drill-down)."""
        session = self.appbuilder.session
        tenants = dict(tenant_options(session))
        if tenant_id not in tenants or not current_scope().can_read(tenant_id):
            abort(404)
        today = _today()
        utilities = self._utilities()
        codes = service.allowed_utilities(utilities)
        cells = service.rollup(session, utilities, tenant_id=tenant_id)
        by_community = service.rollup(session, utilities, tenant_id=tenant_id,
                                      by_community=True)
        communities = {c.id: c for c in session.query(Community).filter(
            Community.tenant_id == tenant_id).order_by(Community.name)}
        lines = sorted(((communities[cid], utility, figures)
                        for (cid, utility), figures in by_community.items()
                        if cid in communities),
                       key=lambda x: (x[0].phase_year or 9999, x[0].name, codes.index(x[1])
                                      if x[1] in codes else 99))
        rows = service.district_rows(cells, {}, codes)
        sm = self.appbuilder.sm
        links = {"community": sm.has_access("can_show", "CommunityView"),
                 "households": sm.has_access("can_list", "HouseholdView"),
                 "progress": sm.has_access("can_list", "ProgressView")}
        return self.render_template(
            "onemeter/district_subdistrict.html", title=f"{tenants[tenant_id]} 改造汇总",
            tenant_id=tenant_id, tenant_name=tenants[tenant_id], rows=rows, lines=lines,
            utilities={c: utilities[c] for c in codes}, links=links, today=today,
            total=service.totals(cells, lambda k: 0).get(0, service.Figures()), **_helpers())


    @expose("/tasks/<int:year>.xlsx")
    @has_access
    @permission_name("list")
    def task_list(self, year: int) -> Any:
        """附件1–3: the year's task list as .xlsx (the user's own scope)."""
        if year not in PHASE_YEARS:
            abort(404)
        today = _today()
        session = self.appbuilder.session
        utilities = self._utilities()
        codes = service.allowed_utilities(utilities)
        tenants = dict(tenant_options(session))
        by_community = service.rollup(session, utilities, by_community=True)
        communities = session.query(Community).filter(
            Community.phase_year == year, Community.tenant_id.in_(list(tenants) or [-1])
        ).all()
        lines = []
        for community in sorted(communities, key=lambda c: (tenants[c.tenant_id], c.name)):
            per_utility = {code: (f.households, service.progress_label(f))
                           for code in codes
                           if (f := by_community.get((community.id, code))) is not None}
            lines.append((tenants[community.tenant_id], community, per_utility))
        unit = next(iter(tenants.values())) if len(tenants) == 1 else bulletin.OFFICE
        body = bulletin.task_list(year, lines, {c: utilities[c] for c in codes}, unit, today)
        return xlsx_download(body, f"task-list-{year}-{today:%Y%m%d}.xlsx")


class DistrictOverdueView(BaseView):
    """逾期与倒排工期: every item past its deadline, and each phase's needed vs achieved pace."""

    route_base = "/district/overdue"
    default_view = "index"
    om_roles = {role: ("can_list",) for role in _READERS}
    base_permissions = ["can_list"]
    om_matrix_pages = ("/district/overdue/",)

    #: At most this many items are listed (the counts by sub-district and unit cover all).
    LIMIT = 500

    @expose("/")
    @has_access
    @permission_name("list")
    def index(self) -> Any:
        today = _today()
        session = self.appbuilder.session
        utilities = dict(utility_choices(self.appbuilder.sm.enabled_plugins()))
        codes = service.allowed_utilities(utilities)
        items = service.overdue_items(session, today, codes)
        supervision = service.supervision_overdue(session, today)
        by_tenant: dict[str, int] = {}
        by_unit: dict[str, int] = {}
        for item in items:
            by_tenant[item.tenant_name] = by_tenant.get(item.tenant_name, 0) + 1
            unit = item.responsible.split("（")[0]
            by_unit[unit] = by_unit.get(unit, 0) + 1
        for entry in supervision:
            if entry.tenant_name:
                by_tenant[entry.tenant_name] = by_tenant.get(entry.tenant_name, 0) + 1
            by_unit[entry.unit] = by_unit.get(entry.unit, 0) + 1
        sm = self.appbuilder.sm
        links = {"notice": next((v for v in ("SupervisionNoticeView", "NoticeReplyView")
                                 if sm.has_access("can_show", v)), None),
                 "action": "ActionItemView" if sm.has_access("can_show", "ActionItemView")
                 else None}
        cells = service.rollup(session, codes)
        schedule = service.backward_schedule(session, cells, service.plan_targets(session),
                                             codes, today)
        return self.render_template(
            "onemeter/district_overdue.html", title="逾期事项与倒排工期", items=items[:self.LIMIT],
            total=len(items) + len(supervision), limit=self.LIMIT, projects=len(items),
            supervision=supervision[:self.LIMIT], links=links,
            by_tenant=sorted(by_tenant.items(), key=lambda x: (-x[1], x[0])),
            by_unit=sorted(by_unit.items(), key=lambda x: (-x[1], x[0])),
            schedule=schedule, utilities={c: utilities[c] for c in codes}, today=today,
            **_helpers())


def build_bulletin(session: Any, enabled: set[str] | None, today: dt.date
                   ) -> tuple[dict[str, Any], bytes]:
    """The monthly bulletin as of `today`: its figures (JSON-ready) and its workbook."""
    utilities = dict(utility_choices(enabled))
    codes = service.allowed_utilities(utilities)
    tenants = tenant_options(session)
    cells = service.rollup(session, codes)
    items: list[Any] = service.overdue_items(session, today, codes)
    items += service.supervision_overdue(session, today)
    events = service.accepted_events(session, codes, since=today - dt.timedelta(days=60))
    ranking = service.rankings(session, cells, items, events, tenants, today)
    metrics = plugin_metrics([t for t, _ in tenants], today)
    per_utility = service.totals(cells, lambda k: (k.tenant_id, k.utility))
    names = {c: utilities[c] for c in codes}
    body = bulletin.monthly_bulletin(ranking, per_utility, names, len(items),
                                     service.SCORE_FORMULA, today, metrics)
    data = {
        "as_of": today.isoformat(), "formula": service.SCORE_FORMULA, "utilities": names,
        "overdue": len(items),
        "ranking": [{"rank": r.rank, "tenant_id": r.tenant_id, "tenant": r.tenant_name,
                     "score": str(r.score), "overdue": r.overdue, "trend": r.trend,
                     "utilities": {c: {f: getattr(per_utility.get((r.tenant_id, c),
                                                                  service.Figures()), f)
                                       for f in ("communities", "accepted", "households",
                                                 "opted_out", "done")} for c in codes}}
                    for r in ranking],
        "metrics": [{"code": m.code, "label": m.label, "unit": m.unit, "plugin": m.plugin,
                     "values": {str(t): str(v) for t, v in m.values.items()},
                     "total": str(m.total())} for m in metrics],
    }
    return data, body


class DistrictRankingView(BaseView):
    """考核排名: sub-districts by the assessment score, its formula shown on the page."""

    route_base = "/district/ranking"
    default_view = "index"
    om_roles = {DISTRICT_VIEWER: ("can_list",), PLATFORM_ADMIN: ("can_list",)}
    base_permissions = ["can_list"]
    om_matrix_pages = ("/district/ranking/", "/district/ranking/bulletin.xlsx")

    @expose("/")
    @has_access
    @permission_name("list")
    def index(self) -> Any:
        today = _today()
        session = self.appbuilder.session
        utilities = dict(utility_choices(self.appbuilder.sm.enabled_plugins()))
        codes = service.allowed_utilities(utilities)
        cells = service.rollup(session, codes)
        items = service.overdue_items(session, today, codes)
        items += service.supervision_overdue(session, today)
        since = today - dt.timedelta(days=60)
        events = service.accepted_events(session, codes, since=since)
        ranking = service.rankings(session, cells, items, events, tenant_options(session),
                                   today)
        return self.render_template(
            "onemeter/district_ranking.html", title="年度目标考核排名", ranking=ranking,
            formula=service.SCORE_FORMULA, today=today, **_helpers())

    @expose("/bulletin.xlsx")
    @has_access
    @permission_name("list")
    def bulletin(self) -> Any:
        """月度通报 as .xlsx from the current figures, judged as of `?as_of` (default today);
        a published (frozen) one is under 已发布通报."""
        today = _today()
        _data, body = build_bulletin(self.appbuilder.session,
                                     self.appbuilder.sm.enabled_plugins(), today)
        return xlsx_download(body, f"bulletin-{today:%Y-%m}.xlsx")


class BulletinSnapshotView(BaseView):
    """已发布通报: the office publishes a month's bulletin once; it is stored frozen (figures
    and workbook with its SHA-256) and handed out again byte for byte."""

    route_base = "/district/bulletins"
    default_view = "index"
    om_roles = {DISTRICT_VIEWER: ("can_list", "can_publish"), PLATFORM_ADMIN: ("can_list",)}
    base_permissions = ["can_list", "can_publish"]
    om_matrix_pages = ("/district/bulletins/",)

    @expose("/")
    @has_access
    @permission_name("list")
    def index(self) -> Any:
        snapshots = (self.appbuilder.session.query(BulletinSnapshot)
                     .order_by(BulletinSnapshot.month.desc()).all())
        today = beijing_today()
        published = {s.month for s in snapshots}
        months, cursor = [], today.replace(day=1)
        while cursor >= dt.date(2021, 7, 1):  # from this month back to the plan's issue
            if f"{cursor:%Y-%m}" not in published:
                months.append((f"{cursor:%Y-%m}", f"{cursor.year}年{cursor.month}月"))
            cursor = (cursor - dt.timedelta(days=1)).replace(day=1)
        return self.render_template(
            "onemeter/district_bulletins.html", title="已发布通报", snapshots=snapshots,
            months=months, local_datetime=local_datetime,
            can_publish=self.appbuilder.sm.has_access("can_publish",
                                                      self.class_permission_name),
            **_helpers())

    @expose("/publish", methods=["POST"])
    @has_access
    @permission_name("publish")
    def publish(self) -> Response:
        """Publish the month's bulletin from the current figures, judged on the month's last
        day (or today, for the current month). Once per month; never changed after."""
        month = (request.form.get("month") or "").strip()
        back = redirect(url_for(f"{self.__class__.__name__}.index"))
        try:
            first = dt.date.fromisoformat(f"{month}-01")
        except ValueError:
            flash("月份格式应为 年-月，如 2026-11", "danger")
            return back
        today = beijing_today()
        if first > today:
            flash(f"{first.year}年{first.month}月尚未开始，不能发布该月通报", "danger")
            return back
        session = self.appbuilder.session
        label = f"{first.year}年{first.month}月"
        existing = session.query(BulletinSnapshot).filter_by(month=month).first()
        if existing is not None:
            flash(f"{label}的通报已于 {local_datetime(existing.published_at)} 由 "
                  f"{existing.published_by} 发布，发布后不可修改或重复发布", "danger")
            return back
        last = first.replace(day=calendar.monthrange(first.year, first.month)[1])
        as_of = min(last, today)
        data, body = build_bulletin(session, self.appbuilder.sm.enabled_plugins(), as_of)
        digest = hashlib.sha256(body).hexdigest()
        session.add(BulletinSnapshot(
            month=month, as_of=as_of, data=data, workbook=body, sha256=digest,
            published_at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
            published_by=g.user.username))
        try:
            session.commit()
        except sa.exc.IntegrityError:  # a second click or a colleague was faster
            session.rollback()
            flash(f"{label}的通报已经发布，发布后不可修改或重复发布", "danger")
            return back
        flash(f"已发布{label}通报（判断日期 {local_date(as_of)}，SHA-256 {digest[:16]}…）",
              "success")
        return back

    @expose("/<int:pk>.xlsx")
    @has_access
    @permission_name("list")
    def download(self, pk: int) -> Response:
        """The workbook exactly as published."""
        snapshot = self.appbuilder.session.get(BulletinSnapshot, pk)
        if snapshot is None:
            abort(404)
        return xlsx_download(snapshot.workbook, f"bulletin-{snapshot.month}-published.xlsx")


class DistrictRecordView(SaveErrorMessages, ModelView):
    """工作记录: the office's meeting minutes and supervision records (六: a monthly work
    meeting, coordination meetings as needed, inspections). Added and corrected by the
    district office, read by the platform admin; kept (no delete)."""

    datamodel = SQLAInterface(DistrictRecord)
    route_base = "/district/records"
    om_roles = OFFICE_KEEPS
    base_permissions = list(OFFICE_KEEPS[DISTRICT_VIEWER])
    list_title = show_title = "工作记录"
    add_title = "新增工作记录"
    edit_title = "修改工作记录"
    list_columns = ["held_on", "kind_label", "title", "concerns", "follow_up_by",
                    "recorded_by"]
    show_columns = ["held_on", "kind_label", "title", "participants", "concerns", "content",
                    "follow_up_by", "recorded_by", "recorded_at"]
    add_columns = edit_columns = ["kind", "held_on", "title", "participants", "concerns",
                                  "content", "follow_up_by"]
    search_columns = ["kind", "held_on", "title", "concerns"]
    label_columns = {"held_on": "日期", "kind": "类型", "kind_label": "类型", "title": "事由",
                     "participants": "参加人员", "concerns": "涉及办事处或单位",
                     "content": "议定事项或督导发现的问题", "follow_up_by": "落实或整改时限",
                     "recorded_by": "记录人", "recorded_at": "记录时间"}
    description_columns = {"kind": "meeting 工作例会、coordination 专题协调会、"
                                   "inspection 督导检查"}
    formatters_columns = {"held_on": local_date, "follow_up_by": local_date,
                          "recorded_at": local_datetime}
    base_order = ("held_on", "desc")
    related_views = [ActionItemView]

    def pre_add(self, item: DistrictRecord) -> None:
        today = beijing_today()
        if item.kind not in RECORD_KINDS:
            raise ValueError(f"类型只能是：{'、'.join(RECORD_KINDS.values())}")
        if item.held_on is None or item.held_on > today:
            raise ValueError("日期不能晚于今天：记录的是已经开过的会、已经做过的督导")
        if not (item.title or "").strip() or not (item.content or "").strip():
            raise ValueError("事由和议定事项（或督导发现的问题）必须填写")
        if item.follow_up_by is not None and item.follow_up_by < item.held_on:
            raise ValueError("落实或整改时限不能早于会议或督导的日期")
        item.recorded_by = g.user.username
        item.recorded_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)

    def pre_update(self, item: DistrictRecord) -> None:
        recorded_by, recorded_at = item.recorded_by, item.recorded_at
        self.pre_add(item)
        item.recorded_by, item.recorded_at = recorded_by, recorded_at


@hookimpl
def onemeter_register_views(registrar: Any) -> None:
    registrar.add_view(DistrictRollupView, "改造汇总", category=CATEGORY, icon="fa-bar-chart",
                       category_icon="fa-flag-checkered")
    registrar.add_view(DistrictOverdueView, "逾期与倒排工期", category=CATEGORY,
                       icon="fa-clock-o")
    registrar.add_view(DistrictRankingView, "考核排名", category=CATEGORY, icon="fa-trophy")
    registrar.add_view(BulletinSnapshotView, "已发布通报", category=CATEGORY,
                       icon="fa-archive")
    registrar.add_view(DistrictRecordView, "工作记录", category=CATEGORY, icon="fa-book")
    # Also listed and added on each record's page (related view).
    registrar.add_view(ActionItemView, "议定事项", category=CATEGORY, icon="fa-tasks")
    registrar.add_view(SupervisionNoticeView, "督办通知", category=CATEGORY, icon="fa-bell")
    registrar.add_view(NoticeReplyView, "督办事项", icon="fa-bell")
