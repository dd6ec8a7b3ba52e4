"""Demo data for `make run` (`onemeter demo load`): a synthetic but faithful demo district.

Faithful to the plan: for every category row of `registry/plan_2021_26.toml` (utility × phase
× category) the demo has exactly that many communities with a retrofit project of that utility
and exactly that many households in that utility's scope (a household is in scope for a
utility when it has a `MeterAccount` of it). Each community's facts (developer commitment,
old-community renovation, delivery date at the plan's reference date 2021-07-07, 零星) derive
its category, so `Community.derived_category` is the target's category, never an override.
Water and electricity share some communities; such a community has max(water, electricity)
households and only its first N households have an account of each utility.

The plan's category rows add up to 190 water communities / 42,000 households and 118 / 32,400
for electricity, while its section 一 states 189 / 42,000 and 118 / 32,000 (and its 2021
phase totals differ from their category rows too: 86 vs 85 water communities, 26,100 vs
26,200 water and 19,400 vs 18,900 electricity households). The demo follows the category
rows, as a ledger built community by community would: `onemeter plan check` and the plan page
still show the plan's own differences, exactly as with real data. Nothing here "fixes" the
plan.

Projects are in every state of the procedure (五). Each project's history is built by firing
`retrofit.procedure.fire` from the initial state with actors of the role each step needs, on
the dates of a plausible timeline between 2021-07 and `today`, so every `ProjectEvent` row is
a legal step; some projects sit in deadline states past their deadline (overdue), some before.

Nothing is real: community, street, company and person names are built from word lists,
phone numbers are random 11-digit numbers, unified social credit codes are random but valid
(GB 32100 check character from python-stdnum, GB 11714 check of the organization code), ID
numbers are left empty. Every demo developer's contact reads `DEMO_CONTACT`, which is how a
second load recognises the demo and does nothing.

Fast (seconds for ~46,000 households and 74,400 accounts): rows go in with SQLAlchemy Core
bulk inserts — on SQLite `executemany` (parents with RETURNING in parameter order), on
PostgreSQL ids from the tables' own sequences and one `INSERT … SELECT FROM unnest(arrays)`
per batch — each tenant's rows under that tenant's scope, so row-level security checks them.
Bulk inserts skip ORM events, so the natural key, derived category and phase, opt-out time
and the prohibited-fee flag are computed here with the same functions the events use; the
change log gets one summary entry per tenant and table instead of one per row. The caller
commits (`onemeter demo load` does, and then has the owner ANALYZE the tables).
"""

from __future__ import annotations

import datetime as dt
import decimal
import itertools
import math
import random
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from stdnum.cn import uscc

from onemeter.audit import append_entries
from onemeter.registry.categories import (
    CATEGORIES,
    DELIVERED_5_10,
    DELIVERED_GT10_SCATTERED,
    DELIVERED_LT5,
    DEVELOPER_COMMITTED,
    OLD_RENOVATION,
    PLAN_REFERENCE_DATE,
    derive_category,
    phase_of,
)
from onemeter.registry.models import (
    Community,
    Developer,
    Household,
    MeterAccount,
    check_credit_code,
)
from onemeter.registry.normalize import household_key
from onemeter.registry.plan import PLAN_FILE, read_plan
from onemeter.retrofit.models import ProjectCharge, ProjectEvent, RetrofitProject
from onemeter.retrofit.procedure import (
    DEADLINE_STATES,
    DISTRICT_BODY,
    INITIAL_STATE,
    STATES,
    SUBDISTRICT,
    TRANSITIONS,
    UTILITY,
    Actor,
    fire,
    is_overdue,
)
from onemeter.security import TENANT_ADMIN, TENANT_STAFF, UTILITY_STAFF
from onemeter.tenancy import Tenant, TenantScope, use_scope
from onemeter.utilities import UtilitySpec, utility_label, utility_spec

DEFAULT_SEED = 2021
#: Written into every demo developer's contact: marks the data as synthetic, in the UI too.
DEMO_CONTACT = "演示数据（合成，非真实单位）"
ALREADY_LOADED = "已有数据，未重复载入"
#: Shares of the communities per sub-district (unequal, as real workloads are).
TENANT_SHARES = {"pingqiao": 35, "pingxi": 25, "pingdong": 22, "zhenleishan": 18}
DEVELOPER_COUNT = 60
#: The tables the demo writes (for ANALYZE after a load on PostgreSQL).
DEMO_TABLES = ("om_developer", "om_community", "om_household", "om_meter_account",
               "om_retrofit_project", "om_project_event", "om_project_charge")
#: Rows per INSERT batch (each batch is one executemany).
CHUNK = 5000
#: Share of the communities of two utilities' rows that have both projects.
SHARED = 0.7
EARLIEST_DAY = PLAN_REFERENCE_DATE + dt.timedelta(days=3)
_BEIJING_OFFSET = dt.timedelta(hours=8)

# --- word lists (synthetic: every name is assembled, none is taken from a register) -------

_SURNAMES = ("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘"
             "于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹")
_GIVEN = ("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰红梅建国志新春海波宁晓东"
          "雪琴云飞鹏辉斌俊浩宇欣怡子涵思雨佳琪梓萱文博嘉豪振坤瑞凤莲荣德福顺")
_CORE = "鑫瑞华宏盛泰恒嘉润福祥安兴隆远达丰锦鸿德信和源通昌业浩宇博天佳森茂金"
_DEV_PREFIX = ("信阳", "信阳市", "河南", "平桥区", "信阳市平桥区")
_DEV_SUFFIX = ("房地产开发有限公司", "置业有限公司", "房地产有限责任公司", "实业有限公司",
               "建设开发有限公司", "置业发展有限公司")
_NAME_A = "桂兰锦华翠金御雅碧紫福书香阳明和泰康宁瑞丰荣凤龙滨湖江山新春秋枫松柏梅竹荷芳"
_NAME_B = "园苑庭湾城府邸居轩阁苑岸林景泉庄"
_NAME_SUFFIX = ("小区", "花园", "苑", "家园", "新城", "公寓", "名苑", "雅居", "新村", "花苑")
_POETIC = ("森林半岛", "滨湖国际", "书香门第", "山水华庭", "阳光新城", "金色港湾", "翡翠湾",
           "御景园", "十里春风", "水岸名都", "中央公园", "香榭里", "壹号院", "悦府", "湖畔花园",
           "城市之光", "观澜苑", "锦绣华庭", "天悦湾", "学府名邸")
_WORK_UNITS = ("区粮食局", "区供销社", "第二建筑公司", "纺织厂", "区农机公司", "机械厂",
               "区食品公司", "区物资局", "罐头厂", "化肥厂", "棉麻公司", "运输公司", "区商业局",
               "电机厂", "造纸厂", "印刷厂", "酒厂", "区百货公司", "水泥厂", "面粉厂",
               "农具厂", "木材公司", "五金公司", "针织厂")
_OLD_SUFFIX = ("家属院", "宿舍", "家属楼", "生活区")
_STREET_A = ("建设", "文化", "和平", "新华", "人民", "光明", "幸福", "团结", "胜利", "友谊",
             "振兴", "兴业", "春华", "锦绣", "长安", "永安", "康宁", "泰和", "福民", "惠民",
             "金桥", "银河", "桂花", "茶香")
_STREET_B = ("路", "街", "大道", "东路", "西路", "北街")
_OPTOUT_REASONS = ("自愿不参与改造，已签署不愿参与承诺书", "房屋长期空置，暂不参与改造",
                   "已自行安装分户计量表，不再改造", "担心施工影响，自愿不参与改造",
                   "老人独居，家属代签不愿参与承诺书")
_COMMENTS = {
    "raise_objection": ("部分楼栋计量表箱位置与原设计图纸不符", "管网材质不符合相关设计要求",
                        "计量箱未按规范安装，无法抄表到户", "入户线路线径不足，需核验"),
    "record_verification_failed": ("经核验，表箱安装不符合设计要求，须限期整改",
                                   "经核验，管线敷设不符合规范，须整改后移交"),
    "record_utility_refusal": ("专营单位以设施老化为由拒不接收", "专营单位拒不履行维修更新责任",
                               "专营单位未在查验合格后接收统一管理"),
    "record_legal_rep_refused": ("经多次约谈，法定代表人拒不承担改造责任",
                                 "开发建设单位及法定代表人拒不承担改造责任"),
}
_OPTIONAL_COMMENTS = ("已通知小区业主委员会", "网格员已入户告知", "已报区领导小组办公室备案",
                      "施工期间未发生矛盾纠纷")
_LEGIT_CHARGES = {
    "water": ("材料费", "水表箱材料费", "入户阀门更换费", "楼道管道维修材料费"),
    "electricity": ("材料费", "电表箱材料费", "入户线材料费", "表前开关更换费"),
}
_RATING_WEIGHTS = {"water": (80, 14, 3, 1.5, 1, 0.5), "electricity": (10, 30, 35, 15, 5, 4, 1)}

# --- the routes projects take through the procedure (五) ----------------------------------

ROUTES: dict[str, tuple[str, ...]] = {
    # 五(一) committed developer ordered to finish and hand over
    "commit": ("order_developer", "record_completed", "accept"),
    "commit_objection": ("order_developer", "record_completed", "raise_objection",
                         "record_verification_passed", "accept"),
    "commit_refusal": ("order_developer", "record_completed", "record_utility_refusal",
                       "order_utility_rectification", "record_utility_overdue", "impose_fine",
                       "accept"),
    "commit_tracing": ("order_developer", "request_tracing", "order_legal_representative",
                       "record_legal_rep_refused", "refer_to_litigation", "record_completed",
                       "accept"),
    # 五(三) old-community renovation
    "renovation": ("include_in_renovation", "record_completed", "accept"),
    "renovation_objection": ("include_in_renovation", "record_completed", "raise_objection",
                             "record_verification_passed", "accept"),
    # 五(二) delivered communities: inspection, objection, verification, rectification
    "inspection": ("request_inspection", "record_inspection_passed", "accept"),
    "objection": ("request_inspection", "raise_objection", "record_verification_passed",
                  "accept"),
    "rectification": ("request_inspection", "raise_objection", "record_verification_failed",
                      "order_rectification", "record_rectified", "accept"),
    "rectification_tracing": ("request_inspection", "raise_objection",
                              "record_verification_failed", "order_rectification",
                              "request_tracing", "order_legal_representative",
                              "record_completed", "accept"),
    # 五(二) a utility refusing to accept: order, overdue, fine
    "refusal": ("request_inspection", "record_inspection_passed", "record_utility_refusal",
                "order_utility_rectification", "record_utility_overdue", "impose_fine",
                "accept"),
    "refusal_complied": ("request_inspection", "record_inspection_passed",
                         "record_utility_refusal", "order_utility_rectification", "accept"),
    # 五(四) developer deregistered, dissolved or unreachable
    "tracing": ("request_tracing", "order_legal_representative", "record_legal_rep_refused",
                "refer_to_litigation", "record_completed", "accept"),
    "tracing_complied": ("request_tracing", "order_legal_representative", "record_completed",
                         "accept"),
}
_ROUTE_WEIGHTS = {
    (DEVELOPER_COMMITTED, True): {"commit": 55, "commit_objection": 15, "commit_refusal": 12,
                                  "commit_tracing": 5},
    (DEVELOPER_COMMITTED, False): {"commit_tracing": 60, "tracing": 40},
    (OLD_RENOVATION, True): {"renovation": 85, "renovation_objection": 15},
    (OLD_RENOVATION, False): {"renovation": 85, "renovation_objection": 15},
    ("delivered", True): {"inspection": 40, "objection": 18, "rectification": 15,
                          "refusal": 10, "refusal_complied": 7, "rectification_tracing": 4},
    ("delivered", False): {"tracing": 55, "tracing_complied": 25, "rectification_tracing": 20},
}
#: States where households' meters are mostly in (the developer or renovation has built).
_BUILT = frozenset({"completed", "inspection_passed", "verification_passed", "rectified",
                    "utility_refused", "utility_rectification_ordered", "utility_overdue",
                    "fined"})
_PHASE_START = {2021: dt.date(2021, 7, 12), 2022: dt.date(2022, 1, 4),
                2023: dt.date(2023, 1, 3)}
_MIN_OVERDUE, _MIN_FUTURE = 12, 4
_DOCUMENT = re.compile(r"(.+)〔(\d{4})〕\d+号")


# --- what the generator produces ----------------------------------------------------------

@dataclass
class DemoTenant:
    id: int
    code: str
    name: str
    utilities: tuple[str, ...]


@dataclass
class DemoDeveloper:
    name: str
    credit_code: str
    legal_representative: str
    status: str
    brand: str  # the two characters of its name a community may carry (鑫瑞·翡翠湾)


@dataclass
class DemoCommunity:
    index: int
    tenant: DemoTenant
    name: str
    address: str
    category: str
    developer: int | None  # index into the developers
    delivery_date: dt.date | None
    developer_committed: bool
    old_renovation: bool
    scattered: bool
    in_scope: dict[str, int]  # utility → households with an account (the first N)
    building_word: str
    units: int
    floors: int
    per_floor: int
    account_base: dict[str, int] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return max(self.in_scope.values())

    @property
    def phase(self) -> int:
        return phase_of(self.category) or 2023


@dataclass
class DemoEvent:
    transition: str
    from_state: str
    to_state: str
    at: dt.datetime  # naive UTC
    actor: str  # the demo username
    deadline: dt.date | None
    document: str | None
    comment: str | None
    amount: decimal.Decimal | None


@dataclass
class DemoProject:
    index: int
    community: DemoCommunity
    utility: str
    route: str
    stop: int
    options: tuple[str, ...] = ()  # the routes its community allows
    kind: str = ""  # "overdue" / "future" for a project stopped in a deadline state
    state: str = INITIAL_STATE
    deadline: dt.date | None = None
    fine_amount: decimal.Decimal | None = None
    online_payment_enabled_at: dt.datetime | None = None
    maintenance_first: bool | None = None
    no_new_lines: bool | None = None
    events: list[DemoEvent] = field(default_factory=list)

    @property
    def first_day(self) -> dt.date | None:
        return (self.events[0].at + _BEIJING_OFFSET).date() if self.events else None

    @property
    def online_day(self) -> dt.date | None:
        at = self.online_payment_enabled_at
        return (at + _BEIJING_OFFSET).date() if at else None


@dataclass
class DemoCharge:
    project: DemoProject
    name: str
    amount: decimal.Decimal
    charged_by: str
    paid_by: str
    charged_on: dt.date
    comment: str


@dataclass
class DemoData:
    """Everything but households and accounts, which are generated per community on write."""

    seed: int
    scale: float
    today: dt.date
    targets: dict[tuple[str, str], tuple[int, int]]  # (utility, category) → (communities, hh)
    developers: list[DemoDeveloper]
    communities: list[DemoCommunity]
    projects: list[DemoProject]
    charges: list[DemoCharge]
    skipped_utilities: tuple[str, ...] = ()


@dataclass
class TenantLine:
    tenant: str
    utility: str
    communities: int
    households: int
    projects: int


@dataclass
class DemoReport:
    """What `load_demo` did; `lines()` is the Chinese summary the command prints."""

    loaded: bool
    message: str
    seed: int
    scale: float
    today: dt.date
    seconds: float = 0.0
    rows: dict[str, int] = field(default_factory=dict)
    per_tenant: list[TenantLine] = field(default_factory=list)
    states: dict[str, int] = field(default_factory=dict)
    overdue: int = 0
    skipped_utilities: tuple[str, ...] = ()

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    def lines(self) -> list[str]:
        """The summary in Chinese: per sub-district × utility, totals, overdue, time."""
        if not self.loaded:
            return [self.message]
        out = [f"{self.message}（随机种子 {self.seed}，规模 {self.scale:g}，"
               f"以 {self.today.isoformat()} 为今天）："]
        tenants = list(dict.fromkeys(line.tenant for line in self.per_tenant))
        totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        for tenant in tenants:
            parts = []
            for line in self.per_tenant:
                if line.tenant != tenant:
                    continue
                parts.append(f"{utility_label(line.utility)} {line.communities} 个小区、"
                             f"{line.households:,} 户、{line.projects} 个项目")
                total = totals[line.utility]
                total[0] += line.communities
                total[1] += line.households
                total[2] += line.projects
            out.append(f"  {tenant}：{'；'.join(parts)}")
        out.append("  全区合计：" + "；".join(
            f"{utility_label(u)} {c} 个小区、{h:,} 户、{p} 个项目"
            for u, (c, h, p) in totals.items()))
        out.append(f"  逾期项目 {self.overdue} 个；新增开发建设单位 "
                   f"{self.rows.get('developers', 0)} 家；共写入 {self.total_rows:,} 行，"
                   f"用时 {self.seconds:.1f} 秒")
        office = {k: v for k, v in self.rows.items() if k in _OFFICE_ROWS}
        if office:
            out.append("  区领导小组办公室：" + "；".join(f"{k} {v:,}" for k, v in office.items()))
        plugin_rows = {k: v for k, v in self.rows.items()
                       if k not in _CORE_ROWS and k not in _OFFICE_ROWS}
        if plugin_rows:
            out.append("  插件演示数据：" + "；".join(f"{k} {v:,}" for k, v in plugin_rows.items()))
        for utility in self.skipped_utilities:
            out.append(f"  注意：没有启用 {utility} 的插件，方案中该项数字未载入")
        return out


#: The keys of `DemoReport.rows` the core writes; the others come from plugins.
_CORE_ROWS = ("developers", "communities", "households", "meter_accounts", "projects",
              "events", "charges")
#: The district office's demo rows (a meeting's action items, supervision notices).
_OFFICE_ROWS = ("议定事项", "督办通知")


# --- the plan's numbers -------------------------------------------------------------------

def demo_targets(scale: float = 1.0) -> dict[tuple[str, str], tuple[int, int]]:
    """(utility, category) → (communities, households) of the plan's category rows × scale.

    At scale 1 these are the TOML's numbers; smaller scales keep at least one community and
    at least one household per community.
    """
    _, rows = read_plan(PLAN_FILE)
    targets = {}
    for row in rows:
        if row.category is None:
            continue
        if scale == 1:
            targets[(row.utility, row.category)] = (row.communities, row.households)
            continue
        communities = max(1, round(row.communities * scale))
        targets[(row.utility, row.category)] = (
            communities, max(communities, round(row.households * scale)))
    return targets


# --- small helpers -------------------------------------------------------------------------

def _weighted(rng: random.Random, weights: dict[str, float]) -> str:
    keys = list(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


def _split(rng: random.Random, total: int, parts: int, spread: float = 0.7) -> list[int]:
    """`total` split into `parts` positive integers of varied size, summing exactly."""
    floor = max(1, min(12, total // (parts * 4)))
    weights = [rng.lognormvariate(0, spread) for _ in range(parts)]
    rest = total - floor * parts
    raw = [rest * w / sum(weights) for w in weights]
    sizes = [floor + int(r) for r in raw]
    remainders = sorted(range(parts), key=lambda i: (raw[i] - int(raw[i]), -i), reverse=True)
    for i in remainders[:total - sum(sizes)]:
        sizes[i] += 1
    return sizes


def _person(rng: random.Random) -> str:
    surname = rng.choice(_SURNAMES)
    return surname + "".join(rng.choice(_GIVEN) for _ in range(rng.choice((1, 2, 2, 2))))


def _phone(rng: random.Random) -> str:
    return f"1{rng.choice('3456789')}{rng.randrange(10 ** 9):09d}"


_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"


def _organization_code(rng: random.Random) -> str:
    """A 9-character organization code (GB 11714: 8 characters and their check character)."""
    if rng.random() < 0.6:  # codes issued since 2015 start with MA
        body = "MA" + "".join(rng.choice(_USCC_ALPHABET[:-1]) for _ in range(6))
    else:
        body = "".join(rng.choice("0123456789") for _ in range(8))
    values = [int(c) if c.isdigit() else ord(c) - 55 for c in body]
    check = 11 - sum(v * w for v, w in zip(values, (3, 7, 9, 10, 5, 8, 4, 2), strict=True)) % 11
    return body + {10: "X", 11: "0"}.get(check, str(check))


def credit_code(rng: random.Random) -> str:
    """A random but valid unified social credit code of a Pingqiao (411503) enterprise."""
    first = "91411503" + _organization_code(rng)
    return check_credit_code(first + uscc.calc_check_digit(first))


def _utc(day: dt.date, minutes: int) -> dt.datetime:
    """Naive UTC of `minutes` after midnight, Beijing time, on `day`."""
    return dt.datetime.combine(day, dt.time()) + dt.timedelta(minutes=minutes) - _BEIJING_OFFSET


# --- generation (pure: no database) -------------------------------------------------------

def _developers(rng: random.Random) -> list[DemoDeveloper]:
    statuses = (["active"] * (DEVELOPER_COUNT - 12) + ["deregistered"] * 4 + ["dissolved"] * 4
                + ["unreachable"] * 4)
    rng.shuffle(statuses)
    names: set[str] = set()
    codes: set[str] = set()
    developers = []
    for status in statuses:
        while True:
            brand = "".join(rng.sample(_CORE, 2))
            name = rng.choice(_DEV_PREFIX) + brand + rng.choice(_DEV_SUFFIX)
            if name not in names:
                break
        code = credit_code(rng)
        while code in codes:
            code = credit_code(rng)
        names.add(name)
        codes.add(code)
        developers.append(DemoDeveloper(name, code, _person(rng), status, brand))
    return developers


def _community_name(rng: random.Random, category: str, scattered: bool,
                    brand: str | None, street: str) -> str:
    if category == OLD_RENOVATION:
        return rng.choice(_WORK_UNITS) + rng.choice(_OLD_SUFFIX)
    if scattered:
        return f"{street}{rng.randrange(2, 199)}号院"
    if brand and rng.random() < 0.3:
        return f"{brand}·{rng.choice(_POETIC)}"
    a, b = rng.sample(_NAME_A, 2) if rng.random() < 0.5 else (rng.choice(_NAME_A),
                                                              rng.choice(_NAME_B))
    return a + b + rng.choice(_NAME_SUFFIX)


def _delivery_date(rng: random.Random, category: str, scattered: bool) -> dt.date | None:
    def between(first: dt.date, last: dt.date) -> dt.date:
        return first + dt.timedelta(days=rng.randrange((last - first).days + 1))

    if category == DEVELOPER_COMMITTED:
        return between(dt.date(2012, 3, 1), dt.date(2020, 12, 31))
    if category == OLD_RENOVATION:
        return between(dt.date(1982, 1, 1), dt.date(2004, 12, 31))
    if category == DELIVERED_LT5:  # after 2016-07-07: not yet five years at the reference
        return between(dt.date(2016, 8, 1), dt.date(2021, 5, 31))
    if category == DELIVERED_5_10:  # 2011-07-07 … 2016-07-07
        return between(dt.date(2011, 8, 1), dt.date(2016, 6, 30))
    if scattered and rng.random() < 0.4:
        return None  # 零星 buildings often have no recorded delivery
    return between(dt.date(1988, 1, 1), dt.date(2011, 5, 31))


def _layout(rng: random.Random, category: str, size: int) -> tuple[str, int, int, int]:
    """(building word, units per building, floors, dwellings per floor and unit)."""
    if category in (OLD_RENOVATION, DELIVERED_GT10_SCATTERED):
        return rng.choice(("号楼", "栋", "栋", "幢")), rng.randint(1, 4), rng.randint(5, 7), 2
    floors = rng.choice((6, 11, 11, 17, 18, 18)) if size > 200 else rng.choice((6, 7, 11))
    return rng.choice(("号楼", "号楼", "栋")), rng.randint(1, 3), floors, 2 if size < 1500 else 4


def _tenants_for(tenants: list[DemoTenant], utilities: Iterable[str]) -> list[DemoTenant]:
    wanted = set(utilities)
    return [t for t in tenants if wanted <= set(t.utilities)] or tenants


def _communities(rng: random.Random, targets: dict[tuple[str, str], tuple[int, int]],
                 utilities: list[str], tenants: list[DemoTenant],
                 developers: list[DemoDeveloper],
                 taken: dict[int, set[str]]) -> list[DemoCommunity]:
    active = [i for i, d in enumerate(developers) if d.status == "active"]
    gone = [i for i, d in enumerate(developers) if d.status != "active"]
    streets = sorted({a + b for a in _STREET_A for b in _STREET_B})
    names = {t.id: set(taken.get(t.id, ())) for t in tenants}
    communities: list[DemoCommunity] = []
    for category in CATEGORIES:
        rows = {u: targets[(u, category)] for u in utilities if (u, category) in targets}
        if not rows:
            continue
        order = sorted(rows, key=lambda u: (-rows[u][0], u))
        lead = order[0]
        # which utilities each of this category's communities has, and how many households
        members: list[dict[str, int]] = [{} for _ in range(rows[lead][0])]
        for utility in order:
            count, households = rows[utility]
            sizes = _split(rng, households, count)
            if utility == lead:
                for member, size in zip(members, sizes, strict=True):
                    member[utility] = size
                continue
            shared = min(round(count * SHARED), len(members))
            pool = sorted(rng.sample(range(len(members)), shared),
                          key=lambda i: max(members[i].values()))
            rng.shuffle(sizes)
            for i, size in zip(pool, sorted(sizes[:shared]), strict=True):
                members[i][utility] = size
            members.extend({utility: size} for size in sizes[shared:])
        rng.shuffle(members)
        # Sub-districts by share (35/25/22/18 %) of households: the largest communities
        # first, each to the sub-district furthest below its share (now and then the next).
        members.sort(key=lambda m: -max(m.values()))
        weight = {t.id: TENANT_SHARES.get(t.code, 20) for t in tenants}
        held: Counter[int] = Counter()
        for member in members:
            size = max(member.values())
            total = sum(held.values()) + size
            eligible = sorted(_tenants_for(tenants, member), key=lambda t: (
                held[t.id] - total * weight[t.id] / sum(weight.values()), t.id))
            tenant = eligible[1] if len(eligible) > 1 and rng.random() < 0.25 else eligible[0]
            held[tenant.id] += size
            communities.append(_community(rng, len(communities), category, member, tenant,
                                          developers, active, gone, streets, names[tenant.id]))
    base: dict[str, int] = defaultdict(int)
    for community in communities:
        for utility, count in community.in_scope.items():
            community.account_base[utility] = base[utility]
            base[utility] += count
    return communities


def _community(rng: random.Random, index: int, category: str, in_scope: dict[str, int],
               tenant: DemoTenant, developers: list[DemoDeveloper], active: list[int],
               gone: list[int], streets: list[str], names: set[str]) -> DemoCommunity:
    scattered = category == DELIVERED_GT10_SCATTERED and rng.random() < 0.2
    share_gone = {DEVELOPER_COMMITTED: 0.15, DELIVERED_LT5: 0.1, DELIVERED_5_10: 0.2,
                  DELIVERED_GT10_SCATTERED: 0.35, OLD_RENOVATION: 0.2}[category]
    has_developer = {OLD_RENOVATION: 0.4, DELIVERED_GT10_SCATTERED: 0.6}.get(category, 1.0)
    developer = None
    if not scattered and rng.random() < has_developer:
        developer = rng.choice(gone if rng.random() < share_gone else active)
    street = rng.choice(streets)
    brand = developers[developer].brand if developer is not None else None
    for attempt in itertools.count():
        name = _community_name(rng, category, scattered, brand, street)
        if attempt > 5:
            name += ("二期", "三期", "东区", "西区", "南院", "北院")[attempt % 6]
        if attempt > 30:
            name += str(attempt)
        if name not in names:
            break
    names.add(name)
    delivery = _delivery_date(rng, category, scattered)
    committed, renovation = category == DEVELOPER_COMMITTED, category == OLD_RENOVATION
    derived = derive_category(developer_committed=committed, old_renovation=renovation,
                              delivery_date=delivery, scattered=scattered)
    if derived != category:  # the generator's own mistake, never the data's
        raise AssertionError(f"demo community of {category} derives {derived}")
    size = max(in_scope.values())
    word, units, floors, per_floor = _layout(rng, category, size)
    return DemoCommunity(index, tenant, name, f"平桥区{street}{rng.randrange(1, 400)}号",
                         category, developer, delivery, committed, renovation, scattered,
                         dict(in_scope), word, units, floors, per_floor)


def _route_options(community: DemoCommunity, developers: list[DemoDeveloper]
                   ) -> dict[str, float]:
    """The routes a community's project may take, with their weights."""
    developer = community.developer
    reachable = developer is None or developers[developer].status == "active"
    category = community.category
    key = (category if category in (DEVELOPER_COMMITTED, OLD_RENOVATION) else "delivered",
           reachable)
    weights = dict(_ROUTE_WEIGHTS[key])
    if developer is None:  # nobody to trace or to order
        weights.pop("rectification_tracing", None)
    return weights


def _states_along(route: str) -> list[str]:
    """The state after each prefix of `route` (index 0: the initial state)."""
    states = [INITIAL_STATE]
    for name in ROUTES[route]:
        states.append(TRANSITIONS[name].target or states[-1])
    return states


def _stop(rng: random.Random, phase: int, length: int) -> int:
    """How far along its route a project is: 2021 mostly done, 2023 mostly early."""
    done, fresh = {2021: (0.62, 0.02), 2022: (0.35, 0.06), 2023: (0.1, 0.3)}[phase]
    draw = rng.random()
    if draw < done:
        return length
    if draw < done + fresh or length < 2:
        return 0
    middle = range(1, length)
    weights = [k if phase == 2021 else (length - k if phase == 2023 else 1) for k in middle]
    return rng.choices(middle, weights=weights)[0]


def _projects(rng: random.Random, communities: list[DemoCommunity],
              developers: list[DemoDeveloper]) -> list[DemoProject]:
    projects = []
    for community in communities:
        for utility in sorted(community.in_scope):
            options = _route_options(community, developers)
            route = _weighted(rng, options)
            projects.append(DemoProject(len(projects), community, utility, route,
                                        _stop(rng, community.phase, len(ROUTES[route])),
                                        tuple(sorted(options))))
    for project in projects:
        state = _states_along(project.route)[project.stop]
        if state in DEADLINE_STATES:
            project.kind = "overdue" if rng.random() < 0.65 else "future"
    _cover_every_state(rng, projects)
    return projects


def _cover_every_state(rng: random.Random, projects: list[DemoProject]) -> None:
    """Move a few projects so that every state occurs, with enough overdue and pending ones.

    A project moves along its route, or to another route its community allows; the last
    project in a state, and projects already waiting on a deadline, stay where they are.
    """
    def final(project: DemoProject) -> str:
        return _states_along(project.route)[project.stop]

    counts = Counter(final(p) for p in projects)
    order = projects[:]
    rng.shuffle(order)

    def move(state: str, kind: str = "") -> bool:
        for project in order:
            if counts[final(project)] < 2 or final(project) in DEADLINE_STATES:
                continue
            for route in (project.route, *project.options):
                along = _states_along(route)
                if state in along[1:]:
                    counts[final(project)] -= 1
                    project.route, project.stop = route, along.index(state, 1)
                    project.kind = kind
                    counts[state] += 1
                    return True
        return False

    for state in STATES:
        if not counts[state]:
            move(state, "overdue" if state in DEADLINE_STATES else "")
    deadline_states = sorted(DEADLINE_STATES)
    for kind, minimum in (("overdue", _MIN_OVERDUE), ("future", _MIN_FUTURE)):
        wanted = min(minimum, max(1, len(projects) // 25))
        missing = wanted - sum(1 for p in projects if p.kind == kind)
        for i in range(max(0, missing)):
            if not move(deadline_states[i % len(deadline_states)], kind) and \
                    not any(move(s, kind) for s in deadline_states):
                break


def _schedule(rng: random.Random, steps: Sequence[str], start: dt.date, today: dt.date,
              kind: str, stretch: bool) -> list[tuple[dt.date, dt.date | None]]:
    """(day, deadline) of each step: plausible gaps and deadlines, never after `today`.

    Steps that need a passed deadline (逾期未改正) come after it. `kind` "overdue": the last
    deadline falls before `today`; "future": the last step is recent and its deadline still
    ahead. `stretch` lets an unfinished project's steps drag on towards today (the
    deadlines themselves stay 30–90 days).
    """
    offsets: list[float] = []  # days after the first step
    lengths: list[float | None] = []  # the deadline each step sets, in days after it
    t, last_deadline = 0.0, None
    for i, name in enumerate(steps):
        spec = TRANSITIONS[name]
        if i and spec.after_deadline and last_deadline is not None:
            t = max(t + rng.uniform(3, 20), last_deadline + rng.uniform(2, 25))
        elif i:
            t += rng.uniform(12, 75)
        length = rng.uniform(30, 90) if "deadline" in spec.required else None
        if length is not None:
            last_deadline = t + length
        offsets.append(t)
        lengths.append(length)
    first = start + dt.timedelta(days=rng.randint(10, 75))
    if kind == "future":
        last = today - dt.timedelta(days=rng.randint(2, 25))
        first = min(first, last)
        room = (last - first).days
        factor = min(1.0, room / offsets[-1]) if offsets[-1] else 1.0
        if factor == 1.0:  # recent: the last step lands on `last`
            first = last - dt.timedelta(days=round(offsets[-1]))
    else:
        margin = 2 if kind == "overdue" else 1
        first = min(first, today - dt.timedelta(days=margin + 10))
        room = (today - first).days - margin
        end = offsets[-1] + (lengths[-1] or 0.0)
        factor = room / end if end else 1.0
        if factor > 1.0:
            factor = rng.uniform(1.0, factor) if stretch else 1.0
    schedule: list[tuple[dt.date, dt.date | None]] = []
    previous, current_deadline = first, None
    for name, offset, length in zip(steps, offsets, lengths, strict=True):
        day = max(previous, first + dt.timedelta(days=math.floor(offset * factor)))
        if TRANSITIONS[name].after_deadline and current_deadline is not None:
            day = max(day, current_deadline + dt.timedelta(days=1))
        due = None
        if length is not None:
            due = current_deadline = day + dt.timedelta(
                days=max(1, math.ceil(length * min(factor, 1.0))))
        schedule.append((day, due))
        previous = day
    if kind == "future":
        day, _ = schedule[-1]
        schedule[-1] = (day, today + dt.timedelta(days=rng.randint(10, 75)))
    return schedule


class _Documents:
    """Document numbers (文号) per issuer and year; `renumber` puts them in date order."""

    def __init__(self) -> None:
        self.numbers: Counter[tuple[str, int]] = Counter()

    def next(self, issuer: str, year: int) -> str:
        self.numbers[(issuer, year)] += 1
        return f"{issuer}〔{year}〕{self.numbers[(issuer, year)]}号"

    @staticmethod
    def renumber(projects: list[DemoProject]) -> None:
        """Number each issuer's documents of a year in the order they were issued."""
        issued: dict[tuple[str, str], list[DemoEvent]] = defaultdict(list)
        for project in projects:
            for event in project.events:
                if event.document and (match := _DOCUMENT.fullmatch(event.document)):
                    issued[(match[1], match[2])].append(event)
        for (issuer, year), events in issued.items():
            for number, event in enumerate(sorted(events, key=lambda e: e.at), 1):
                event.document = f"{issuer}〔{year}〕{number}号"


def _issuer(name: str, tenant: DemoTenant, spec: UtilitySpec | None) -> str:
    actor = TRANSITIONS[name].actor
    if actor == UTILITY:
        company = spec.company if spec else "专营单位"
        return company.replace("信阳", "").replace("公司", "") + "函"
    if name == "impose_fine":
        return "平住建罚"
    if actor == DISTRICT_BODY:
        return "平质监核" if "verification" in name else "平住建责"
    return tenant.name[:2] + "办一户一表"


def _inputs(rng: random.Random, name: str, day: dt.date, due: dt.date | None,
            project: DemoProject, spec: UtilitySpec | None,
            documents: _Documents) -> dict[str, Any]:
    transition = TRANSITIONS[name]
    inputs: dict[str, Any] = {}
    for key in transition.inputs:
        required = key in transition.required
        if key == "deadline":
            inputs[key] = due
        elif key == "document" and (required or rng.random() < 0.4):
            inputs[key] = documents.next(_issuer(name, project.community.tenant, spec),
                                         day.year)
        elif key == "comment":
            if name in _COMMENTS:
                inputs[key] = rng.choice(_COMMENTS[name])
            elif required or rng.random() < 0.2:
                inputs[key] = rng.choice(_OPTIONAL_COMMENTS)
        elif key == "amount":
            inputs[key] = decimal.Decimal(rng.randrange(30, 101) * 10000).quantize(
                decimal.Decimal("0.01"))
        elif key in ("maintenance_first", "no_new_lines"):
            inputs[key] = rng.random() < 0.95
    return inputs


def _actors(tenant: DemoTenant, utility: str) -> dict[str, Actor]:
    username = {"water": "water", "electricity": "power"}.get(utility, utility)
    return {
        SUBDISTRICT: Actor(frozenset({TENANT_STAFF}), tenant_id=tenant.id,
                           name=f"{tenant.code}_staff"),
        DISTRICT_BODY: Actor(frozenset({TENANT_ADMIN}), tenant_id=tenant.id,
                             name=f"{tenant.code}_admin"),
        UTILITY: Actor(frozenset({UTILITY_STAFF}), utility_code=utility, name=username),
    }


def _history(rng: random.Random, project: DemoProject, today: dt.date,
             specs: dict[str, UtilitySpec], documents: _Documents) -> None:
    """Walk the project along its route by firing the procedure's transitions."""
    steps = list(ROUTES[project.route][:project.stop])
    if not steps:
        return
    final = _states_along(project.route)[project.stop]
    if final == "accepted":  # 五(五): online payment first, or right after acceptance
        steps.insert(len(steps) - 1 if rng.random() < 0.5 else len(steps),
                     "enable_online_payment")
    elif final in _BUILT and final not in DEADLINE_STATES and rng.random() < 0.3:
        steps.append("enable_online_payment")
    start = _PHASE_START[project.community.phase] + dt.timedelta(days=rng.randrange(0, 120))
    start = max(EARLIEST_DAY, min(start, today - dt.timedelta(days=30)))
    schedule = _schedule(rng, steps, start, today, project.kind,
                         stretch=final != "accepted" and rng.random() < 0.6)
    actors = _actors(project.community.tenant, project.utility)
    spec = specs.get(project.utility)
    holder = SimpleNamespace(state=INITIAL_STATE, tenant_id=project.community.tenant.id,
                             utility=project.utility, deadline=None, fine_amount=None,
                             online_payment_enabled_at=None, maintenance_first=None,
                             no_new_lines=None)
    previous_at = None
    for name, (day, due) in zip(steps, schedule, strict=True):
        at = _utc(day, rng.randint(8 * 60 + 30, 17 * 60 + 30))
        if previous_at is not None and at <= previous_at:
            at = previous_at + dt.timedelta(minutes=rng.randint(1, 10))
        previous_at = at
        actor = actors[TRANSITIONS[name].actor]
        inputs = _inputs(rng, name, day, due, project, spec, documents)
        step = fire(holder, name, actor, inputs, today=day, now=at)
        project.events.append(DemoEvent(
            name, step.from_state, step.to_state, at, actor.name, step.inputs.get("deadline"),
            step.inputs.get("document"), step.inputs.get("comment"),
            step.inputs.get("amount")))
    for attribute in ("state", "deadline", "fine_amount", "online_payment_enabled_at",
                      "maintenance_first", "no_new_lines"):
        setattr(project, attribute, getattr(holder, attribute))


def _charges(rng: random.Random, projects: list[DemoProject], specs: dict[str, UtilitySpec],
             scale: float, developers: list[DemoDeveloper]) -> list[DemoCharge]:
    """A handful of reported charges: some the plan cancelled (flagged), some legitimate."""
    candidates = [p for p in projects if p.events and p.utility in specs]
    if not candidates:
        return []
    chosen = rng.sample(candidates, min(len(candidates), max(6, round(24 * scale))))
    charges = []
    for n, project in enumerate(chosen):
        spec = specs[project.utility]
        prohibited = n % 5 != 1 and n % 5 != 3  # 3 of 5 are cancelled fees
        if prohibited and spec.cancelled_fees:
            fee = rng.choice(spec.cancelled_fees)
            variants = spec.fee_variants.get(fee, ())
            name = rng.choice((fee, f"收取{fee}", f"{fee[:-1]}费用", *variants))
            amount = rng.choice((50, 80, 100, 150, 200, 300, 500))
        else:
            name = rng.choice(_LEGIT_CHARGES.get(project.utility, ("材料费",)))
            amount = rng.choice((86, 120, 180, 240, 350))
        community = project.community
        developer = community.developer
        charged_by = rng.choice((spec.company, "小区物业服务企业",
                                 developers[developer].name if developer is not None
                                 else spec.company))
        first = project.first_day or EARLIEST_DAY
        last = (project.events[-1].at + _BEIJING_OFFSET).date() if project.events else first
        floor = rng.randint(1, community.floors)
        charges.append(DemoCharge(
            project, name, decimal.Decimal(amount).quantize(decimal.Decimal("0.01")),
            charged_by,
            f"{rng.randint(1, 3)}{community.building_word}{rng.randint(1, community.units)}单元"
            f"{floor}{rng.randint(1, community.per_floor):02d}住户",
            first + dt.timedelta(days=rng.randint(0, max(0, (last - first).days))),
            rng.choice(("居民来电反映", "督查发现", "网格员入户核实", "业主委员会书面反映"))))
    return charges


def build_demo(tenants: list[DemoTenant], specs: dict[str, UtilitySpec], *,
               seed: int = DEFAULT_SEED, scale: float = 1.0, today: dt.date,
               taken_names: dict[int, set[str]] | None = None) -> DemoData:
    """The demo district as plain objects (no database): deterministic given the arguments.

    `specs`: the enabled utilities by code; plan rows of other utilities are skipped.
    `taken_names`: community names already used per tenant id (avoided).
    """
    if not tenants:
        raise ValueError("没有启用的办事处：请先运行 onemeter tenants sync")
    rng = random.Random(seed)
    all_targets = demo_targets(scale)
    planned = list(dict.fromkeys(u for u, _ in all_targets))
    utilities = [u for u in planned if u in specs]
    targets = {k: v for k, v in all_targets.items() if k[0] in specs}
    developers = _developers(rng)
    communities = _communities(rng, targets, utilities, tenants, developers, taken_names or {})
    projects = _projects(rng, communities, developers)
    documents = _Documents()
    for project in projects:
        _history(rng, project, today, specs, documents)
    documents.renumber(projects)
    charges = _charges(rng, projects, specs, scale, developers)
    return DemoData(seed, scale, today, targets, developers, communities, projects, charges,
                    tuple(u for u in planned if u not in specs))


# --- households and accounts, per community --------------------------------------------------

def _permute(n: int, multiplier: int, offset: int, modulus: int) -> int:
    return (n * multiplier + offset) % modulus


def _numbers(utility: str, n: int, year: int) -> tuple[str, str]:
    """(account number, meter number) of the `n`-th account of `utility`, unique per n."""
    if utility == "water":
        return (f"31{_permute(n, 7919, 1_000_003, 10 ** 8):08d}",
                f"SS{year % 100:02d}{_permute(n, 3331, 20_000_009, 10 ** 8):08d}")
    if utility == "electricity":
        return (f"41{_permute(n, 7919, 5_200_011, 10 ** 8):08d}",
                f"4130001{_permute(n, 3331, 123_456_789, 10 ** 15):015d}")
    return (f"{_permute(n, 7919, 17, 10 ** 10):010d}",
            f"{_permute(n, 3331, 29, 10 ** 12):012d}")


def _number_formats_fit(specs: dict[str, UtilitySpec]) -> dict[str, bool]:
    """Whether the generated numbers match each utility's patterns (else they are left empty)."""
    fits = {}
    for code, spec in specs.items():
        account, meter = _numbers(code, 12345, 2022)
        fits[code] = bool(re.fullmatch(spec.account_pattern, account)
                          and re.fullmatch(spec.meter_pattern, meter))
    return fits


def _status(rng: random.Random, state: str, online: bool, opted_out: bool) -> str:
    if opted_out or state == INITIAL_STATE:
        return "surveyed"
    draw = rng.random()
    if state == "accepted":
        status = ("closed" if draw < 0.003 else "active" if draw < 0.9
                  else "installed" if draw < 0.97 else "surveyed")
    elif state in _BUILT:
        status = "installed" if draw < 0.6 else "surveyed"
    else:
        status = "installed" if draw < 0.25 else "surveyed"
    if status == "installed" and online and state != "accepted" and rng.random() < 0.5:
        status = "active"
    if status in ("active", "closed") and not online:
        status = "installed"
    return status


def _household_rows(data: DemoData, community: DemoCommunity,
                   projects: dict[str, DemoProject], specs: dict[str, UtilitySpec],
                   fits: dict[str, bool], taken_accounts: set[tuple[str, str]]
                   ) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """(household row, its account rows) of `community`, from its own random stream."""
    rng = random.Random(f"{data.seed}:households:{community.index}")
    today = data.today
    first = min((p.first_day for p in projects.values() if p.first_day), default=None)
    optout_from = first or dt.date(2021, 8, 2)
    produced = 0
    for building in itertools.count(1):
        for unit in range(1, community.units + 1):
            for floor in range(1, community.floors + 1):
                for door in range(1, community.per_floor + 1):
                    if produced == community.size:
                        return
                    b, u, room = f"{building}{community.building_word}", f"{unit}单元", \
                        f"{floor}{door:02d}"
                    opted_out = rng.random() < 0.015
                    span = max(0, (today - optout_from).days - 1)
                    household = {
                        "tenant_id": community.tenant.id, "building": b, "unit": u,
                        "room": room, "natural_key": household_key(b, u, room),
                        "owner_name": _person(rng),
                        "phone": _phone(rng) if rng.random() < 0.95 else None,
                        "id_number": None, "opted_out": opted_out,
                        "opted_out_at": _utc(optout_from + dt.timedelta(
                            days=rng.randint(0, min(span, 180))), rng.randint(540, 1050))
                        if opted_out else None,
                        "optout_reason": rng.choice(_OPTOUT_REASONS) if opted_out else None,
                        "optout_letter": None,
                    }
                    accounts = [_account(rng, data, community, projects[utility], specs,
                                         fits, taken_accounts, produced, opted_out)
                                for utility in sorted(community.in_scope)
                                if produced < community.in_scope[utility]]
                    produced += 1
                    yield household, accounts


def _account(rng: random.Random, data: DemoData, community: DemoCommunity,
             project: DemoProject, specs: dict[str, UtilitySpec], fits: dict[str, bool],
             taken: set[tuple[str, str]], position: int, opted_out: bool) -> dict[str, Any]:
    utility = project.utility
    spec = specs[utility]
    online = project.online_day
    status = _status(rng, project.state, online is not None, opted_out)
    account_no = meter_no = rating = paid_online = None
    if status != "surveyed":
        number = community.account_base[utility] + position
        year = (project.first_day or data.today).year
        account, meter = _numbers(utility, number, year) if fits[utility] else (None, None)
        meter_no = meter
        if status != "installed" or rng.random() < 0.5:
            account_no = account if (utility, account) not in taken else None
        choices = spec.rating_choices
        if choices:
            weights = _RATING_WEIGHTS.get(utility, tuple(range(len(choices), 0, -1)))
            rating = rng.choices(choices, weights=weights[:len(choices)])[0]
    if status in ("active", "closed") and online is not None:
        span = max(0, min(120, (data.today - online).days))
        paid_online = online + dt.timedelta(days=rng.randint(0, span))
    note = ("居民自愿不参与改造（已签不愿参与承诺书）" if opted_out
            else "已销户（房屋合并）" if status == "closed" else None)
    return {"tenant_id": community.tenant.id, "utility": utility, "account_no": account_no,
            "meter_no": meter_no, "rating": rating, "status": status,
            "online_payment_on": paid_online, "note": note}


# --- writing ----------------------------------------------------------------------------------

def _chunks(rows: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


def _insert(session: Session, table: sa.Table, rows: Sequence[dict[str, Any]],
            returning: bool = False) -> list[int]:
    """Insert `rows` in batches; with `returning`, their new ids in the rows' order.

    SQLite: `executemany` (parents with RETURNING in parameter order). PostgreSQL: ids taken
    from the table's own sequence with `nextval` (so the sequence stays right), then one
    `INSERT … SELECT FROM unnest(arrays)` per batch: a few parameters instead of one per
    value, and still an INSERT, so row-level security checks every row (COPY FROM is refused
    on tables with row-level security).
    """
    if not rows:
        return []
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        ids: list[int] = []
        for chunk in _chunks(rows):
            if returning:
                statement = table.insert().returning(table.c.id, sort_by_parameter_order=True)
                ids.extend(session.execute(statement, list(chunk)).scalars())
            else:
                session.execute(table.insert(), list(chunk))
        return ids
    ids = []
    if returning:
        ids = sorted(session.execute(
            sa.text("SELECT nextval(pg_get_serial_sequence(:t, 'id')) FROM generate_series(1, :n)"),
            {"t": table.name, "n": len(rows)}).scalars())
        rows = [dict(row, id=pk) for row, pk in zip(rows, ids, strict=True)]
    for chunk in _chunks(rows, 4 * CHUNK):
        # columns NULL in the whole batch are left out: an all-NULL array has no element type
        columns = [c for c in chunk[0] if any(row[c] is not None for row in chunk)]
        # VARCHAR without its length: a cast would cut a long value, the INSERT refuses it
        arrays = ", ".join(
            f"CAST(:p{i} AS {_VARCHAR_LENGTH.sub('VARCHAR', _sql_type(table, c, connection))}[])"
            for i, c in enumerate(columns))
        session.execute(
            sa.text(f"INSERT INTO {table.name} ({', '.join(columns)}) "
                    f"SELECT * FROM unnest({arrays})"),
            {f"p{i}": [row[c] for row in chunk] for i, c in enumerate(columns)})
    return ids


_VARCHAR_LENGTH = re.compile(r"^VARCHAR\(\d+\)$")


def _sql_type(table: sa.Table, column: str, connection: sa.Connection) -> str:
    return table.c[column].type.compile(dialect=connection.dialect)


def _demo_exists(session: Session) -> bool:
    with use_scope(TenantScope.all_read_only(), session):
        return session.execute(
            sa.select(Community.id).join(Developer, Developer.id == Community.developer_id)
            .where(Developer.contact == DEMO_CONTACT).limit(1)).first() is not None


def _tenants(session: Session) -> list[DemoTenant]:
    with use_scope(TenantScope.all_read_only(), session):
        rows = session.execute(sa.select(Tenant.id, Tenant.code, Tenant.name, Tenant.utilities)
                               .where(Tenant.active.is_(True)).order_by(Tenant.id)).all()
    known = [r for r in rows if r.code in TENANT_SHARES]
    chosen = sorted(known, key=lambda r: list(TENANT_SHARES).index(r.code)) if known else rows
    return [DemoTenant(r.id, r.code, r.name, tuple(r.utilities or ())) for r in chosen]


def _user_ids(session: Session, names: Iterable[str]) -> dict[str, int]:
    from onemeter.security import OMUser

    wanted = sorted(set(names))
    with use_scope(TenantScope.all_read_only(), session):
        return dict(session.execute(sa.select(OMUser.username, OMUser.id)
                                    .where(OMUser.username.in_(wanted))).all())


def _developer_ids(session: Session, developers: list[DemoDeveloper]
                   ) -> tuple[dict[int, int], int]:
    """Demo developer index → id; developers left by an earlier demo are reused."""
    with use_scope(TenantScope.all_read_only(), session):
        table = Developer.__table__
        codes = [d.credit_code for d in developers]
        existing = dict(session.execute(sa.select(table.c.credit_code, table.c.id)
                                        .where(table.c.credit_code.in_(codes))).all())
        new = [(i, d) for i, d in enumerate(developers) if d.credit_code not in existing]
        ids = _insert(session, table, [
            {"name": d.name, "credit_code": d.credit_code,
             "legal_representative": d.legal_representative, "contact": DEMO_CONTACT,
             "status": d.status} for _, d in new], returning=True)
    mapping = {i: existing[d.credit_code] for i, d in enumerate(developers)
               if d.credit_code in existing}
    mapping.update({i: pk for (i, _), pk in zip(new, ids, strict=True)})
    return mapping, len(new)


def _audit(session: Session, tenant_id: int, model: str, ids: list[int], rows: int,
           seed: int) -> None:
    if not rows:
        return
    object_id = f"demo:{min(ids)}-{max(ids)}" if ids else "demo"
    append_entries(session.connection(), [{
        "tenant_id": tenant_id, "model": model, "object_id": object_id, "action": "create",
        "before": None, "after": {"批量载入": "演示数据", "rows": rows, "seed": seed}}])


def _write_tenant(session: Session, data: DemoData, tenant: DemoTenant,
                  developer_ids: dict[int, int], user_ids: dict[str, int],
                  specs: dict[str, UtilitySpec], fits: dict[str, bool],
                  taken_accounts: set[tuple[str, str]], counts: Counter[str]
                  ) -> list[dict[str, Any]]:
    """Write one tenant's rows but its meter accounts, which it returns (with household ids)."""
    communities = [c for c in data.communities if c.tenant.id == tenant.id]
    if not communities:
        return []
    tables = {m: m.__table__ for m in (Community, Household, MeterAccount, RetrofitProject,
                                       ProjectEvent, ProjectCharge)}
    community_ids = _insert(session, tables[Community], [{
        "tenant_id": tenant.id, "name": c.name, "address": c.address,
        "developer_id": developer_ids.get(c.developer) if c.developer is not None else None,
        "delivery_date": c.delivery_date, "developer_committed": c.developer_committed,
        "old_renovation": c.old_renovation, "scattered": c.scattered,
        "derived_category": c.category, "derived_phase": phase_of(c.category)}
        for c in communities], returning=True)
    by_community = {c.index: pk for c, pk in zip(communities, community_ids, strict=True)}
    projects = [p for p in data.projects if p.community.tenant.id == tenant.id]
    project_ids = _insert(session, tables[RetrofitProject], [{
        "tenant_id": tenant.id, "community_id": by_community[p.community.index],
        "utility": p.utility, "state": p.state, "deadline": p.deadline,
        "fine_amount": p.fine_amount, "online_payment_enabled_at": p.online_payment_enabled_at,
        "maintenance_first": p.maintenance_first, "no_new_lines": p.no_new_lines,
        "comment": None} for p in projects], returning=True)
    by_project = {p.index: pk for p, pk in zip(projects, project_ids, strict=True)}
    event_rows = [{
        "tenant_id": tenant.id, "project_id": by_project[p.index], "at": e.at,
        "user_id": user_ids.get(e.actor), "actor": e.actor, "transition": e.transition,
        "from_state": e.from_state, "to_state": e.to_state, "comment": e.comment,
        "deadline": e.deadline, "document": e.document, "amount": e.amount}
        for p in projects for e in p.events]
    _insert(session, tables[ProjectEvent], event_rows)
    charge_rows = [{
        "tenant_id": tenant.id, "project_id": by_project[c.project.index], "name": c.name,
        "amount": c.amount, "charged_by": c.charged_by, "paid_by": c.paid_by,
        "charged_on": c.charged_on, "document": None,
        "prohibited_fee": specs[c.project.utility].cancelled_fee(c.name),
        "comment": c.comment} for c in data.charges if c.project.community.tenant.id == tenant.id]
    _insert(session, tables[ProjectCharge], charge_rows)
    # households, a batch of communities at a time; their accounts are returned (see below)
    project_of = {(p.community.index, p.utility): p for p in projects}
    household_ids: list[int] = []
    accounts: list[dict[str, Any]] = []
    batch: list[dict[str, Any]] = []
    pending: list[list[dict[str, Any]]] = []

    def flush() -> None:
        ids = _insert(session, tables[Household], batch, returning=True)
        household_ids.extend(ids)
        accounts.extend(dict(account, household_id=pk)
                        for pk, owned in zip(ids, pending, strict=True) for account in owned)
        batch.clear()
        pending.clear()

    for community in communities:
        mine = {u: project_of[(community.index, u)] for u in community.in_scope}
        for household, owned in _household_rows(data, community, mine, specs, fits,
                                               taken_accounts):
            household["community_id"] = by_community[community.index]
            batch.append(household)
            pending.append(owned)
        if len(batch) >= CHUNK:
            flush()
    if batch:
        flush()
    for model, ids, rows in ((Community, community_ids, len(community_ids)),
                             (Household, household_ids, len(household_ids)),
                             (RetrofitProject, project_ids, len(project_ids)),
                             (ProjectEvent, [], len(event_rows)),
                             (ProjectCharge, [], len(charge_rows))):
        _audit(session, tenant.id, model.__name__, ids, rows, data.seed)
        counts[model.__tablename__] += rows
    return accounts


def _write_accounts(session: Session, tenant: DemoTenant, accounts: list[dict[str, Any]],
                    seed: int, counts: Counter[str]) -> None:
    _insert(session, MeterAccount.__table__, accounts)
    _audit(session, tenant.id, MeterAccount.__name__, [], len(accounts), seed)
    counts[MeterAccount.__tablename__] += len(accounts)


def _report_lines(data: DemoData, tenants: list[DemoTenant]) -> list[TenantLine]:
    lines = []
    for tenant in tenants:
        for utility in dict.fromkeys(u for u, _ in data.targets):
            projects = [p for p in data.projects
                        if p.community.tenant.id == tenant.id and p.utility == utility]
            if projects:
                lines.append(TenantLine(tenant.name, utility, len(projects),
                                        sum(p.community.in_scope[utility] for p in projects),
                                        len(projects)))
    return lines


def _plugin_demo_rows(session: Session, tenant_ids: list[int], seed: int,
                      today: dt.date) -> dict[str, int]:
    """Let each plugin add its demo rows (`onemeter_demo_loaded`); their counts by label."""
    from flask import current_app

    pm = current_app.extensions.get("onemeter_plugins")
    if pm is None:
        return {}
    out: dict[str, int] = {}
    with use_scope(TenantScope.all_read_only(), session):
        for answer in pm.hook.onemeter_demo_loaded(session=session, tenant_ids=tenant_ids,
                                                   seed=seed, today=today):
            for label, count in (answer or {}).items():
                out[label] = out.get(label, 0) + int(count)
    return out


def _supervision_rows(session: Session, tenants: list[DemoTenant], today: dt.date
                      ) -> dict[str, int]:
    """A work meeting with its action items and a few 督办通知 (六), dated from `today`: one
    answered in time, one answered late, one unanswered past its date, one still open, one
    to the water company answered through the office. Written as the pages write them:
    in the addressee's scope, or district-wide for a unit."""
    from onemeter.district.models import ActionItem, DistrictRecord, SupervisionNotice

    if not tenants:
        return {}
    days = dt.timedelta
    held = today - days(40)
    record = DistrictRecord(
        kind="meeting", held_on=held, title=f"{held.year}年{held.month}月一户一表工作例会",
        participants="领导小组办公室、各办事处、供水公司、供电公司、区纪委监委室主任",
        concerns="、".join(t.name for t in tenants), recorded_by="district",
        content="通报各办事处改造进度；逾期项目倒排工期，限期整改", follow_up_by=held + days(30))
    first, second = tenants[0], tenants[1 % len(tenants)]
    items = [(first.id, None, f"{first.name}完成剩余小区入户摸底并报送台账", held + days(20),
              None, None),
             (second.id, None, f"{second.name}督促开发建设单位移交供水设施", held + days(25),
              held + days(22), "已下达限期移交通知，开发建设单位已移交"),
             (None, "供水公司", "供水公司对已完成改造小区五个工作日内完成查验", today + days(10),
              None, None)]
    year = today.year
    notices = [(first.id, None, 1, "入户摸底进度滞后", held + days(3), held + days(13), None),
               (second.id, None, 2, "违规收取初装费问题整改", held + days(5), held + days(15),
                (held + days(19), "已责令退还，退费凭证已报送")),
               (tenants[-1].id, None, 3, "年度任务倒排工期计划", today - days(2), today + days(8),
                None),
               (None, "供水公司", 4, "已完成改造小区查验接收滞后", held + days(6), held + days(16),
                (held + days(12), "已安排专人查验，本周内完成接收"))]
    with use_scope(TenantScope.all_read_only(), session):
        session.add(record)
        session.flush()
    for tenant_id, unit, text, deadline, closed_on, note in items:
        with use_scope(TenantScope(None, tenant_id, label="demo-supervision"), session):
            session.add(ActionItem(record_id=record.id, tenant_id=tenant_id, unit=unit,
                                   text=text, deadline=deadline, closed_on=closed_on,
                                   closing_note=note))
            session.flush()
    for tenant_id, unit, n, subject, issued, due, reply in notices:
        replier = "district" if unit else next(
            (f"{t.code}_staff" for t in tenants if t.id == tenant_id), None)
        with use_scope(TenantScope(None, tenant_id, label="demo-supervision"), session):
            session.add(SupervisionNotice(
                number=f"平督办〔{year}〕演示{n}号", issued_on=issued,
                issuer="inspectorate" if n % 2 else "office", issued_by="district",
                tenant_id=tenant_id, unit=unit, subject=subject, reply_due=due,
                content=f"关于{subject}，请于{due.month}月{due.day}日前书面答复落实情况。",
                reply=reply[1] if reply else None, replied_on=reply[0] if reply else None,
                replied_by=replier if reply else None))
            session.flush()
    return {"督办通知": len(notices), "议定事项": len(items)}


def load_demo(session: Session, *, seed: int = DEFAULT_SEED, today: dt.date | None = None,
              scale: float = 1.0) -> DemoReport:
    """Load the demo district into `session` (the caller commits); idempotent.

    Does nothing, reporting "已有数据，未重复载入", when a demo community already exists.
    `scale` 1.0 is the plan's size; `today` defaults to Beijing's date.
    """
    from onemeter.retrofit.service import beijing_today

    started = time.perf_counter()
    today = today or beijing_today()
    if _demo_exists(session):
        return DemoReport(False, ALREADY_LOADED, seed, scale, today)
    tenants = _tenants(session)
    specs = {code: spec for code in dict.fromkeys(u for u, _ in demo_targets(scale))
             if (spec := utility_spec(code)) is not None}
    with use_scope(TenantScope.all_read_only(), session):
        taken_names: dict[int, set[str]] = defaultdict(set)
        for tenant_id, name in session.execute(sa.select(Community.tenant_id, Community.name)):
            taken_names[tenant_id].add(name)
        taken_accounts = {(u, a) for u, a in session.execute(
            sa.select(MeterAccount.utility, MeterAccount.account_no)
            .where(MeterAccount.account_no.is_not(None)))}
    data = build_demo(tenants, specs, seed=seed, scale=scale, today=today,
                      taken_names=taken_names)
    developer_ids, new_developers = _developer_ids(session, data.developers)
    user_ids = _user_ids(session, [e.actor for p in data.projects for e in p.events])
    fits = _number_formats_fit(specs)
    counts: Counter[str] = Counter()
    accounts = {}
    for tenant in tenants:
        with use_scope(TenantScope.tenant(tenant.id), session):
            accounts[tenant.id] = _write_tenant(session, data, tenant, developer_ids, user_ids,
                                                specs, fits, taken_accounts, counts)
    if session.connection().dialect.name == "postgresql":
        # Each account's foreign-key check looks its household up by (tenant_id, id). The
        # tables have no statistics yet (the app role may not ANALYZE them), and a check
        # planned while om_household was small uses the tenant_id-only index, scanning
        # every household of the tenant per account (minutes instead of seconds). So the
        # accounts go in after every household, with cached plans rebuilt for the table's
        # present size.
        session.execute(sa.text("DISCARD PLANS"))
    for tenant in tenants:
        with use_scope(TenantScope.tenant(tenant.id), session):
            _write_accounts(session, tenant, accounts.pop(tenant.id), seed, counts)
    rows = {"developers": new_developers,
            "communities": counts["om_community"], "households": counts["om_household"],
            "meter_accounts": counts["om_meter_account"],
            "projects": counts["om_retrofit_project"], "events": counts["om_project_event"],
            "charges": counts["om_project_charge"]}
    rows.update(_supervision_rows(session, tenants, today))
    rows.update(_plugin_demo_rows(session, [t.id for t in tenants], seed, today))
    overdue = sum(1 for p in data.projects if is_overdue(p, today))
    return DemoReport(True, "演示数据已载入", seed, scale, today,
                      seconds=time.perf_counter() - started, rows=rows,
                      per_tenant=_report_lines(data, tenants),
                      states=dict(Counter(p.state for p in data.projects)), overdue=overdue,
                      skipped_utilities=data.skipped_utilities)


__all__ = ["ALREADY_LOADED", "DEMO_CONTACT", "DEMO_TABLES", "DemoReport", "DemoTenant",
           "build_demo", "demo_targets", "load_demo"]
