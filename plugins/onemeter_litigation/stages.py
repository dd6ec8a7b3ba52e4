"""The stages of a litigation case (五(四): 依法提起诉讼) and the steps between them, as data.

Like the core's retrofit procedure, `STATES` and `STEPS` are the whole declaration: each step
names the stages it leaves, the stage it enters (None: a recorded fact that keeps the stage),
who may take it and what it needs. python-statemachine builds the graph from the table and
refuses at import a stage nothing leads to or nothing leaves; `check` adds what no library
knows: our roles, the inputs and their Chinese refusals. Nothing here touches the database.

Who: the sub-district's staff and admins trace the developer, ask for property information,
send demand letters and record hearings and judgments; filing the suit, recording money that
came in and closing the case are the office head's (tenant_admin) decisions.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from statemachine.exceptions import TransitionNotAllowed
from statemachine.io import create_machine_class_from_definition

from onemeter.formatting import local_date, money
from onemeter.security import TENANT_ADMIN, TENANT_STAFF


class StepRefused(Exception):
    """A case step refused: wrong stage, wrong role, missing or invalid input.

    `str(exc)` is the Chinese message shown to the user; nothing has been changed.
    """


@dataclass(frozen=True)
class StageSpec:
    """A stage of a case; `deadline` stages become overdue once their date has passed."""

    code: str
    label: str
    next_action: str
    deadline: bool = False
    final: bool = False


STATES: dict[str, StageSpec] = {s.code: s for s in (
    StageSpec("tracing", "查找开发企业及法定代表人",
              "提请公安分局、市场监督管理局查找；提请自然资源和规划局查询财产；发送催告函"),
    StageSpec("property_inquiry", "查询财产线索",
              "记录自然资源和规划局的财产查询结果；发送催告函或提起诉讼"),
    StageSpec("demand_sent", "已发催告函", "催告期限届满仍不履行的，提起诉讼", deadline=True),
    StageSpec("filed", "已起诉立案", "记录开庭安排或判决"),
    StageSpec("hearing", "审理中", "开庭后记录庭审情况和判决", deadline=True),
    StageSpec("judged", "已判决", "申请强制执行，记录执行回款"),
    StageSpec("enforcement", "强制执行中", "记录执行回款；执行完毕后结案"),
    StageSpec("closed", "已结案", "—", final=True),
)}
INITIAL_STATE = "tracing"
OPEN_STATES = tuple(code for code, s in STATES.items() if not s.final)
DEADLINE_STATES = frozenset(code for code, s in STATES.items() if s.deadline)

#: Who takes a step: the sub-district's staff and admins, or its admin alone.
STAFF = "staff"
ADMIN = "admin"
ACTOR_ROLES: dict[str, frozenset[str]] = {
    STAFF: frozenset({TENANT_STAFF, TENANT_ADMIN}),
    ADMIN: frozenset({TENANT_ADMIN}),
}
ACTOR_LABELS = {STAFF: "本办事处工作人员或办事处管理员", ADMIN: "本办事处管理员"}

#: 五(四): 提请公安分局、区市场监督管理局查找; property information from 自然资源和规划局.
TRACING_DEPARTMENTS = ("公安分局", "市场监督管理局")
PROPERTY_DEPARTMENT = "自然资源和规划局"

INPUT_LABELS: dict[str, str] = {
    "department": "查找部门",
    "result": "结果",
    "occurred_on": "日期",
    "deadline": "期限",
    "hearing_on": "开庭日期",
    "court": "受理法院",
    "case_number": "案号",
    "amount": "金额（元）",
    "document": "文书文号",
    "comment": "情况说明",
}


@dataclass(frozen=True)
class StepSpec:
    """One step of a case. `target` None: recorded without changing the stage.

    `labels` overrides an input's label for this step (立案日期, 判决金额 …).
    """

    name: str
    label: str
    sources: tuple[str, ...]
    target: str | None
    actor: str
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def inputs(self) -> tuple[str, ...]:
        return (*self.required, *self.optional)

    def input_label(self, key: str) -> str:
        """The label of input `key` on this step's form."""
        return self.labels.get(key, INPUT_LABELS[key])


STEPS: dict[str, StepSpec] = {s.name: s for s in (
    StepSpec("record_tracing", "记录查找情况", ("tracing", "property_inquiry", "demand_sent"),
             None, STAFF, required=("department", "result"),
             optional=("occurred_on", "document"),
             labels={"occurred_on": "回复日期", "result": "查找结果"}),
    StepSpec("request_property_info", "提请自然资源和规划局查询财产", ("tracing",),
             "property_inquiry", STAFF, required=("document",), optional=("comment",),
             labels={"document": "协查函文号"}),
    StepSpec("record_property_info", "记录财产查询结果", ("property_inquiry", "demand_sent"),
             None, STAFF, required=("result",), optional=("occurred_on", "document"),
             labels={"result": "财产信息", "occurred_on": "回复日期"}),
    StepSpec("send_demand_letter", "发送催告函", ("tracing", "property_inquiry", "demand_sent"),
             "demand_sent", STAFF, required=("document", "deadline"), optional=("comment",),
             labels={"document": "催告函文号", "deadline": "催告期限"}),
    StepSpec("file_lawsuit", "提起诉讼（记录立案）", ("property_inquiry", "demand_sent"),
             "filed", ADMIN, required=("court", "case_number", "occurred_on"),
             optional=("document", "comment"), labels={"occurred_on": "立案日期"}),
    StepSpec("schedule_hearing", "记录开庭安排", ("filed", "hearing"), "hearing", STAFF,
             required=("hearing_on",), optional=("document", "comment"),
             labels={"document": "传票文号"}),
    StepSpec("record_hearing", "记录庭审情况", ("hearing",), None, STAFF,
             required=("result",), optional=("occurred_on", "document"),
             labels={"result": "庭审情况", "occurred_on": "开庭日期"}),
    StepSpec("record_judgment", "记录判决", ("filed", "hearing"), "judged", STAFF,
             required=("occurred_on", "amount", "document"), optional=("comment",),
             labels={"occurred_on": "判决日期", "amount": "判决金额（元）",
                     "document": "判决书文号"}),
    StepSpec("apply_enforcement", "申请强制执行", ("judged",), "enforcement", STAFF,
             required=("occurred_on",), optional=("case_number", "document", "comment"),
             labels={"occurred_on": "申请日期", "case_number": "执行案号"}),
    StepSpec("record_recovery", "记录执行回款", ("judged", "enforcement"), None, ADMIN,
             required=("amount", "occurred_on", "document"), optional=("comment",),
             labels={"amount": "回款金额（元）", "occurred_on": "到账日期",
                     "document": "收款凭证号"}),
    StepSpec("close_case", "结案", OPEN_STATES, "closed", ADMIN,
             required=("comment",), optional=("occurred_on", "document"),
             labels={"comment": "结案情况", "occurred_on": "结案日期"}),
)}

#: Events the service writes that are not steps a user takes.
EVENT_LABELS: dict[str, str] = {
    "open_case": "立卷（项目移送诉讼）",
    "join_case": "项目并入本案",
    **{name: spec.label for name, spec in STEPS.items()},
}


def _machine_definition() -> dict[str, dict[str, Any]]:
    states: dict[str, dict[str, Any]] = {
        code: {"name": spec.label, "initial": code == INITIAL_STATE, "final": spec.final,
               "on": {}}
        for code, spec in STATES.items()
    }
    for spec in STEPS.values():
        if spec.target is None:
            continue
        for source in spec.sources:
            states[source]["on"][spec.name] = [{"target": spec.target}]
    return states


#: The case stages as a python-statemachine class (graph validated when this module loads).
CaseStages = create_machine_class_from_definition(
    "CaseStages", states=_machine_definition(), allow_event_without_transition=False,
)


class _StateHolder:
    """What the state machine runs on: the stage value only, never the ORM row."""

    def __init__(self, state: str) -> None:
        self.state = state


def state_label(code: str | None) -> str:
    """查找开发企业及法定代表人 for "tracing"; an unknown code is shown as it is."""
    spec = STATES.get(code or "")
    return spec.label if spec else str(code or "")


def next_action(code: str | None) -> str:
    """What the clerk should do next in stage `code`."""
    spec = STATES.get(code or "")
    return spec.next_action if spec else ""


def is_overdue(case: Any, today: dt.date) -> bool:
    """Whether `case` sits in a stage with a date that passed before `today` (not on it)."""
    deadline = getattr(case, "deadline", None)
    return case.state in DEADLINE_STATES and deadline is not None and today > deadline


def may_act(spec: StepSpec, case: Any, roles: frozenset[str], tenant_id: int | None) -> bool:
    """Whether a user with `roles` in `tenant_id` may take `spec` on `case`."""
    return bool(roles & ACTOR_ROLES[spec.actor]) and tenant_id is not None \
        and tenant_id == case.tenant_id


def available_steps(case: Any, roles: frozenset[str], tenant_id: int | None) -> list[StepSpec]:
    """The steps this user may take on `case` now (what the case page offers)."""
    return [spec for spec in STEPS.values()
            if case.state in spec.sources and may_act(spec, case, roles, tenant_id)]


# --- inputs ---------------------------------------------------------------------------

#: 案号: （年份）法院代字 + 类型代字 + 顺序号 + 号, e.g. （2021）豫1503民初1234号.
_CASE_NUMBER = re.compile(
    r"\((?P<year>\d{4})\)(?P<court>[\u4e00-\u9fff]{1,4}\d{0,6})(?P<kind>[\u4e00-\u9fff]{1,6})"
    r"(?P<seq>\d{1,7})号")


def clean_case_number(value: Any, today: dt.date) -> str:
    """A 案号 in its usual form, （2021）豫1503民初1234号; StepRefused for anything else.

    Lenient: half- or full-width brackets and digits, spaces, 〔〕 or [] for the brackets.
    The year must be between 1990 and next year.
    """
    text = unicodedata.normalize("NFKC", str(value or ""))
    text = re.sub(r"\s+", "", text).translate(str.maketrans("〔〕[]【】", "()()()"))
    match = _CASE_NUMBER.fullmatch(text)
    if match is None:
        raise StepRefused(f"案号「{value}」格式不正确，应如（2021）豫1503民初1234号")
    year = int(match["year"])
    if not 1990 <= year <= today.year + 1:
        raise StepRefused(f"案号「{value}」的年份 {year} 不正确")
    return f"（{year}）{match['court']}{match['kind']}{int(match['seq'])}号"


def clean_amount(value: Any, label: str, *, positive: bool) -> decimal.Decimal:
    """An amount in 元 as Decimal, exact to the fen; floats are refused, never rounded."""
    if isinstance(value, float):
        raise StepRefused(f"{label}须以元为单位精确填写（不接受浮点数）")
    text = unicodedata.normalize("NFKC", str(value)).replace(",", "").replace("元", "").strip()
    try:
        amount = decimal.Decimal(text)
    except decimal.InvalidOperation as exc:
        raise StepRefused(f"{label}「{value}」不是有效金额") from exc
    if not amount.is_finite() or amount != amount.quantize(decimal.Decimal("0.01")):
        raise StepRefused(f"{label}「{value}」须精确到分")
    if amount < 0 or (positive and amount == 0):
        raise StepRefused(f"{label}须{'大于' if positive else '不小于'} 0，填写的是{money(amount)}")
    if amount >= decimal.Decimal("1e12"):
        raise StepRefused(f"{label}「{value}」过大")
    return amount.quantize(decimal.Decimal("0.01"))


def _clean_date(value: Any, label: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError as exc:
        raise StepRefused(f"{label}「{value}」不是有效日期（例如 2021-12-31）") from exc


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def check(case: Any, name: str, roles: frozenset[str], tenant_id: int | None,
          inputs: Mapping[str, Any], today: dt.date) -> dict[str, Any]:
    """Check that a user may take step `name` on `case` with `inputs`; return them cleaned.

    Order: the step exists, the stage allows it, the role allows it, the inputs are complete
    and valid (dates, 案号, amounts in Decimal, departments). Raises StepRefused with the
    Chinese reason.
    """
    spec = STEPS.get(name)
    if spec is None:
        raise StepRefused(f"没有「{name}」这一步骤")
    if case.state not in spec.sources:
        raise StepRefused(f"当前阶段「{state_label(case.state)}」不能执行「{spec.label}」")
    if not may_act(spec, case, roles, tenant_id):
        raise StepRefused(f"只有{ACTOR_LABELS[spec.actor]}可以{spec.label}")
    unknown = {k for k, v in inputs.items() if k not in spec.inputs and not _blank(v)}
    if unknown:
        names = "、".join(INPUT_LABELS.get(k, k) for k in sorted(unknown))
        raise StepRefused(f"「{spec.label}」不需要填写：{names}")
    missing = [k for k in spec.required if _blank(inputs.get(k))]
    if missing:
        names = "、".join(spec.input_label(k) for k in missing)
        raise StepRefused(f"「{spec.label}」须填写：{names}")
    cleaned: dict[str, Any] = {}
    for key in spec.inputs:
        value = inputs.get(key)
        if _blank(value):
            continue
        label = spec.input_label(key)
        if key == "occurred_on":
            day = _clean_date(value, label)
            if day > today:
                raise StepRefused(f"{label}{local_date(day)}晚于今天（{local_date(today)}）")
            if day.year < 1990:
                raise StepRefused(f"{label}{local_date(day)}不正确")
            cleaned[key] = day
        elif key in ("deadline", "hearing_on"):
            day = _clean_date(value, label)
            if day < today:
                raise StepRefused(f"{label}{local_date(day)}已过，不能早于今天（{local_date(today)}）")
            cleaned[key] = day
        elif key == "amount":
            cleaned[key] = clean_amount(value, label.removesuffix("（元）"),
                                        positive=spec.name == "record_recovery")
        elif key == "case_number":
            cleaned[key] = clean_case_number(value, today)
        elif key == "department":
            department = str(value).strip()
            if department not in TRACING_DEPARTMENTS:
                raise StepRefused(f"查找部门须为：{'、'.join(TRACING_DEPARTMENTS)}")
            cleaned[key] = department
        else:
            text = str(value).strip()
            limit = 2000 if key in ("result", "comment") else 200
            if len(text) > limit:
                raise StepRefused(f"{label}不能超过 {limit} 个字")
            cleaned[key] = text
    return cleaned


def advance(case: Any, spec: StepSpec) -> tuple[str, str]:
    """Run the stage change of `spec` on `case` through `CaseStages`; return (from, to)."""
    before = case.state
    if spec.target is None:
        return before, before
    holder = _StateHolder(before)
    try:
        CaseStages(model=holder).send(spec.name)
    except TransitionNotAllowed as exc:  # the table and the graph disagree: a bug
        raise StepRefused(f"当前阶段「{state_label(before)}」不能执行「{spec.label}」") from exc
    case.state = holder.state
    return before, holder.state


def split_by_largest_remainder(amount: decimal.Decimal, weights: list[int]
                               ) -> list[decimal.Decimal]:
    """Split `amount` (元, two places) over `weights` so the shares add up to the fen.

    Each share gets the floor of its proportional fen; the fen left over go one each to the
    largest remainders, ties to the earlier position (the project referred first).
    """
    if not weights or any(w < 0 for w in weights) or sum(weights) == 0:
        raise ValueError("weights must be non-negative with a positive sum")
    fen = int((amount * 100).to_integral_value())
    if decimal.Decimal(fen) != amount * 100:
        raise ValueError(f"{amount} is not exact to the fen")
    total = sum(weights)
    floors = [fen * w // total for w in weights]
    remainders = [fen * w % total for w in weights]
    left = fen - sum(floors)
    order = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
    for i in order[:left]:
        floors[i] += 1
    return [(decimal.Decimal(f) / 100).quantize(decimal.Decimal("0.01")) for f in floors]
