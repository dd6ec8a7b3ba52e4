"""The retrofit procedure (信平政办〔2021〕26号 五) as declared data: no database.

Every path of section 五 is walked as the roles allowed; refusals for a wrong state, a wrong
role, a missing input, a fine outside 300,000–1,000,000 元 and a deadline in the past.
"""

from __future__ import annotations

import datetime as dt
import decimal
from dataclasses import dataclass

import pytest
from flask import Flask

from onemeter.retrofit import procedure as p
from onemeter.retrofit.procedure import Actor, ProcedureRefused
from onemeter.security import (
    DISTRICT_VIEWER,
    FINANCE,
    PLATFORM_ADMIN,
    TENANT_ADMIN,
    TENANT_STAFF,
    UTILITY_STAFF,
)
from onemeter.utilities import UtilitySpec


@pytest.fixture(autouse=True)
def utility_names() -> object:
    """Utilities are named by their plugins' specs; here two declared the same way."""
    app = Flask(__name__)
    app.extensions["onemeter_utilities"] = {code: UtilitySpec(
        code=code, label=label, company=company, account_label="户号", account_pattern=r"\d+",
        account_hint="数字", meter_label="表号", meter_pattern=r"\d+", meter_hint="数字",
        rating_label="规格") for code, label, company in
        (("water", "供水", "供水公司"), ("electricity", "供电", "供电公司"))}
    with app.app_context():
        yield


TODAY = dt.date(2021, 7, 7)
NOW = dt.datetime(2021, 7, 7, 1, 0)
LATER = dt.date(2021, 9, 30)

STAFF = Actor(frozenset({TENANT_STAFF}), tenant_id=1)
ADMIN = Actor(frozenset({TENANT_ADMIN}), tenant_id=1)
WATER = Actor(frozenset({UTILITY_STAFF}), utility_code="water")
POWER = Actor(frozenset({UTILITY_STAFF}), utility_code="electricity")
OTHER_STAFF = Actor(frozenset({TENANT_STAFF}), tenant_id=2)
DISTRICT = Actor(frozenset({DISTRICT_VIEWER}))


@dataclass
class Project:
    """The attributes the procedure reads and writes, as RetrofitProject has them."""

    state: str = p.INITIAL_STATE
    tenant_id: int = 1
    utility: str = "water"
    deadline: dt.date | None = None
    fine_amount: decimal.Decimal | None = None
    online_payment_enabled_at: dt.datetime | None = None
    maintenance_first: bool | None = None
    no_new_lines: bool | None = None


def walk(project: Project, steps: list[tuple[str, Actor, dict]], today: dt.date = TODAY
         ) -> list[str]:
    states = [project.state]
    for name, actor, inputs in steps:
        step = p.fire(project, name, actor, inputs, today=today, now=NOW)
        assert step.from_state == states[-1]
        states.append(project.state)
    return states


ORDER = {"deadline": LATER, "document": "平政〔2021〕1号"}


# --- the declaration ---------------------------------------------------------------------

def test_every_state_is_reached_and_left_and_every_label_is_chinese() -> None:
    targets = {t.target for t in p.TRANSITIONS.values()}
    sources = {s for t in p.TRANSITIONS.values() if t.target for s in t.sources}
    assert set(p.STATES) - {p.INITIAL_STATE} <= targets
    assert set(p.STATES) <= sources  # no state a project could get stuck in
    for spec in p.TRANSITIONS.values():
        assert set(spec.sources) <= set(p.STATES) and (spec.target in p.STATES or not spec.target)
        assert set(spec.inputs) <= set(p.INPUT_LABELS)
        assert all("\u4e00" <= ch <= "\u9fff" for ch in spec.label[:1])
    assert p.DEADLINE_STATES == {"developer_ordered", "rectification_ordered",
                                 "utility_rectification_ordered", "legal_rep_ordered"}


def test_the_library_graph_matches_the_table() -> None:
    machine = p.RetrofitProcedure()
    assert {s.id for s in machine.states} == set(p.STATES)
    graph = {(t.source.id, t.event, t.target.id)
             for s in machine.states for t in s.transitions}
    table = {(s, t.name, t.target) for t in p.TRANSITIONS.values() if t.target
             for s in t.sources}
    assert graph == table


# --- the paths of section 五 --------------------------------------------------------------

def test_developer_committed_path_5_1() -> None:
    project = Project()
    states = walk(project, [
        ("order_developer", STAFF, ORDER),
        ("record_completed", STAFF, {"document": "竣工资料"}),
        ("accept", WATER, {"maintenance_first": True, "no_new_lines": True}),
    ])
    assert states == ["registered", "developer_ordered", "completed", "accepted"]
    assert project.deadline is None  # leaving the deadline state clears it
    assert project.maintenance_first is True and project.no_new_lines is True


def test_delivered_inspection_then_acceptance_5_2() -> None:
    project = Project(utility="electricity")
    states = walk(project, [
        ("request_inspection", ADMIN, {}),
        ("record_inspection_passed", POWER, {"maintenance_first": "on", "no_new_lines": ""}),
        ("accept", POWER, {"comment": "已接收"}),
    ])
    assert states == ["registered", "awaiting_inspection", "inspection_passed", "accepted"]
    assert project.maintenance_first is True and project.no_new_lines is False


def test_objection_verified_as_passing_then_accepted_5_2() -> None:
    project = Project()
    states = walk(project, [
        ("request_inspection", STAFF, {}),
        ("raise_objection", WATER, {"comment": "管网不符合设计要求"}),
        ("record_verification_passed", ADMIN, {"document": "质监〔2021〕8号"}),
        ("accept", WATER, {}),
    ])
    assert states[-2:] == ["verification_passed", "accepted"]


def test_objection_failed_verification_rectified_then_accepted_5_2() -> None:
    project = Project()
    states = walk(project, [
        ("request_inspection", STAFF, {}),
        ("raise_objection", WATER, {"comment": "表井渗水"}),
        ("record_verification_failed", ADMIN, {"document": "质监〔2021〕9号",
                                               "comment": "确需整改"}),
        ("order_rectification", STAFF, ORDER),
    ])
    assert project.deadline == LATER
    states += walk(project, [("record_rectified", STAFF, {}), ("accept", WATER, {})])[1:]
    assert states == ["registered", "awaiting_inspection", "objected", "verification_failed",
                      "rectification_ordered", "rectified", "accepted"]
    assert project.deadline is None


def test_utility_refusing_is_ordered_then_found_overdue_then_fined_5_2() -> None:
    project = Project(state="inspection_passed")
    walk(project, [
        ("record_utility_refusal", STAFF, {"comment": "供水公司拒不接收"}),
        ("order_utility_rectification", ADMIN, {"deadline": TODAY, "document": "平建〔2021〕3号"}),
    ])
    assert project.state == "utility_rectification_ordered" and project.deadline == TODAY
    with pytest.raises(ProcedureRefused, match="尚未届满"):
        p.fire(project, "record_utility_overdue", ADMIN, {}, today=TODAY, now=NOW)
    tomorrow = TODAY + dt.timedelta(days=1)
    states = walk(project, [
        ("record_utility_overdue", ADMIN, {}),
        ("impose_fine", ADMIN, {"amount": "300000", "document": "平建罚〔2021〕1号"}),
        ("accept", WATER, {}),
    ], today=tomorrow)
    assert states == ["utility_rectification_ordered", "utility_overdue", "fined", "accepted"]
    assert project.fine_amount == decimal.Decimal("300000.00")


def test_utility_refusing_to_maintain_after_acceptance_and_complying_in_time() -> None:
    project = Project(state="accepted")
    states = walk(project, [
        ("record_utility_refusal", ADMIN, {"comment": "拒不履行维修责任"}),
        ("order_utility_rectification", ADMIN, ORDER),
        ("accept", WATER, {"comment": "已恢复维修"}),
    ])
    assert states[-1] == "accepted" and project.fine_amount is None


def test_old_renovation_path_5_3() -> None:
    project = Project()
    states = walk(project, [
        ("include_in_renovation", STAFF, {"document": "老旧小区改造计划"}),
        ("record_completed", STAFF, {}),
        ("accept", WATER, {}),
    ])
    assert states == ["registered", "renovation_included", "completed", "accepted"]


def test_unreachable_developer_traced_ordered_refused_litigated_5_4() -> None:
    project = Project(state="developer_ordered", deadline=LATER)
    states = walk(project, [
        ("request_tracing", STAFF, {"document": "协查函〔2021〕2号"}),
        ("order_legal_representative", STAFF, ORDER),
        ("record_legal_rep_refused", STAFF, {"comment": "法定代表人拒不承担"}),
        ("refer_to_litigation", ADMIN, {"document": "起诉状"}),
    ])
    assert states == ["developer_ordered", "tracing", "legal_rep_ordered", "legal_rep_refused",
                      "litigation"]
    assert p.TRANSITIONS["refer_to_litigation"].hook == "onemeter_project_referred_to_litigation"
    walk(project, [("record_completed", STAFF, {}), ("accept", WATER, {})])
    assert project.state == "accepted"


def test_online_payment_recorded_once_in_any_state_without_moving_5_5() -> None:
    project = Project(state="objected")
    step = p.fire(project, "enable_online_payment", WATER, {}, today=TODAY, now=NOW)
    assert step.from_state == step.to_state == "objected"
    assert project.online_payment_enabled_at == NOW
    with pytest.raises(ProcedureRefused, match="已记录网上缴费"):
        p.fire(project, "enable_online_payment", WATER, {}, today=TODAY, now=NOW)
    assert "enable_online_payment" not in {t.name for t in p.available_transitions(project, WATER)}


# --- refusals ----------------------------------------------------------------------------

def test_illegal_transition_is_refused_in_chinese_and_changes_nothing() -> None:
    project = Project()
    with pytest.raises(ProcedureRefused) as exc:
        p.fire(project, "accept", WATER, {}, today=TODAY, now=NOW)
    assert str(exc.value) == "当前状态「已登记」不能执行「接收并统一管理」"
    assert project == Project()
    with pytest.raises(ProcedureRefused, match="没有「fly」这一步骤"):
        p.fire(project, "fly", STAFF, {}, today=TODAY, now=NOW)


@pytest.mark.parametrize(("name", "state", "actor", "message"), [
    ("order_developer", "registered", WATER, "只有本办事处工作人员或办事处管理员可以责令开发建设单位完成改造并移交"),
    ("order_developer", "registered", OTHER_STAFF, "只有本办事处工作人员或办事处管理员可以"),
    ("order_developer", "registered", DISTRICT, "只有本办事处工作人员或办事处管理员可以"),
    ("accept", "inspection_passed", STAFF, "只有本项目的供水公司人员可以接收并统一管理"),
    ("accept", "inspection_passed", POWER, "只有本项目的供水公司人员可以接收并统一管理"),
    ("raise_objection", "awaiting_inspection", ADMIN, "只有本项目的供水公司人员可以提出异议"),
    ("record_verification_passed", "objected", STAFF, "只有本办事处管理员（代区住房和城乡建设局录入）可以记录质量监督站核验合格"),
    ("record_verification_passed", "objected", WATER, "只有本办事处管理员"),
    ("impose_fine", "utility_overdue", STAFF, "只有本办事处管理员（代区住房和城乡建设局录入）可以对专营单位处以罚款"),
    ("impose_fine", "utility_overdue", Actor(frozenset({FINANCE})), "只有本办事处管理员"),
    ("refer_to_litigation", "legal_rep_refused", Actor(frozenset({PLATFORM_ADMIN})), "只有本办事处"),
    ("enable_online_payment", "registered", STAFF, "只有本项目的供水公司人员可以记录已实现一户一表网上缴费"),
])
def test_wrong_role_is_refused_and_changes_nothing(name: str, state: str, actor: Actor,
                                                   message: str) -> None:
    project = Project(state=state)
    inputs = {"amount": "500000", "document": "文号", "comment": "说明"}
    inputs = {k: v for k, v in inputs.items() if k in p.TRANSITIONS[name].inputs}
    with pytest.raises(ProcedureRefused) as exc:
        p.fire(project, name, actor, inputs, today=TODAY, now=NOW)
    assert str(exc.value).startswith(message)
    assert project == Project(state=state)


def test_a_utility_the_plan_does_not_name_is_shown_by_its_code() -> None:
    project = Project(state="inspection_passed", utility="gas")
    with pytest.raises(ProcedureRefused, match="只有本项目的gas单位人员可以"):
        p.fire(project, "accept", WATER, {}, today=TODAY, now=NOW)
    gas = Actor(frozenset({UTILITY_STAFF}), utility_code="gas")
    p.fire(project, "accept", gas, {}, today=TODAY, now=NOW)
    assert project.state == "accepted"


@pytest.mark.parametrize(("name", "state", "actor", "inputs", "missing"), [
    ("order_developer", "registered", STAFF, {"document": "文号"}, "期限"),
    ("order_developer", "registered", STAFF, {"deadline": LATER, "document": "  "}, "文书文号或附件"),
    ("order_developer", "registered", STAFF, {}, "期限、文书文号或附件"),
    ("raise_objection", "awaiting_inspection", WATER, {}, "情况说明"),
    ("impose_fine", "utility_overdue", ADMIN, {"document": "文号"}, "罚款金额"),
    ("record_verification_failed", "objected", ADMIN, {"document": "文号"}, "情况说明"),
])
def test_missing_inputs_are_refused(name: str, state: str, actor: Actor, inputs: dict,
                                    missing: str) -> None:
    project = Project(state=state)
    with pytest.raises(ProcedureRefused) as exc:
        p.fire(project, name, actor, inputs, today=TODAY, now=NOW)
    assert str(exc.value) == f"「{p.TRANSITIONS[name].label}」须填写：{missing}"
    assert project == Project(state=state)


def test_inputs_a_step_does_not_take_are_refused() -> None:
    with pytest.raises(ProcedureRefused, match="不需要填写：罚款金额"):
        p.fire(Project(), "request_inspection", STAFF, {"amount": "300000"}, today=TODAY,
               now=NOW)


@pytest.mark.parametrize(("amount", "ok"), [
    ("299999.99", False), ("300000", True), ("300000.00", True), ("650000.50", True),
    (decimal.Decimal("1000000.00"), True), (1000000, True), ("1000000.01", False),
    ("1,000,000", True), ("-300000", False), ("0", False), ("abc", False),
    ("300000.001", False), ("NaN", False), (300000.0, False),
])
def test_fine_must_be_between_300000_and_1000000_inclusive(amount: object, ok: bool) -> None:
    project = Project(state="utility_overdue")
    inputs = {"amount": amount, "document": "平建罚〔2021〕1号"}
    if ok:
        p.fire(project, "impose_fine", ADMIN, inputs, today=TODAY, now=NOW)
        assert project.state == "fined"
        assert isinstance(project.fine_amount, decimal.Decimal)
        assert project.fine_amount == decimal.Decimal(str(amount).replace(",", ""))
    else:
        with pytest.raises(ProcedureRefused, match="罚款金额"):
            p.fire(project, "impose_fine", ADMIN, inputs, today=TODAY, now=NOW)
        assert project == Project(state="utility_overdue")


def test_fine_message_names_the_range() -> None:
    with pytest.raises(ProcedureRefused) as exc:
        p.clean_amount("1000000.01")
    assert str(exc.value) == ("罚款金额须在300,000.00 元至1,000,000.00 元之间（三十万元以上一百万元以下），"
                              "填写的是1,000,000.01 元")


@pytest.mark.parametrize("deadline", [TODAY - dt.timedelta(days=1), "2021-07-06",
                                      dt.datetime(2020, 1, 1, 8)])
def test_deadline_in_the_past_is_refused(deadline: object) -> None:
    project = Project()
    with pytest.raises(ProcedureRefused, match="已过，不能早于今天"):
        p.fire(project, "order_developer", STAFF, {"deadline": deadline, "document": "文号"},
               today=TODAY, now=NOW)
    assert project == Project()


def test_deadline_today_or_as_text_is_accepted_and_garbage_refused() -> None:
    project = Project()
    p.fire(project, "order_developer", STAFF, {"deadline": "2021-07-07", "document": "文号"},
           today=TODAY, now=NOW)
    assert project.deadline == TODAY
    with pytest.raises(ProcedureRefused, match="不是有效日期"):
        p.fire(Project(), "order_developer", STAFF, {"deadline": "下月底", "document": "文号"},
               today=TODAY, now=NOW)


# --- deadlines and what each role is offered -------------------------------------------

def test_is_overdue_only_after_the_deadline_and_only_in_a_deadline_state() -> None:
    ordered = Project(state="developer_ordered", deadline=TODAY)
    assert not p.is_overdue(ordered, TODAY)
    assert p.is_overdue(ordered, TODAY + dt.timedelta(days=1))
    assert not p.is_overdue(Project(state="completed", deadline=TODAY), LATER)
    assert not p.is_overdue(Project(state="developer_ordered"), LATER)
    for state in p.DEADLINE_STATES:
        assert p.is_overdue(Project(state=state, deadline=TODAY), LATER)


def test_each_role_is_offered_only_what_it_may_do() -> None:
    objected = Project(state="objected")
    assert [t.name for t in p.available_transitions(objected, ADMIN)] == [
        "record_verification_passed", "record_verification_failed"]
    assert p.available_transitions(objected, STAFF) == []
    assert [t.name for t in p.available_transitions(objected, WATER)] == [
        "enable_online_payment"]
    assert p.available_transitions(objected, POWER) == []
    assert p.available_transitions(objected, OTHER_STAFF) == []
    assert p.available_transitions(objected, DISTRICT) == []
    registered = Project()
    assert [t.name for t in p.available_transitions(registered, STAFF)] == [
        "order_developer", "include_in_renovation", "request_inspection", "request_tracing"]


def test_actor_of_a_user() -> None:
    class Role:
        def __init__(self, name: str) -> None:
            self.name = name

    class User:
        id, username, tenant_id, utility_code = 7, "water", None, "water"
        roles = [Role(UTILITY_STAFF)]

    assert p.actor_of(User()) == Actor(frozenset({UTILITY_STAFF}), None, "water", 7, "water")
