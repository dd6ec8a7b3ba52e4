"""The demo district (`onemeter demo load`): the plan's numbers, every state, legal histories.

One full-size load (the plan's 190 + 118 communities, 74,400 accounts) on the run's database,
in a session of its own that is rolled back at the end, so no other test sees the demo. The
expected numbers are read from the plan's TOML, never written here.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from sqlalchemy.orm import Session

from onemeter.cli import main
from onemeter.database import db
from onemeter.demo import (
    ALREADY_LOADED,
    DEMO_CONTACT,
    DemoReport,
    DemoTenant,
    build_demo,
    demo_targets,
    load_demo,
)
from onemeter.registry.categories import CATEGORIES, derive_category, phase_of
from onemeter.registry.models import (
    DEVELOPER_STATUSES,
    Community,
    Developer,
    Household,
    MeterAccount,
    check_credit_code,
)
from onemeter.registry.normalize import household_key
from onemeter.registry.plan import PLAN_FILE, plan_totals_check, read_plan
from onemeter.retrofit import procedure
from onemeter.retrofit.models import (
    ProjectCharge,
    ProjectEvent,
    RetrofitProject,
    overdue_projects,
)
from onemeter.security import TENANT_ADMIN, TENANT_STAFF, UTILITY_STAFF
from onemeter.tenancy import Tenant, TenantScope, use_scope
from onemeter.utilities import utility_spec
from tests.support.stack import TEST_DB

TODAY = dt.date(2026, 11, 25)
MODELS = (Developer, Community, Household, MeterAccount, RetrofitProject, ProjectEvent,
          ProjectCharge)


@pytest.fixture(scope="module")
def demo(app: Flask) -> Iterator[SimpleNamespace]:
    """The demo loaded at full size into a session that is rolled back afterwards.

    `before[Model]`: the largest id before the load (rows of other tests are older). No app
    context stays pushed between tests (a command would run against the pushed app).
    """
    with app.app_context():
        session = Session(bind=db.engine)
    try:
        with use_scope(TenantScope.all_read_only(), session):
            before = {m: session.scalar(sa.select(sa.func.coalesce(sa.func.max(m.id), 0)))
                      for m in MODELS}
            tenants = {t.code: t.id for t in session.scalars(sa.select(Tenant))}
        with app.app_context():
            report = load_demo(session, today=TODAY)
        yield SimpleNamespace(app=app, session=session, report=report, before=before,
                              tenants=tenants)
    finally:
        session.rollback()
        session.close()


def rows(demo: SimpleNamespace, model: Any, *columns: Any) -> list[Any]:
    """The demo's rows of `model` (or the given columns of them), read across tenants."""
    statement = sa.select(*(columns or (model,))).where(model.id > demo.before[model])
    with use_scope(TenantScope.all_read_only(), demo.session):
        result = demo.session.execute(statement)
        return list(result.scalars() if not columns else result)


def plan_rows() -> list[Any]:
    return [r for r in read_plan(PLAN_FILE)[1] if r.category is not None]


def test_load_reports_the_plan_numbers(demo: SimpleNamespace) -> None:
    report: DemoReport = demo.report
    assert report.loaded and report.scale == 1
    by_utility: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for line in report.per_tenant:
        by_utility[line.utility][0] += line.communities
        by_utility[line.utility][1] += line.households
    for row in plan_rows():
        by_utility[row.utility][0] -= row.communities
        by_utility[row.utility][1] -= row.households
    assert all(v == [0, 0] for v in by_utility.values())
    assert report.rows["meter_accounts"] == sum(r.households for r in plan_rows())
    text = "\n".join(report.lines())
    assert "全区合计" in text and "逾期项目" in text
    print(f"\n[demo, {TEST_DB}] {report.total_rows:,} rows in {report.seconds:.1f} s")


def test_communities_and_households_per_utility_and_category_are_the_plans(
        demo: SimpleNamespace) -> None:
    # Counted in Python: in the load's own transaction the tables have no statistics yet,
    # and PostgreSQL would plan these joins for empty tables.
    category = dict(rows(demo, Community, Community.id, Community.derived_category))
    community_of = dict(rows(demo, Household, Household.id, Household.community_id))
    project_counts = Counter((utility, category[community_id]) for utility, community_id in
                             rows(demo, RetrofitProject, RetrofitProject.utility,
                                  RetrofitProject.community_id))
    account_counts = Counter((utility, category[community_of[household_id]])
                             for utility, household_id in rows(
                                 demo, MeterAccount, MeterAccount.utility,
                                 MeterAccount.household_id))
    expected_projects = {(r.utility, r.category): r.communities for r in plan_rows()}
    expected_accounts = {(r.utility, r.category): r.households for r in plan_rows()}
    assert dict(project_counts) == expected_projects
    assert dict(account_counts) == expected_accounts
    # The category rows, not the plan's stated totals (189 / 32,000), are what the demo
    # holds: the plan check still reports the plan's own difference.
    described = [d.describe() for d in plan_totals_check(read_plan(PLAN_FILE)[1])]
    assert any("供水 小区数" in d and "190" in d and "189" in d for d in described)
    assert any("供电 户数" in d and "32,400" in d and "32,000" in d for d in described)


def test_each_community_derives_its_category_and_has_the_first_n_households_in_scope(
        demo: SimpleNamespace) -> None:
    communities = rows(demo, Community)
    assert communities
    for community in communities:
        assert community.derived_category == derive_category(
            developer_committed=community.developer_committed,
            old_renovation=community.old_renovation, delivery_date=community.delivery_date,
            scattered=community.scattered)
        assert community.derived_phase == phase_of(community.derived_category)
        assert community.category_override is None and community.phase_override is None
    households: dict[int, list[int]] = defaultdict(list)
    for pk, community_id in rows(demo, Household, Household.id, Household.community_id):
        households[community_id].append(pk)
    community_of = {pk: c for c, pks in households.items() for pk in pks}
    by_community: dict[tuple[int, str], set[int]] = defaultdict(set)
    for household_id, utility in rows(demo, MeterAccount, MeterAccount.household_id,
                                      MeterAccount.utility):
        by_community[(community_of[household_id], utility)].add(household_id)
    for community in communities:
        ids = sorted(households[community.id])
        sizes = [len(v) for (c, _), v in by_community.items() if c == community.id]
        assert sizes and len(ids) == max(sizes)
        for utility in ("water", "electricity"):
            owned = by_community.get((community.id, utility), set())
            assert owned == set(ids[:len(owned)])  # the first N households, in order


def test_every_state_of_the_procedure_occurs(demo: SimpleNamespace) -> None:
    states = Counter(state for (state,) in rows(demo, RetrofitProject, RetrofitProject.state))
    assert set(states) == set(procedure.STATES)
    assert sum(states.values()) == sum(r.communities for r in plan_rows())


def _actor(spec: procedure.TransitionSpec, project: Any) -> procedure.Actor:
    if spec.actor == procedure.UTILITY:
        return procedure.Actor(frozenset({UTILITY_STAFF}), utility_code=project.utility)
    role = TENANT_ADMIN if spec.actor == procedure.DISTRICT_BODY else TENANT_STAFF
    return procedure.Actor(frozenset({role}), tenant_id=project.tenant_id)


def test_every_history_replays_legally_through_the_procedure(demo: SimpleNamespace) -> None:
    events: dict[int, list[Any]] = defaultdict(list)
    for event in sorted(rows(demo, ProjectEvent), key=lambda e: (e.project_id, e.at, e.id)):
        events[event.project_id].append(event)
    projects = rows(demo, RetrofitProject)
    earliest = dt.datetime(2021, 7, 7)
    for project in projects:
        holder = SimpleNamespace(state=procedure.INITIAL_STATE, tenant_id=project.tenant_id,
                                 utility=project.utility, deadline=None, fine_amount=None,
                                 online_payment_enabled_at=None, maintenance_first=None,
                                 no_new_lines=None)
        for event in events[project.id]:
            assert earliest <= event.at <= dt.datetime.combine(TODAY, dt.time())
            assert event.user_id is not None and event.actor  # the test users of each role
            spec = procedure.TRANSITIONS[event.transition]
            inputs = {k: getattr(event, k) for k in spec.inputs
                      if k not in procedure.FLAG_INPUTS and getattr(event, k) is not None}
            day = (event.at + dt.timedelta(hours=8)).date()
            step = procedure.fire(holder, event.transition, _actor(spec, project), inputs,
                                  today=day, now=event.at)
            assert (step.from_state, step.to_state) == (event.from_state, event.to_state)
        assert holder.state == project.state
        assert holder.deadline == project.deadline
        assert holder.fine_amount == project.fine_amount
        assert holder.online_payment_enabled_at == project.online_payment_enabled_at
    assert sum(len(v) for v in events.values()) == demo.report.rows["events"]


def test_overdue_and_pending_deadlines_and_fines(demo: SimpleNamespace) -> None:
    with use_scope(TenantScope.all_read_only(), demo.session):
        overdue = [p for p in overdue_projects(demo.session, TODAY)
                   if p.id > demo.before[RetrofitProject]]
    assert len(overdue) >= 10 and len(overdue) == demo.report.overdue
    projects = rows(demo, RetrofitProject)
    pending = [p for p in projects if p.state in procedure.DEADLINE_STATES
               and p.deadline is not None and p.deadline >= TODAY]
    assert pending
    assert all(p.deadline is not None for p in projects if p.state in procedure.DEADLINE_STATES)
    fined = [p for p in projects if p.fine_amount is not None]
    assert any(p.state == "fined" for p in fined)
    for project in fined:
        assert isinstance(project.fine_amount, decimal.Decimal)
        assert procedure.FINE_MIN <= project.fine_amount <= procedure.FINE_MAX
    online = [p for p in projects if p.online_payment_enabled_at is not None]
    assert all(p.online_payment_enabled_at is not None for p in projects
               if p.state == "accepted") and online


def test_opt_outs_are_a_small_share_with_reasons(demo: SimpleNamespace) -> None:
    households = rows(demo, Household)
    opted = [h for h in households if h.opted_out]
    assert 0.005 <= len(opted) / len(households) <= 0.03
    assert all(h.optout_reason and h.opted_out_at for h in opted)
    assert all(h.id_number is None for h in households)
    assert all(h.natural_key == household_key(h.building, h.unit, h.room) for h in households)
    assert all(h.phone is None or re.fullmatch(r"1[3-9]\d{9}", h.phone) for h in households)
    opted_ids = {h.id for h in opted}
    statuses = {status for household_id, status in rows(
        demo, MeterAccount, MeterAccount.household_id, MeterAccount.status)
        if household_id in opted_ids}
    assert statuses == {"surveyed"}


def test_every_tenant_has_data_and_sees_only_its_own(demo: SimpleNamespace) -> None:
    session = demo.session
    everyone = {m: Counter(tid for (tid,) in rows(demo, m, m.tenant_id))
                for m in (Community, Household, MeterAccount, RetrofitProject, ProjectEvent)}
    assert set(everyone[Household]) == set(demo.tenants.values())
    shares = everyone[Household]
    assert len(set(shares.values())) == len(shares)  # unequal workloads
    assert shares[demo.tenants["pingqiao"]] == max(shares.values())
    for tenant_id in demo.tenants.values():
        with use_scope(TenantScope.tenant(tenant_id), session):
            for model, counts in everyone.items():
                assert counts[tenant_id] > 0
                seen = session.execute(sa.select(model.tenant_id, sa.func.count(model.id))
                                       .where(model.id > demo.before[model])
                                       .group_by(model.tenant_id)).all()
                assert seen == [(tenant_id, counts[tenant_id])]
                if TEST_DB == "postgresql":  # row-level security, without the ORM filter
                    table = model.__table__
                    raw = session.execute(sa.select(sa.func.count()).select_from(table)
                                          .where(table.c.id > demo.before[model])).scalar()
                    assert raw == counts[tenant_id]


def test_a_second_load_inserts_nothing(demo: SimpleNamespace) -> None:
    counts = {m: len(rows(demo, m, m.id)) for m in MODELS}
    with demo.app.app_context():
        again = load_demo(demo.session, today=TODAY)
    assert not again.loaded and again.message == ALREADY_LOADED
    assert again.lines() == [ALREADY_LOADED]
    assert {m: len(rows(demo, m, m.id)) for m in MODELS} == counts


def test_accounts_follow_the_utility_specs_and_the_projects(demo: SimpleNamespace) -> None:
    state_of = {(p.tenant_id, p.community_id, p.utility): p.state
                for p in rows(demo, RetrofitProject)}
    community_of = dict(rows(demo, Household, Household.id, Household.community_id))
    accounts = rows(demo, MeterAccount)
    with demo.app.app_context():
        specs = {code: utility_spec(code) for code in ("water", "electricity")}
    numbers = Counter((a.tenant_id, a.utility, a.account_no) for a in accounts if a.account_no)
    assert numbers and max(numbers.values()) == 1
    seen = Counter()
    for account in accounts:
        spec = specs[account.utility]
        state = state_of[(account.tenant_id, community_of[account.household_id],
                          account.utility)]
        seen[(state, account.status)] += 1
        if account.account_no is not None:
            assert spec.check_account_no(account.account_no) == account.account_no
        if account.meter_no is not None:
            assert spec.check_meter_no(account.meter_no) == account.meter_no
        assert account.rating is None or account.rating in spec.rating_choices
        if state == "registered":
            assert account.status == "surveyed"
        if account.status == "active":
            assert account.online_payment_on is not None and account.account_no
        if account.status != "surveyed":
            assert account.meter_no
    accepted = Counter({s: n for (st, s), n in seen.items() if st == "accepted"})
    assert accepted["active"] > 0.8 * sum(accepted.values())
    assert {"surveyed", "installed", "active"} <= {s for (_, s) in seen}


def test_charges_flag_the_cancelled_fees_only(demo: SimpleNamespace) -> None:
    utility_of = dict(rows(demo, RetrofitProject, RetrofitProject.id, RetrofitProject.utility))
    charges = rows(demo, ProjectCharge)
    with demo.app.app_context():
        specs = {code: utility_spec(code) for code in ("water", "electricity")}
    flagged = [c for c in charges if c.prohibited_fee]
    legitimate = [c for c in charges if not c.prohibited_fee]
    assert flagged and legitimate
    for charge in charges:
        spec = specs[utility_of[charge.project_id]]
        assert charge.prohibited_fee == spec.cancelled_fee(charge.name)
        assert isinstance(charge.amount, decimal.Decimal) and charge.amount > 0
    assert any("材料费" in c.name for c in legitimate)


def test_developers_are_synthetic_valid_and_drive_the_tracing_path(
        demo: SimpleNamespace) -> None:
    developers = {d.id: d for d in rows(demo, Developer)}
    assert len(developers) == demo.report.rows["developers"] >= 50
    assert all(check_credit_code(d.credit_code) == d.credit_code for d in developers.values())
    assert all(d.contact == DEMO_CONTACT for d in developers.values())
    statuses = Counter(d.status for d in developers.values())
    assert set(statuses) == set(DEVELOPER_STATUSES)
    assert statuses["active"] > len(developers) / 2
    community = {c.id: c for c in rows(demo, Community)}
    steps: dict[int, list[str]] = defaultdict(list)
    for event in sorted(rows(demo, ProjectEvent), key=lambda e: (e.at, e.id)):
        steps[event.project_id].append(event.transition)
    gone = [p for p in rows(demo, RetrofitProject)
            if (owner := developers.get(community[p.community_id].developer_id)) is not None
            and owner.status != "active" and not community[p.community_id].old_renovation]
    assert gone
    for project in gone:  # work done only after the developer or its representative was found
        done = steps[project.id]
        if "record_completed" in done:
            assert "request_tracing" in done[:done.index("record_completed")]
        assert "record_rectified" not in done
    assert any("refer_to_litigation" in steps[p.id] for p in gone)
    assert sum("request_tracing" in steps[p.id] for p in gone) > len(gone) / 2
    # Plugins add their demo rows through onemeter_demo_loaded: every referred project of a
    # sub-district enabling litigation (all four in tenants/*.toml) is filed under a case.
    referred = {pid for pid, done in steps.items() if "refer_to_litigation" in done}
    assert demo.report.rows["诉讼立卷项目"] == len(referred) > 0
    assert "插件演示数据：" in "\n".join(demo.report.lines())
    # funding gives every project without funding an estimate (other tests' too)
    assert demo.report.rows["资金记录"] >= demo.report.rows["projects"]
    assert demo.report.rows["奖补测算"] == 1


def _tenants() -> list[DemoTenant]:
    return [DemoTenant(i, code, name, ("water", "electricity")) for i, (code, name) in
            enumerate((("pingqiao", "平桥办事处"), ("pingxi", "平西办事处"),
                       ("pingdong", "平东办事处"), ("zhenleishan", "震雷山街道办事处")), 1)]


def test_the_generator_is_deterministic_and_scales(app: Flask) -> None:
    with app.app_context():
        specs = {code: utility_spec(code) for code in ("water", "electricity")}

        def build(seed: int, scale: float) -> Any:
            return build_demo(_tenants(), specs, seed=seed, scale=scale, today=TODAY)

        def fingerprint(data: Any) -> list[Any]:
            return [(c.tenant.code, c.name, c.delivery_date, sorted(c.in_scope.items()))
                    for c in data.communities] + [
                (p.utility, p.state, p.deadline, [(e.transition, e.at) for e in p.events])
                for p in data.projects]

        small = build(7, 0.1)
        assert fingerprint(small) == fingerprint(build(7, 0.1))
        assert fingerprint(small) != fingerprint(build(8, 0.1))
        counts: Counter[tuple[str, str]] = Counter()
        households: Counter[tuple[str, str]] = Counter()
        for project in small.projects:
            key = (project.utility, project.community.category)
            counts[key] += 1
            households[key] += project.community.in_scope[project.utility]
        targets = demo_targets(0.1)
        assert {k: (counts[k], households[k]) for k in targets} == targets
        assert {p.state for p in small.projects} == set(procedure.STATES)
        assert set(CATEGORIES) == {c for _, c in targets}


def test_command_loads_once_and_prints_a_summary(
        make_app: Callable[..., Flask], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    fresh = make_app(SQLALCHEMY_DATABASE_URI=url, ONEMETER_OWNER_DATABASE_URL=url,
                     ONEMETER_APP_DB_ROLE="")
    runner = fresh.test_cli_runner()
    for args in (["db", "upgrade"], ["tenants", "sync"]):
        result = runner.invoke(main, args)
        assert result.exit_code == 0, result.output
    first = runner.invoke(main, ["demo", "load", "--scale", "0.05", "--today", "2026-11-25"])
    assert first.exit_code == 0, f"{first.output}{first.exception!r}"
    assert "演示数据已载入" in first.output and "全区合计" in first.output
    assert "平桥办事处" in first.output and "逾期项目" in first.output
    second = runner.invoke(main, ["demo", "load", "--scale", "0.05"])
    assert second.exit_code == 0 and ALREADY_LOADED in second.output
    with fresh.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        assert db.session.scalar(sa.select(sa.func.count(RetrofitProject.id))) == sum(
            n for n, _ in demo_targets(0.05).values())
