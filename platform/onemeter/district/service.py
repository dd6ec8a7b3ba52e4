"""What the district office reads: rollups against the plan, overdue items, the backward
schedule (倒排工期), rankings for the annual assessment (年度目标考核) and chart series.

Every query runs under the caller's tenant scope (ORM criteria and row-level security): a
sub-district's users get their own sub-district, utility staff their own utility.
"""

from __future__ import annotations

import calendar
import datetime as dt
import decimal
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from onemeter.district.models import (
    ActionItem,
    DistrictRecord,
    RollupCount,
    SupervisionNotice,
)
from onemeter.formatting import BEIJING
from onemeter.registry.categories import CATEGORIES, PHASE_YEARS
from onemeter.registry.models import Community, Developer, Household, MeterAccount, PlanTarget
from onemeter.retrofit.models import ProjectEvent, RetrofitProject, overdue_filter
from onemeter.retrofit.procedure import STATES
from onemeter.tenancy import Tenant, current_scope
from onemeter.utilities import utility_company

D = decimal.Decimal
ACCEPTED = "accepted"
NOT_STARTED = "registered"
#: Work done, waiting for the utility to accept (改造完成待接收 and its equivalents).
COMPLETED_STATES = ("completed", "inspection_passed", "verification_passed", "rectified")
assert set(COMPLETED_STATES) | {ACCEPTED, NOT_STARTED} <= set(STATES)

#: Who answers for an order past its deadline (责任单位), by the state the order left.
RESPONSIBLE_BY_STATE = {
    "developer_ordered": "开发建设单位",
    "rectification_ordered": "开发建设单位",
    "legal_rep_ordered": "开发建设单位法定代表人",
    "utility_rectification_ordered": "专营单位",
}


def phase_window(year: int) -> tuple[dt.date, dt.date]:
    """二: each phase runs from 1 January to 31 December of its year."""
    return dt.date(year, 1, 1), dt.date(year, 12, 31)


def time_elapsed(year: int | None, today: dt.date) -> D | None:
    """Share of the phase's time gone on `today` (0–1), the pace the work should keep."""
    if year is None:
        return None
    start, end = phase_window(year)
    if today < start:
        return D(0)
    if today >= end:
        return D(1)
    return D((today - start).days + 1) / D((end - start).days + 1)


@dataclass
class Figures:
    """Additive counts for one cell of a rollup (any grouping).

    Communities are counted by retrofit project (one per community × utility); households
    by meter account with that utility. Opted-out households (居民自愿不改造) stay counted
    in `households` and leave the denominator; done = 已装表 + 已立户抄表到户, not opted out.
    """

    communities: int = 0
    in_progress: int = 0
    completed: int = 0
    accepted: int = 0
    households: int = 0
    opted_out: int = 0
    installed: int = 0
    active: int = 0
    accepted_households: int = 0

    def add(self, other: Figures) -> Figures:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    @property
    def not_started(self) -> int:
        return self.communities - self.in_progress - self.completed - self.accepted

    @property
    def done(self) -> int:
        return self.installed + self.active

    @property
    def denominator(self) -> int:
        return self.households - self.opted_out


def progress_label(figures: Figures) -> str:
    """Where a community's project of one utility stands, in the clerk's words."""
    if figures.accepted:
        return "已接收"
    if figures.completed:
        return "完成待接收"
    if figures.in_progress:
        return "推进中"
    return "未启动" if figures.communities else "未建项目"


@dataclass(frozen=True)
class Plan:
    """The plan's target for a cell: communities and households (district-wide only)."""

    communities: int = 0
    households: int = 0


@dataclass(frozen=True)
class RollupKey:
    """One cell: sub-district (or None: district) × utility × phase year × category."""

    tenant_id: int | None
    utility: str
    phase_year: int | None
    category: str | None


def summary_counts(session: Session) -> sa.Subquery:
    """Per tenant × community × utility: the project's state (None: no project), accounts
    (households), opted out, installed, active.

    PostgreSQL reads the trigger-kept summary table; SQLite (embedded, small) the base rows.
    """
    if session.get_bind().dialect.name == "postgresql":
        c = RollupCount
        return (sa.select(c.tenant_id, c.community_id, c.utility, c.project_state,
                          c.accounts.label("households"), c.opted_out, c.installed, c.active)
                .subquery("counts"))
    live = live_counts()
    p = RetrofitProject
    zero = sa.literal(0)
    both = sa.union_all(
        sa.select(p.tenant_id, p.community_id, p.utility, p.state.label("project_state"),
                  zero.label("households"), zero.label("opted_out"), zero.label("installed"),
                  zero.label("active")),
        sa.select(live.c.tenant_id, live.c.community_id, live.c.utility,
                  sa.null().label("project_state"), live.c.households, live.c.opted_out,
                  live.c.installed, live.c.active)).subquery("both")
    return (sa.select(both.c.tenant_id, both.c.community_id, both.c.utility,
                      sa.func.max(both.c.project_state).label("project_state"),
                      sa.func.sum(both.c.households).label("households"),
                      sa.func.sum(both.c.opted_out).label("opted_out"),
                      sa.func.sum(both.c.installed).label("installed"),
                      sa.func.sum(both.c.active).label("active"))
            .group_by(both.c.tenant_id, both.c.community_id, both.c.utility)
            .subquery("counts"))


def live_counts() -> sa.Subquery:
    """The same figures as `summary_counts`, from 户表 and 住户 themselves."""
    opted = Household.opted_out.is_(True)
    return (sa.select(
        Household.tenant_id, Household.community_id, MeterAccount.utility,
        sa.func.count(MeterAccount.id).label("households"),
        sa.func.count(sa.case((opted, 1))).label("opted_out"),
        sa.func.count(sa.case((sa.and_(~opted, MeterAccount.status == "installed"), 1)))
        .label("installed"),
        sa.func.count(sa.case((sa.and_(~opted, MeterAccount.status == "active"), 1)))
        .label("active"))
        .join(MeterAccount, sa.and_(MeterAccount.tenant_id == Household.tenant_id,
                                    MeterAccount.household_id == Household.id))
        .group_by(Household.tenant_id, Household.community_id, MeterAccount.utility)
        .subquery("counts"))


def allowed_utilities(utilities: Iterable[str]) -> list[str]:
    """The utility codes the scope reads: utility staff get their own only."""
    own = current_scope().utility
    return [u for u in utilities if own is None or u == own]


def rollup(session: Session, utilities: Iterable[str], *, tenant_id: int | None = None,
           by_community: bool = False) -> dict[Any, Figures]:
    """Figures per (tenant, utility, phase, category) — or per (community id, utility) when
    `by_community` — for the projects and accounts the scope reads. One grouped query over
    the summary (a row per community × utility) joined to the communities."""
    codes = allowed_utilities(utilities)
    c = Community
    counts = summary_counts(session)
    state = counts.c.project_state
    if by_community:
        keys: list[Any] = [c.id.label("k1"), counts.c.utility]
    else:
        keys = [counts.c.tenant_id, counts.c.utility, c.phase_year.label("phase"),
                c.category.label("cat")]
    done = counts.c.installed + counts.c.active
    query = (sa.select(
        *keys, sa.func.count(state),
        sa.func.count(sa.case((state.notin_([NOT_STARTED, ACCEPTED, *COMPLETED_STATES]), 1))),
        sa.func.count(sa.case((state.in_(COMPLETED_STATES), 1))),
        sa.func.count(sa.case((state == ACCEPTED, 1))),
        sa.func.sum(counts.c.households), sa.func.sum(counts.c.opted_out),
        sa.func.sum(counts.c.installed), sa.func.sum(counts.c.active),
        sa.func.sum(sa.case((state == ACCEPTED, done), else_=0)))
        .select_from(counts)
        .join(c, sa.and_(c.tenant_id == counts.c.tenant_id, c.id == counts.c.community_id))
        .where(counts.c.utility.in_(codes)).group_by(*keys))
    if tenant_id is not None:
        query = query.where(counts.c.tenant_id == tenant_id)
    width = len(keys)
    result: dict[Any, Figures] = {}
    for row in session.execute(query):
        figures = Figures(*(int(v or 0) for v in row[width:]))
        if figures != Figures():
            result[_key(row[:width], by_community)] = figures
    return result


def _key(values: tuple, by_community: bool) -> Any:
    return tuple(values) if by_community else RollupKey(*values)


def totals(cells: dict[RollupKey, Figures], key: Any) -> dict[Any, Figures]:
    """Re-group rollup cells by `key(cell_key)` (e.g. per tenant, per category)."""
    out: dict[Any, Figures] = defaultdict(Figures)
    for k, figures in cells.items():
        out[key(k)].add(figures)
    return dict(out)


def plan_targets(session: Session) -> dict[tuple[str, int | None, str | None], Plan]:
    """The plan's category rows: (utility, phase, category) → Plan (stated totals left out)."""
    rows = session.scalars(sa.select(PlanTarget).where(PlanTarget.category.is_not(None)))
    out: dict[tuple[str, int | None, str | None], Plan] = defaultdict(Plan)
    for t in rows:
        key = (t.utility, t.phase_year, t.category)
        out[key] = Plan(out[key].communities + t.communities, out[key].households + t.households)
    return dict(out)


@dataclass
class DistrictRow:
    """A line of the district table: utility × phase × category, plan and figures."""

    utility: str
    phase_year: int | None
    category: str | None
    plan: Plan
    figures: Figures


def district_rows(cells: dict[RollupKey, Figures], plan: dict[tuple, Plan],
                  utilities: Iterable[str]) -> list[DistrictRow]:
    """Every plan row and every non-planned cell with figures, in the plan's order."""
    by_cell = totals(cells, lambda k: (k.utility, k.phase_year, k.category))
    codes = list(utilities)
    keys = {k for k in plan if k[0] in codes} | set(by_cell)
    order = {c: i for i, c in enumerate(CATEGORIES)}

    def sort_key(k: tuple) -> tuple:
        return (codes.index(k[0]) if k[0] in codes else 99, k[1] or 9999,
                order.get(k[2], 99))

    return [DistrictRow(k[0], k[1], k[2], plan.get(k, Plan()), by_cell.get(k, Figures()))
            for k in sorted(keys, key=sort_key)]


# --- overdue and the backward schedule ----------------------------------------------------

@dataclass(frozen=True)
class OverdueItem:
    """A project past a deadline: an order's (限期) or its phase's (年度任务)."""

    project_id: int
    tenant_id: int
    tenant_name: str
    community_id: int
    community_name: str
    utility: str
    state: str
    kind: str  # "order" or "phase"
    deadline: dt.date
    days: int
    responsible: str


def overdue_items(session: Session, today: dt.date, utilities: Iterable[str]
                  ) -> list[OverdueItem]:
    """Projects past an order's deadline (`overdue_filter`, as on 改造进度), then projects
    whose phase ended (31 December) before `today` without being accepted; oldest first."""
    codes = allowed_utilities(utilities)
    p, c = RetrofitProject, Community
    order_late = overdue_filter(today)
    phase_late = sa.and_(p.state != ACCEPTED, c.phase_year < today.year)
    query = (sa.select(p.id, p.tenant_id, Tenant.name, c.id, c.name, p.utility, p.state,
                       p.deadline, c.phase_year, sa.case((order_late, 1), else_=0),
                       Developer.name, Developer.legal_representative)
             .join(c, sa.and_(c.tenant_id == p.tenant_id, c.id == p.community_id))
             .join(Tenant, Tenant.id == p.tenant_id)
             .outerjoin(Developer, Developer.id == c.developer_id)
             .where(p.utility.in_(codes), sa.or_(order_late, phase_late)))
    items = []
    for (pid, tid, tname, cid, cname, utility, state, deadline, phase, by_order, developer,
         legal_rep) in session.execute(query):
        if by_order:
            unit = RESPONSIBLE_BY_STATE.get(state, "办事处")
            if unit == "专营单位":
                unit = utility_company(utility)
            elif unit == "开发建设单位" and developer:
                unit = f"开发建设单位（{developer}）"
            elif unit == "开发建设单位法定代表人" and legal_rep:
                unit = f"开发建设单位法定代表人（{legal_rep}）"
            kind, due = "order", deadline
        else:
            # 三: the sub-district is the responsible subject (责任主体) of its phase's work.
            kind, due, unit = "phase", phase_window(phase)[1], f"{tname}（责任主体）"
        items.append(OverdueItem(pid, tid, tname, cid, cname, utility, state, kind, due,
                                 (today - due).days, unit))
    items.sort(key=lambda i: (i.deadline, i.tenant_name, i.community_name, i.utility))
    return items


@dataclass(frozen=True)
class SupervisionItem:
    """An action item still open past its deadline (议定事项逾期) or a supervision notice
    unanswered past its reply date (督办未答复), addressed to a sub-district or a unit."""

    kind: str  # "action" or "notice"
    pk: int
    tenant_id: int | None
    tenant_name: str | None
    unit: str
    title: str
    reference: str  # the notice's number, or the record the item was decided in
    deadline: dt.date
    days: int

    @property
    def kind_label(self) -> str:
        return "督办未答复" if self.kind == "notice" else "议定事项逾期"


def supervision_overdue(session: Session, today: dt.date) -> list[SupervisionItem]:
    """Notices unanswered and action items open after their date, as things stood on
    `today` (a reply or closing after `today` did not exist yet); oldest first.

    Read under the caller's scope: a sub-district gets what is addressed to it, the district
    scopes everything (rows addressed to other units too). Utility staff get none: these are
    the office's dealings with sub-districts and units, not a utility's figures.
    """
    if current_scope().utility is not None:
        return []
    n, a, r = SupervisionNotice, ActionItem, DistrictRecord
    notices = (sa.select(n.id, n.tenant_id, Tenant.name, n.unit, n.subject, n.number,
                         n.reply_due)
               .outerjoin(Tenant, Tenant.id == n.tenant_id)
               .where(n.issued_on <= today, n.reply_due < today,
                      sa.or_(n.replied_on.is_(None), n.replied_on > today)))
    actions = (sa.select(a.id, a.tenant_id, Tenant.name, a.unit, a.text, r.title, a.deadline)
               .join(r, r.id == a.record_id)
               .outerjoin(Tenant, Tenant.id == a.tenant_id)
               .where(r.held_on <= today, a.deadline < today,
                      sa.or_(a.closed_on.is_(None), a.closed_on > today)))
    items = []
    for kind, query in (("notice", notices), ("action", actions)):
        for pk, tid, tname, unit, title, reference, due in session.execute(query):
            items.append(SupervisionItem(kind, pk, tid, tname, tname or unit or "", title,
                                         reference, due, (today - due).days))
    items.sort(key=lambda i: (i.deadline, i.unit, i.kind, i.pk))
    return items


def months_left(year: int, today: dt.date) -> int:
    """Calendar months from `today`'s month to December of `year`, both counted; 0 after."""
    if today > phase_window(year)[1]:
        return 0
    if today.year < year:
        return 12 + 12 * (year - today.year - 1) + (12 - today.month + 1)
    return 12 - today.month + 1


@dataclass(frozen=True)
class ScheduleRow:
    """倒排工期 for one utility × phase: what is left, the monthly rate needed to finish by
    31 December, and the rate achieved over the last three months (by acceptance)."""

    utility: str
    phase_year: int
    plan: Plan
    accepted: int
    done: int
    months_left: int
    accepted_recent: int
    accepted_households_recent: int

    @property
    def remaining_communities(self) -> int:
        return max(self.plan.communities - self.accepted, 0)

    @property
    def remaining_households(self) -> int:
        return max(self.plan.households - self.done, 0)

    def needed(self, remaining: int) -> D | None:
        """Per month to finish on time; None when the phase is over (no month left)."""
        return (D(remaining) / self.months_left).quantize(D("0.1"), decimal.ROUND_HALF_UP) \
            if self.months_left else None

    @property
    def needed_communities(self) -> D | None:
        return self.needed(self.remaining_communities)

    @property
    def needed_households(self) -> D | None:
        return self.needed(self.remaining_households)

    @property
    def achieved_communities(self) -> D:
        return (D(self.accepted_recent) / 3).quantize(D("0.1"), decimal.ROUND_HALF_UP)

    @property
    def achieved_households(self) -> D:
        return (D(self.accepted_households_recent) / 3).quantize(D("0.1"),
                                                                  decimal.ROUND_HALF_UP)

    @property
    def on_track(self) -> bool | None:
        """Whether the recent pace finishes on time; None when nothing is left to judge."""
        if not self.remaining_communities and not self.remaining_households:
            return True
        if not self.months_left:
            return False
        return self.achieved_communities >= (self.needed_communities or 0)


def _utc_bounds(start: dt.date, end: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """Beijing calendar days [start, end) as naive-UTC bounds (events are stored in UTC)."""
    def utc(day: dt.date) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(), BEIJING).astimezone(dt.UTC).replace(
            tzinfo=None)
    return utc(start), utc(end)


def accepted_events(session: Session, utilities: Iterable[str], since: dt.date | None = None
                    ) -> list[tuple[dt.datetime, int, str, int | None, str | None]]:
    """(when, tenant, utility, phase, category) of every acceptance (接收) the scope reads."""
    codes = allowed_utilities(utilities)
    e, p, c = ProjectEvent, RetrofitProject, Community
    query = (sa.select(e.at, e.tenant_id, p.utility, c.phase_year, c.category, e.project_id)
             .join(p, sa.and_(p.tenant_id == e.tenant_id, p.id == e.project_id))
             .join(c, sa.and_(c.tenant_id == p.tenant_id, c.id == p.community_id))
             .where(e.to_state == ACCEPTED, p.utility.in_(codes)))
    if since is not None:
        query = query.where(e.at >= _utc_bounds(since, since)[0])
    return [tuple(r) for r in session.execute(query)]


def backward_schedule(session: Session, cells: dict[RollupKey, Figures],
                      plan: dict[tuple, Plan], utilities: Iterable[str], today: dt.date
                      ) -> list[ScheduleRow]:
    """One row per utility × phase of the plan, with the pace needed and the pace achieved."""
    codes = allowed_utilities(utilities)
    since = today - dt.timedelta(days=91)
    p = RetrofitProject
    counts = summary_counts(session)
    phase = Community.phase_year.label("phase")
    recent = (sa.select(p.utility, phase, sa.func.count(sa.distinct(p.id)),
                        sa.func.coalesce(sa.func.sum(counts.c.installed + counts.c.active), 0))
              .select_from(ProjectEvent)
              .join(p, sa.and_(p.tenant_id == ProjectEvent.tenant_id,
                               p.id == ProjectEvent.project_id))
              .join(Community, sa.and_(Community.tenant_id == p.tenant_id,
                                       Community.id == p.community_id))
              .outerjoin(counts, sa.and_(counts.c.tenant_id == p.tenant_id,
                                         counts.c.community_id == p.community_id,
                                         counts.c.utility == p.utility))
              .where(ProjectEvent.to_state == ACCEPTED, p.state == ACCEPTED,
                     ProjectEvent.at >= _utc_bounds(since, since)[0], p.utility.in_(codes))
              .group_by(p.utility, phase))
    recent_by = {(u, y): (int(n), int(h)) for u, y, n, h in session.execute(recent)}
    by_phase = totals(cells, lambda k: (k.utility, k.phase_year))
    rows = []
    for utility in codes:
        for year in PHASE_YEARS:
            target = Plan(*(sum(getattr(v, f) for k, v in plan.items()
                                if k[0] == utility and k[1] == year)
                            for f in ("communities", "households")))
            figures = by_phase.get((utility, year), Figures())
            if not target.communities and not figures.communities:
                continue
            n, h = recent_by.get((utility, year), (0, 0))
            rows.append(ScheduleRow(utility, year, target, figures.accepted, figures.done,
                                    months_left(year, today), n, h))
    return rows


# --- rankings for the annual assessment ---------------------------------------------------

#: The assessment formula, shown on the page as written here.
SCORE_FORMULA = ("得分 = 户完成率 × 50 + 小区接收率 × 30 + （1 − 逾期率）× 20（满分 100）；"
                 "户完成率 = 已完成户数 ÷（摸底户数 − 自愿不改造户数），"
                 "小区接收率 = 已接收小区数 ÷ 改造项目数，"
                 "逾期率 = 逾期事项数 ÷ 改造项目数（改造项目按小区 × 公用事业计；逾期事项含"
                 "逾期的改造项目，以及发给该办事处、逾期未办结的议定事项和逾期未答复的督办通知）")


@dataclass(frozen=True)
class Ranking:
    """One sub-district's line in the assessment ranking."""

    rank: int
    tenant_id: int
    tenant_name: str
    figures: Figures
    overdue: int
    accepted_last_30: int
    accepted_prior_30: int
    score: D

    @property
    def trend(self) -> int:
        """Acceptances in the last 30 days minus those in the 30 days before."""
        return self.accepted_last_30 - self.accepted_prior_30


def assessment_score(figures: Figures, overdue: int) -> D:
    """The formula of SCORE_FORMULA, in Decimal, one decimal place, half up.

    Overdue items weigh as a share of the projects, so a large sub-district is not
    punished for its size; with no project at all the score is 0.
    """
    if not figures.communities:
        return D("0.0")
    households = D(figures.done) / figures.denominator if figures.denominator else D(0)
    communities = D(figures.accepted) / figures.communities
    late = min(D(overdue) / figures.communities, D(1))
    score = households * 50 + communities * 30 + (1 - late) * 20
    return score.quantize(D("0.1"), decimal.ROUND_HALF_UP)


def rankings(session: Session, cells: dict[RollupKey, Figures],
             overdue: Iterable[OverdueItem | SupervisionItem], events: list[tuple],
             tenants: list[tuple[int, str]], today: dt.date) -> list[Ranking]:
    """Sub-districts by score (highest first), ties by name; every readable tenant listed.

    `overdue`: the projects past a deadline and the supervision items (`supervision_overdue`);
    each counts for the sub-district it is addressed to (those to other units for none)."""
    per_tenant = totals(cells, lambda k: k.tenant_id)
    late = defaultdict(int)
    for item in overdue:
        late[item.tenant_id] += 1
    lower, middle = _utc_bounds(today - dt.timedelta(days=59), today - dt.timedelta(days=29))
    last, prior = defaultdict(int), defaultdict(int)
    for at, tenant, *_ in events:
        if at >= middle:
            last[tenant] += 1
        elif at >= lower:
            prior[tenant] += 1
    scored = sorted(
        ((assessment_score(per_tenant.get(t, Figures()), late[t]), name, t)
         for t, name in tenants), key=lambda s: (-s[0], s[1]))
    return [Ranking(i, t, name, per_tenant.get(t, Figures()), late[t], last[t], prior[t], score)
            for i, (score, name, t) in enumerate(scored, start=1)]


# --- chart series -------------------------------------------------------------------------

def accepted_per_month(session: Session, utilities: Iterable[str]) -> dict[tuple[str, str], int]:
    """(utility, "YYYY-MM" in Beijing time) → communities accepted that month, counted in SQL
    (events are stored in naive UTC; Beijing is UTC+8 all year)."""
    codes = allowed_utilities(utilities)
    e, p = ProjectEvent, RetrofitProject
    if session.get_bind().dialect.name == "postgresql":
        month = sa.func.to_char(e.at + sa.text("interval '8 hours'"), "YYYY-MM")
    else:
        month = sa.func.strftime("%Y-%m", e.at, "+8 hours")
    month = month.label("month")
    query = (sa.select(p.utility, month, sa.func.count(e.id))
             .join(p, sa.and_(p.tenant_id == e.tenant_id, p.id == e.project_id))
             .where(e.to_state == ACCEPTED, p.utility.in_(codes))
             .group_by(p.utility, month))
    return {(utility, m): int(n) for utility, m, n in session.execute(query)}


def monthly_acceptances(per_month: dict[tuple[str, str], int], today: dt.date,
                        utilities: Iterable[str]) -> dict[str, Any]:
    """Communities accepted per month and cumulated, per utility, from the plan's issue
    (July 2021) or the first acceptance if earlier, to `today`'s month."""
    first = dt.date(2021, 7, 1)
    for _utility, month in per_month:
        year, number = (int(x) for x in month.split("-"))
        first = min(first, dt.date(year, number, 1))
    labels = []
    cursor = first
    while cursor <= today:
        labels.append(f"{cursor.year}-{cursor.month:02d}")
        cursor += dt.timedelta(days=calendar.monthrange(cursor.year, cursor.month)[1])
    series = {}
    for utility in utilities:
        counts = [per_month.get((utility, m), 0) for m in labels]
        running, cumulated = 0, []
        for n in counts:
            running += n
            cumulated.append(running)
        series[utility] = {"per_month": counts, "cumulated": cumulated}
    return {"months": labels, "series": series}


@dataclass
class Dashboard:
    """Everything the rollup page shows, computed once per request."""

    today: dt.date
    utilities: dict[str, str]
    tenants: list[tuple[int, str]]
    cells: dict[RollupKey, Figures]
    plan: dict[tuple, Plan]
    rows: list[DistrictRow] = field(default_factory=list)
    per_tenant: dict[int, Figures] = field(default_factory=dict)
    per_month: dict[tuple[str, str], int] = field(default_factory=dict)


def dashboard(session: Session, utilities: dict[str, str], tenants: list[tuple[int, str]],
              today: dt.date) -> Dashboard:
    """The rollup page's data: cells, plan, district rows, per-tenant totals, acceptances
    per month."""
    cells = rollup(session, utilities)
    plan = plan_targets(session)
    codes = allowed_utilities(utilities)
    return Dashboard(today, {c: utilities[c] for c in codes}, tenants, cells, plan,
                     district_rows(cells, plan, codes),
                     totals(cells, lambda k: k.tenant_id),
                     accepted_per_month(session, codes))
