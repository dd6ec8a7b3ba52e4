"""The retrofit procedure of 信平政办〔2021〕26号 section 五 (改造程序), declared as data.

`STATES` and `TRANSITIONS` are the whole procedure: every transition names the states it
leaves, the state it enters, who may fire it and what it needs. Nothing here touches the
database; `fire()` checks a transition and applies it to any object with the project's
attributes (`state`, `tenant_id`, `utility`, `deadline`, `fine_amount`,
`online_payment_enabled_at`, `maintenance_first`, `no_new_lines`). The service in
`onemeter.retrofit.service` adds the history row, the change log and the hook calls.

Library: python-statemachine. The graph is built from `TRANSITIONS` with its
`create_machine_class_from_definition`, so at import time the library refuses a typo'd
state, a state nothing leads to and a state nothing leaves (a project that could get
stuck), and every state change is executed by its engine, which refuses an event the current
state has no transition for. `transitions` would also do, but it validates only that names
exist and binds trigger methods onto the model object (here an ORM row); python-statemachine
runs on a throwaway holder of the state value and validates the graph's shape. Roles, inputs
and the Chinese refusals are ours: no library knows our roles, and a refusal must say which
rule was broken in words a sub-district clerk reads.

Who records what (the plan names district bodies the platform has no write role for):
- sub-district staff and admins (办事处, 责任单位 in every clause of 五) issue the orders to
  developers and record what happened: completion, inclusion in old-community renovation,
  tracing requests, refusals, litigation referral;
- the utility's own staff (utility_staff whose `utility_code` is the project's utility)
  inspect, object, accept, and record online payment (五(二), 五(五));
- the quality-supervision station's verification (质量监督站核验, under 区住建局) and the
  property-management authority's rectification order, overdue finding and fine against a
  utility (物业管理行政主管部门 = 区住建局) are district decisions. DESIGN gives the district
  office a read-only role, so the sub-district's admin (tenant_admin, not ordinary staff)
  records them on the district's behalf, with the document number of the decision.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from statemachine.exceptions import TransitionNotAllowed
from statemachine.io import create_machine_class_from_definition

from onemeter.formatting import local_date, money
from onemeter.security import TENANT_ADMIN, TENANT_STAFF, UTILITY_STAFF
from onemeter.utilities import utility_company


class ProcedureRefused(Exception):
    """A transition refused: wrong state, wrong role, missing or invalid input.

    `str(exc)` is the Chinese message shown to the user.
    """


# --- states ---------------------------------------------------------------------------

@dataclass(frozen=True)
class StateSpec:
    """A state of a retrofit project; `deadline` states become overdue after their deadline."""

    code: str
    label: str
    deadline: bool = False


STATES: dict[str, StateSpec] = {s.code: s for s in (
    StateSpec("registered", "已登记"),
    # 五(一) developer committed but did not deliver
    StateSpec("developer_ordered", "已责令开发建设单位改造", deadline=True),
    # 五(三) old-community renovation
    StateSpec("renovation_included", "已纳入老旧小区改造"),
    StateSpec("completed", "改造完成待移交"),
    # 五(二) delivered communities
    StateSpec("awaiting_inspection", "待专营单位查验"),
    StateSpec("inspection_passed", "查验合格待接收"),
    StateSpec("objected", "专营单位提出异议"),
    StateSpec("verification_passed", "质量监督站核验合格"),
    StateSpec("verification_failed", "质量监督站核验不合格"),
    StateSpec("rectification_ordered", "已责令开发建设单位限期整改", deadline=True),
    StateSpec("rectified", "整改完成待接收"),
    StateSpec("accepted", "已接收统一管理"),
    # 五(二) a utility refusing to accept or to maintain
    StateSpec("utility_refused", "专营单位拒不接收或拒不履行维修更新责任"),
    StateSpec("utility_rectification_ordered", "已责令专营单位限期整改", deadline=True),
    StateSpec("utility_overdue", "专营单位逾期未改正"),
    StateSpec("fined", "已对专营单位处以罚款"),
    # 五(四) developer deregistered, dissolved or unreachable
    StateSpec("tracing", "查找开发建设单位及法定代表人"),
    StateSpec("legal_rep_ordered", "已责令法定代表人承担改造责任", deadline=True),
    StateSpec("legal_rep_refused", "开发建设单位及法定代表人拒不承担"),
    StateSpec("litigation", "已依法提起诉讼"),
)}
INITIAL_STATE = "registered"
#: States entered with a deadline: a project still in one after its deadline is overdue.
DEADLINE_STATES = frozenset(code for code, s in STATES.items() if s.deadline)


# --- who may act ----------------------------------------------------------------------

#: Sub-district office (办事处), the 责任单位 of every clause of 五.
SUBDISTRICT = "subdistrict"
#: A district body's decision (质量监督站, 物业管理行政主管部门), recorded by the tenant admin.
DISTRICT_BODY = "district_body"
#: The utility of the project (供水公司 for water, 供电公司 for electricity, …).
UTILITY = "utility"

ACTOR_ROLES: dict[str, frozenset[str]] = {
    SUBDISTRICT: frozenset({TENANT_STAFF, TENANT_ADMIN}),
    DISTRICT_BODY: frozenset({TENANT_ADMIN}),
    UTILITY: frozenset({UTILITY_STAFF}),
}
ACTOR_LABELS: dict[str, str] = {
    SUBDISTRICT: "本办事处工作人员或办事处管理员",
    DISTRICT_BODY: "本办事处管理员（代区住房和城乡建设局录入）",
}
@dataclass(frozen=True)
class Actor:
    """Who fires a transition: their roles, tenant (sub-district users) and utility."""

    roles: frozenset[str]
    tenant_id: int | None = None
    utility_code: str | None = None
    user_id: int | None = None
    name: str = ""


def actor_of(user: Any) -> Actor:
    """The `Actor` of a FAB user (`OMUser`): roles by name, tenant, utility code."""
    return Actor(
        roles=frozenset(r.name for r in (getattr(user, "roles", None) or [])),
        tenant_id=getattr(user, "tenant_id", None),
        utility_code=getattr(user, "utility_code", None),
        user_id=getattr(user, "id", None),
        name=getattr(user, "username", "") or "",
    )


# --- inputs ---------------------------------------------------------------------------

INPUT_LABELS: dict[str, str] = {
    "deadline": "期限",
    "document": "文书文号或附件",
    "comment": "情况说明",
    "amount": "罚款金额",
    "maintenance_first": "维修为主、改造为辅",
    "no_new_lines": "依原设计图纸，不新增或更改线路",
}
#: Inputs that are yes/no flags: recorded when given, never "missing".
FLAG_INPUTS = frozenset({"maintenance_first", "no_new_lines"})
#: 《河南省物业管理条例》: 处三十万元以上一百万元以下罚款 (both ends inclusive).
FINE_MIN = decimal.Decimal("300000.00")
FINE_MAX = decimal.Decimal("1000000.00")


# --- transitions ----------------------------------------------------------------------

@dataclass(frozen=True)
class TransitionSpec:
    """One step of the procedure.

    `target` None: a recorded step that leaves the state as it is (online payment).
    `required`/`optional`: input names (see INPUT_LABELS). `after_deadline`: only once the
    current deadline has passed. `hook`: the hook the service calls after the step.
    """

    name: str
    label: str
    sources: tuple[str, ...]
    target: str | None
    actor: str
    clause: str
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    after_deadline: bool = False
    hook: str | None = None

    @property
    def inputs(self) -> tuple[str, ...]:
        return (*self.required, *self.optional)


_ALL = tuple(STATES)
_UTILITY_MUST_ACCEPT = ("completed", "inspection_passed", "verification_passed", "rectified")
_INSPECTION_FLAGS = ("maintenance_first", "no_new_lines")

TRANSITIONS: dict[str, TransitionSpec] = {t.name: t for t in (
    # 五(一) developer committed to a meter per household but did not deliver.
    TransitionSpec("order_developer", "责令开发建设单位完成改造并移交", ("registered",),
                   "developer_ordered", SUBDISTRICT, "五(一)",
                   required=("deadline", "document"), optional=("comment",)),
    # 五(三) old-community renovation.
    TransitionSpec("include_in_renovation", "纳入老旧小区改造范围", ("registered",),
                   "renovation_included", SUBDISTRICT, "五(三)",
                   required=("document",), optional=("comment",)),
    TransitionSpec("record_completed", "记录改造完成",
                   ("developer_ordered", "renovation_included", "legal_rep_ordered",
                    "litigation"),
                   "completed", SUBDISTRICT, "五(一)(三)(四)",
                   optional=("document", "comment")),
    # 五(二) delivered communities: the utility inspects.
    TransitionSpec("request_inspection", "提请专营单位查验", ("registered",),
                   "awaiting_inspection", SUBDISTRICT, "五(二)",
                   optional=("document", "comment")),
    TransitionSpec("record_inspection_passed", "记录查验合格", ("awaiting_inspection",),
                   "inspection_passed", UTILITY, "五(二)(五)",
                   optional=("document", "comment", *_INSPECTION_FLAGS)),
    TransitionSpec("raise_objection", "提出异议", ("awaiting_inspection", "completed"),
                   "objected", UTILITY, "五(二)(五)",
                   required=("comment",), optional=("document", *_INSPECTION_FLAGS)),
    TransitionSpec("accept", "接收并统一管理",
                   (*_UTILITY_MUST_ACCEPT, "utility_rectification_ordered", "utility_overdue",
                    "fined"),
                   "accepted", UTILITY, "五(一)(二)(三)",
                   optional=("document", "comment", *_INSPECTION_FLAGS)),
    TransitionSpec("record_verification_passed", "记录质量监督站核验合格", ("objected",),
                   "verification_passed", DISTRICT_BODY, "五(二)",
                   required=("document",), optional=("comment",)),
    TransitionSpec("record_verification_failed", "记录质量监督站核验不合格", ("objected",),
                   "verification_failed", DISTRICT_BODY, "五(二)",
                   required=("document", "comment")),
    TransitionSpec("order_rectification", "责令开发建设单位限期整改", ("verification_failed",),
                   "rectification_ordered", SUBDISTRICT, "五(二)",
                   required=("deadline", "document"), optional=("comment",)),
    TransitionSpec("record_rectified", "记录整改完成", ("rectification_ordered",),
                   "rectified", SUBDISTRICT, "五(二)",
                   optional=("document", "comment")),
    # 五(二) 专营单位拒不接收或者拒不履行承担运行、维修和更新责任.
    TransitionSpec("record_utility_refusal", "记录专营单位拒不接收或拒不履行维修更新责任",
                   (*_UTILITY_MUST_ACCEPT, "accepted"),
                   "utility_refused", SUBDISTRICT, "五(二)",
                   required=("comment",), optional=("document",)),
    TransitionSpec("order_utility_rectification", "责令专营单位限期整改", ("utility_refused",),
                   "utility_rectification_ordered", DISTRICT_BODY, "五(二)",
                   required=("deadline", "document"), optional=("comment",)),
    TransitionSpec("record_utility_overdue", "认定专营单位逾期未改正",
                   ("utility_rectification_ordered",),
                   "utility_overdue", DISTRICT_BODY, "五(二)",
                   optional=("document", "comment"), after_deadline=True),
    TransitionSpec("impose_fine", "对专营单位处以罚款", ("utility_overdue",),
                   "fined", DISTRICT_BODY, "五(二)",
                   required=("amount", "document"), optional=("comment",)),
    # 五(四) developer deregistered, dissolved or unreachable.
    TransitionSpec("request_tracing", "提请公安分局、区市场监督管理局查找开发建设单位及法定代表人",
                   ("registered", "developer_ordered", "verification_failed",
                    "rectification_ordered"),
                   "tracing", SUBDISTRICT, "五(四)",
                   required=("document",), optional=("comment",)),
    TransitionSpec("order_legal_representative", "责令法定代表人承担改造责任", ("tracing",),
                   "legal_rep_ordered", SUBDISTRICT, "五(四)",
                   required=("deadline", "document"), optional=("comment",)),
    TransitionSpec("record_legal_rep_refused", "记录开发建设单位及法定代表人拒不承担改造责任",
                   ("legal_rep_ordered",),
                   "legal_rep_refused", SUBDISTRICT, "五(四)",
                   required=("comment",), optional=("document",)),
    TransitionSpec("refer_to_litigation", "依法提起诉讼", ("legal_rep_refused",),
                   "litigation", SUBDISTRICT, "五(四)",
                   required=("document",), optional=("comment",),
                   hook="onemeter_project_referred_to_litigation"),
    # 五(五) online payment per household comes first; it does not change the state.
    TransitionSpec("enable_online_payment", "记录已实现一户一表网上缴费", _ALL, None, UTILITY,
                   "五(五)", optional=("document", "comment")),
)}


def _machine_definition() -> dict[str, dict[str, Any]]:
    """The states with their outgoing events, for python-statemachine.

    Steps that keep the state (online payment) stay out of the graph: a self-loop on every
    state would hide a state nothing else leaves from the library's trap check.
    """
    states: dict[str, dict[str, Any]] = {
        code: {"name": spec.label, "initial": code == INITIAL_STATE, "on": {}}
        for code, spec in STATES.items()
    }
    for spec in TRANSITIONS.values():
        if spec.target is None:
            continue
        for source in spec.sources:
            states[source]["on"][spec.name] = [{"target": spec.target}]
    return states


#: The procedure as a python-statemachine class (graph validated when this module loads).
RetrofitProcedure = create_machine_class_from_definition(
    "RetrofitProcedure", states=_machine_definition(), allow_event_without_transition=False,
)


class _StateHolder:
    """What the state machine runs on: the state value only, never the ORM row."""

    def __init__(self, state: str) -> None:
        self.state = state


# --- checks ---------------------------------------------------------------------------

def state_label(code: str | None) -> str:
    """已登记 for "registered"; an unknown code is shown as it is."""
    spec = STATES.get(code or "")
    return spec.label if spec else str(code)


def actor_label(spec: TransitionSpec, project: Any) -> str:
    """Who may fire `spec` on `project`, in words: 本办事处管理员…, 本项目的供水公司人员."""
    if spec.actor == UTILITY:
        return f"本项目的{utility_company(project.utility)}人员"
    return ACTOR_LABELS[spec.actor]


def may_act(spec: TransitionSpec, project: Any, actor: Actor) -> bool:
    """Whether `actor`'s roles (and tenant or utility) let them fire `spec` on `project`."""
    if not actor.roles & ACTOR_ROLES[spec.actor]:
        return False
    if spec.actor == UTILITY:
        return bool(actor.utility_code) and actor.utility_code == project.utility
    return actor.tenant_id is not None and actor.tenant_id == project.tenant_id


def state_allows(spec: TransitionSpec, project: Any) -> bool:
    """Whether the project's current state is one `spec` leaves (flag steps: not yet done)."""
    if project.state not in spec.sources:
        return False
    if spec.name == "enable_online_payment":
        return project.online_payment_enabled_at is None
    return True


def available_transitions(project: Any, actor: Actor) -> list[TransitionSpec]:
    """The transitions `actor` may fire on `project` now (what the project page offers)."""
    return [spec for spec in TRANSITIONS.values()
            if state_allows(spec, project) and may_act(spec, project, actor)]


def is_overdue(project: Any, today: dt.date) -> bool:
    """Whether `project` sits in a state with a deadline that passed before `today`.

    The deadline day itself is not overdue. Pure: no database, no clock.
    """
    deadline = getattr(project, "deadline", None)
    return project.state in DEADLINE_STATES and deadline is not None and today > deadline


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _clean_deadline(value: Any, today: dt.date) -> dt.date:
    if isinstance(value, dt.datetime):
        value = value.date()
    if isinstance(value, str):
        try:
            value = dt.date.fromisoformat(value.strip())
        except ValueError as exc:
            raise ProcedureRefused(f"期限「{value}」不是有效日期（例如 2021-12-31）") from exc
    if not isinstance(value, dt.date):
        raise ProcedureRefused("期限须是日期")
    if value < today:
        raise ProcedureRefused(f"期限{local_date(value)}已过，不能早于今天（{local_date(today)}）")
    return value


def clean_amount(value: Any) -> decimal.Decimal:
    """A fine as Decimal with at most two decimals, 300,000–1,000,000 元 inclusive."""
    if isinstance(value, float):  # a float has already lost the fen: refuse, never guess
        raise ProcedureRefused("罚款金额须以元为单位精确填写（不接受浮点数）")
    try:
        amount = decimal.Decimal(str(value).replace(",", "").strip())
    except decimal.InvalidOperation as exc:
        raise ProcedureRefused(f"罚款金额「{value}」不是有效金额") from exc
    if not amount.is_finite() or amount != amount.quantize(decimal.Decimal("0.01")):
        raise ProcedureRefused(f"罚款金额「{value}」须精确到分")
    if not FINE_MIN <= amount <= FINE_MAX:
        raise ProcedureRefused(
            f"罚款金额须在{money(FINE_MIN)}至{money(FINE_MAX)}之间（三十万元以上一百万元以下），"
            f"填写的是{money(amount)}")
    return amount.quantize(decimal.Decimal("0.01"))


def _clean_flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "y", "yes", "true", "on", "是")
    return bool(value)


def check(project: Any, name: str, actor: Actor, inputs: Mapping[str, Any],
          today: dt.date) -> dict[str, Any]:
    """Check that `actor` may fire transition `name` on `project` with `inputs`.

    Order: the transition exists, the state allows it, the role allows it, the deadline
    has passed (overdue findings), the inputs are complete and valid. Returns the cleaned
    inputs (date, Decimal, bool, stripped text); raises ProcedureRefused with the reason.
    """
    spec = TRANSITIONS.get(name)
    if spec is None:
        raise ProcedureRefused(f"没有「{name}」这一步骤")
    if not state_allows(spec, project):
        if spec.name == "enable_online_payment" and project.state in spec.sources:
            raise ProcedureRefused(f"已记录网上缴费，不能重复执行「{spec.label}」")
        raise ProcedureRefused(
            f"当前状态「{state_label(project.state)}」不能执行「{spec.label}」")
    if not may_act(spec, project, actor):
        raise ProcedureRefused(f"只有{actor_label(spec, project)}可以{spec.label}")
    if spec.after_deadline and not is_overdue(project, today):
        when = local_date(project.deadline) if project.deadline else "（未设定）"
        raise ProcedureRefused(f"整改期限{when}尚未届满，不能{spec.label}")
    unknown = set(inputs) - set(spec.inputs)
    if unknown - {k for k, v in inputs.items() if _blank(v)}:
        names = "、".join(INPUT_LABELS.get(k, k) for k in sorted(unknown))
        raise ProcedureRefused(f"「{spec.label}」不需要填写：{names}")
    cleaned: dict[str, Any] = {}
    missing = [k for k in spec.required if k not in FLAG_INPUTS and _blank(inputs.get(k))]
    if missing:
        names = "、".join(INPUT_LABELS[k] for k in missing)
        raise ProcedureRefused(f"「{spec.label}」须填写：{names}")
    for key in spec.inputs:
        value = inputs.get(key)
        if key in FLAG_INPUTS:
            if value is not None:
                cleaned[key] = _clean_flag(value)
        elif _blank(value):
            continue
        elif key == "deadline":
            cleaned[key] = _clean_deadline(value, today)
        elif key == "amount":
            cleaned[key] = clean_amount(value)
        else:
            cleaned[key] = str(value).strip()
    return cleaned


@dataclass(frozen=True)
class Step:
    """A transition that happened: what the service writes as a history row."""

    transition: TransitionSpec
    from_state: str
    to_state: str
    inputs: dict[str, Any] = field(default_factory=dict)


def fire(project: Any, name: str, actor: Actor, inputs: Mapping[str, Any] | None = None, *,
         today: dt.date, now: dt.datetime) -> Step:
    """Check and apply transition `name` to `project` (in memory); return the `Step`.

    The state change runs through `RetrofitProcedure`; the deadline of a deadline state is
    set from the input and cleared when the project leaves it; a fine sets `fine_amount`;
    inspection flags are recorded when given; online payment stamps
    `online_payment_enabled_at` with `now` (naive UTC). Raises ProcedureRefused, changing
    nothing, when the step is not allowed.
    """
    cleaned = check(project, name, actor, inputs or {}, today)
    spec = TRANSITIONS[name]
    before = project.state
    if spec.target is None:
        after = before
    else:
        holder = _StateHolder(before)
        try:
            RetrofitProcedure(model=holder).send(name)
        except TransitionNotAllowed as exc:  # the table and the graph disagree: a bug
            raise ProcedureRefused(
                f"当前状态「{state_label(before)}」不能执行「{spec.label}」") from exc
        after = holder.state
        project.state = after
        if "deadline" in spec.inputs:
            project.deadline = cleaned.get("deadline")
        elif after not in DEADLINE_STATES:
            project.deadline = None
    if "amount" in cleaned:
        project.fine_amount = cleaned["amount"]
    for flag in FLAG_INPUTS & set(cleaned):
        setattr(project, flag, cleaned[flag])
    if spec.name == "enable_online_payment":
        project.online_payment_enabled_at = now
    return Step(spec, before, after, cleaned)


def transitions_table() -> Iterable[tuple[str, str, str, str, str]]:
    """(transition, label, from, to, who) rows, for the docs."""
    for spec in TRANSITIONS.values():
        sources = "、".join(state_label(s) for s in spec.sources) if spec.sources != _ALL \
            else "任一状态"
        target = state_label(spec.target) if spec.target else "（状态不变）"
        who = ("专营单位人员" if spec.actor == UTILITY else ACTOR_LABELS[spec.actor])
        yield spec.name, spec.label, sources, target, who
