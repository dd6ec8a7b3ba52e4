"""Registry tables: developers (shared), communities and households (tenant-owned), plan targets.

A community's plan category and phase year are derived from its facts and stored, so rollups
group in SQL; a person may override either with a reason, and both values stay visible.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates
from stdnum import exceptions as stdnum_errors
from stdnum.cn import uscc

from onemeter.database import Model
from onemeter.registry.categories import (
    CATEGORIES,
    PHASE_YEARS,
    category_label,
    derive_category,
    phase_of,
)
from onemeter.registry.normalize import household_key
from onemeter.tenancy import Tenant, TenantScoped, tenant_reference

DEVELOPER_STATUSES = ("active", "deregistered", "dissolved", "unreachable")
DEVELOPER_STATUS_LABELS = {"active": "存续", "deregistered": "注销", "dissolved": "解散",
                           "unreachable": "无法联系"}
UTILITIES = ("water", "electricity")
UTILITY_LABELS = {"water": "供水", "electricity": "供电"}


def _category_type(name: str) -> sa.Enum:
    # A VARCHAR with a CHECK rather than a native enum: a new category is a code change,
    # not an ALTER TYPE, and SQLite enforces it too.
    return sa.Enum(*CATEGORIES, name=name, native_enum=False, create_constraint=True,
                   length=32)


def check_credit_code(code: str) -> str:
    """The unified social credit code (统一社会信用代码, GB 32100-2015) in compact form.

    Raises ValueError with a Chinese message when its length, characters or check digit are
    wrong. The check digit is python-stdnum's `stdnum.cn.uscc` (maintained, GB 32100 mod 31).
    """
    try:
        return uscc.validate(code)
    except stdnum_errors.InvalidLength as exc:
        raise ValueError("统一社会信用代码应为18位") from exc
    except stdnum_errors.InvalidChecksum as exc:
        raise ValueError("统一社会信用代码校验位不正确") from exc
    except stdnum_errors.ValidationError as exc:
        raise ValueError("统一社会信用代码含有不允许的字符（不使用 I、O、Z、S、V）") from exc


class Developer(Model):
    """开发建设单位: shared reference data, one row per company across all sub-districts.

    Not tenant-owned: a developer builds in several sub-districts, and tracing a dissolved
    one (五(四)) must find every community it left. Sub-district staff add and correct them.
    """

    __tablename__ = "om_developer"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    credit_code: Mapped[str | None] = mapped_column(sa.String(18), unique=True)
    legal_representative: Mapped[str | None] = mapped_column(sa.String(50))
    contact: Mapped[str | None] = mapped_column(sa.String(100))
    status: Mapped[str] = mapped_column(
        sa.Enum(*DEVELOPER_STATUSES, name="ck_om_developer_status", native_enum=False,
                create_constraint=True, length=16),
        nullable=False, default="active")

    def __repr__(self) -> str:
        return self.name

    @validates("credit_code")
    def _valid_credit_code(self, key: str, value: str | None) -> str | None:
        return check_credit_code(value) if value else None

    @property
    def status_label(self) -> str:
        return DEVELOPER_STATUS_LABELS.get(self.status, self.status)


class Community(TenantScoped, Model):
    """小区: the unit the plan counts and the procedure retrofits (one project per utility)."""

    __tenant_id_index__ = False  # (tenant_id, id) serves it; see TenantScoped

    __tablename__ = "om_community"
    __tenant_table_args__ = (
        sa.UniqueConstraint("tenant_id", "name", name="uq_om_community_tenant_name"),
        sa.CheckConstraint("phase_override IS NULL OR phase_override IN (2021, 2022, 2023)",
                           name="ck_om_community_phase_override"),
        # An override without a reason is refused by the database too, not only the form.
        sa.CheckConstraint("(category_override IS NULL AND phase_override IS NULL)"
                           " OR (override_reason IS NOT NULL AND override_reason <> '')",
                           name="ck_om_community_override_reason"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    address: Mapped[str | None] = mapped_column(sa.String(200))
    developer_id: Mapped[int | None] = mapped_column(sa.ForeignKey("om_developer.id"),
                                                     index=True)
    delivery_date: Mapped[dt.date | None] = mapped_column(sa.Date)
    # 开发建设单位出具承诺 (二(一)1)
    developer_committed: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
    # 纳入老旧小区改造 (二(一)3)
    old_renovation: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
    # 零星住宅小区 (二(三))
    scattered: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
    derived_category: Mapped[str | None] = mapped_column(_category_type("ck_om_community_cat"))
    derived_phase: Mapped[int | None] = mapped_column(sa.Integer)
    category_override: Mapped[str | None] = mapped_column(
        _category_type("ck_om_community_cat_override"))
    phase_override: Mapped[int | None] = mapped_column(sa.Integer)
    override_reason: Mapped[str | None] = mapped_column(sa.String(500))
    override_by: Mapped[str | None] = mapped_column(sa.String(128))
    override_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime)

    tenant: Mapped[Tenant] = relationship(Tenant)
    developer: Mapped[Developer | None] = relationship(Developer)

    def __repr__(self) -> str:
        return self.name

    @classmethod
    def om_sample(cls, session: Any, tenant_id: int, marker: str) -> Community:
        """A sample row for the generic tests (names are unique per sub-district)."""
        sample = cls(tenant_id=tenant_id, name=f"{marker}name{uuid.uuid4().hex[:8]}",
                     address=f"{marker}address", delivery_date=dt.date(2014, 5, 1))
        session.add(sample)
        session.flush()
        return sample

    def rederive(self) -> None:
        """Recompute the derived category and phase from the community's facts."""
        self.derived_category = derive_category(
            developer_committed=bool(self.developer_committed),
            old_renovation=bool(self.old_renovation), delivery_date=self.delivery_date,
            scattered=bool(self.scattered))
        self.derived_phase = phase_of(self.derived_category)

    @hybrid_property
    def category(self) -> str | None:
        """The category in force: the override if a person set one, else the derived one."""
        return self.category_override or self.derived_category

    @category.inplace.expression
    @classmethod
    def _category_expression(cls) -> Any:
        return sa.func.coalesce(cls.category_override, cls.derived_category)

    @hybrid_property
    def phase_year(self) -> int | None:
        """The phase year in force: overridden, else that of the category in force."""
        if self.phase_override:
            return self.phase_override
        if self.category_override:
            return phase_of(self.category_override)
        return self.derived_phase

    @phase_year.inplace.expression
    @classmethod
    def _phase_year_expression(cls) -> Any:
        by_override = sa.case(
            *((cls.category_override == c, phase_of(c)) for c in CATEGORIES), else_=None)
        return sa.func.coalesce(cls.phase_override, by_override, cls.derived_phase)

    @property
    def overridden(self) -> bool:
        return bool(self.category_override or self.phase_override)

    @property
    def override_label(self) -> str:
        """"人工调整" when a person overrode the category or phase (a badge in the list)."""
        return "人工调整" if self.overridden else ""

    @property
    def category_label(self) -> str:
        return category_label(self.category)

    @property
    def derived_category_label(self) -> str:
        return category_label(self.derived_category)

    def set_override(self, *, category: str | None, phase: int | None, reason: str | None,
                     by: str | None, at: dt.datetime | None = None) -> None:
        """Override the category and/or phase; a reason is mandatory. Both None clears it.

        Raises ValueError (Chinese message) for a missing reason or an unknown value.
        """
        if category is not None and category not in CATEGORIES:
            raise ValueError(f"未知的类别：{category}")
        if phase is not None and phase not in PHASE_YEARS:
            raise ValueError(f"改造年度只能是 {'、'.join(map(str, PHASE_YEARS))}")
        if category is None and phase is None:
            self.category_override = self.phase_override = None
            self.override_reason = self.override_by = self.override_at = None
            return
        reason = (reason or "").strip()
        if not reason:
            raise ValueError("调整类别或改造年度必须填写理由")
        self.category_override, self.phase_override = category, phase
        self.override_reason, self.override_by = reason, by
        self.override_at = at or dt.datetime.now(dt.UTC).replace(tzinfo=None)


@event.listens_for(Community, "before_insert")
@event.listens_for(Community, "before_update")
def _rederive_community(mapper: Any, connection: Any, target: Community) -> None:
    # Derived here, not in a form hook: imports and scripts get the same category.
    target.rederive()


class Household(TenantScoped, Model):
    """住户: one dwelling of a community, recorded once (natural key building-unit-room)."""

    __tenant_id_index__ = False  # (tenant_id, id) serves it; see TenantScoped
    __tenant_foreign_key__ = False  # the (tenant_id, community_id) key checks the tenant

    __tablename__ = "om_household"
    __tenant_table_args__ = (
        tenant_reference("community_id", "om_community"),
        sa.UniqueConstraint("tenant_id", "community_id", "natural_key",
                            name="uq_om_household_natural_key"),
        sa.Index("ix_om_household_tenant_community_building", "tenant_id", "community_id",
                 "building"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    community_id: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    building: Mapped[str | None] = mapped_column(sa.String(32))
    unit: Mapped[str | None] = mapped_column(sa.String(32))
    room: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    natural_key: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    owner_name: Mapped[str | None] = mapped_column(sa.String(50))
    phone: Mapped[str | None] = mapped_column(sa.String(32), info={"pii": "phone"})
    id_number: Mapped[str | None] = mapped_column(sa.String(32), info={"pii": "id_number"})
    # 居民自愿: a household may decline the retrofit; the signed letter is uploaded later.
    opted_out: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
    opted_out_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime)
    optout_reason: Mapped[str | None] = mapped_column(sa.String(500))
    optout_letter: Mapped[str | None] = mapped_column(sa.String(255))

    community: Mapped[Community] = relationship(Community, foreign_keys=[community_id])

    def __repr__(self) -> str:
        return f"{self.community} {self.address}"

    @property
    def address(self) -> str:
        """Building-unit-room as entered, for display."""
        return " ".join(p for p in (self.building, self.unit, self.room) if p)


@event.listens_for(Household, "before_insert")
@event.listens_for(Household, "before_update")
def _household_key(mapper: Any, connection: Any, target: Household) -> None:
    target.natural_key = household_key(target.building, target.unit, target.room)
    if target.opted_out and target.opted_out_at is None:
        target.opted_out_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    elif not target.opted_out:
        target.opted_out_at = None


#: A meter account's life: surveyed in the ledger, meter installed, account opened and read
#: per household by the utility (the retrofit's goal), closed.
ACCOUNT_STATUSES = ("surveyed", "installed", "active", "closed")
ACCOUNT_STATUS_LABELS = {"surveyed": "已摸底待改造", "installed": "已装表",
                         "active": "已立户抄表到户", "closed": "已销户"}
#: Statuses that count as done for a household's progress.
ACCOUNT_DONE = ("installed", "active")


class MeterAccount(TenantScoped, Model):
    """户表: one household's account with one utility (household × utility).

    The household is in the retrofit's scope for that utility once it has an account row;
    number formats are the utility's (`UtilitySpec`), checked by the pages and imports.
    """

    __tenant_id_index__ = False  # (tenant_id, id) serves it; see TenantScoped

    __tablename__ = "om_meter_account"
    __tenant_table_args__ = (
        tenant_reference("household_id", "om_household"),
        sa.UniqueConstraint("tenant_id", "household_id", "utility",
                            name="uq_om_meter_account_household_utility"),
        sa.UniqueConstraint("tenant_id", "utility", "account_no",
                            name="uq_om_meter_account_account_no"),
        sa.Index("ix_om_meter_account_tenant_utility_status", "tenant_id", "utility",
                 "status"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    household_id: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    # "checked": values must be the utility's (code, number formats, rating choices).
    utility: Mapped[str] = mapped_column(sa.String(32), nullable=False,
                                         info={"checked": True})
    account_no: Mapped[str | None] = mapped_column(sa.String(32), info={"checked": True})
    meter_no: Mapped[str | None] = mapped_column(sa.String(40), info={"checked": True})
    #: 口径 (water, e.g. DN15) or 容量 (electricity, e.g. 单相 8kW): the spec names it.
    rating: Mapped[str | None] = mapped_column(sa.String(32), info={"checked": True})
    status: Mapped[str] = mapped_column(
        sa.Enum(*ACCOUNT_STATUSES, name="ck_om_meter_account_status", native_enum=False,
                create_constraint=True, length=16), nullable=False, default="surveyed")
    #: 五(五): the day the household could pay this utility online (网上缴费).
    online_payment_on: Mapped[dt.date | None] = mapped_column(sa.Date)
    note: Mapped[str | None] = mapped_column(sa.String(200))

    household: Mapped[Household] = relationship(Household, foreign_keys=[household_id])

    def __repr__(self) -> str:
        return f"{self.household} {self.account_no or ''}".strip()

    @property
    def status_label(self) -> str:
        return ACCOUNT_STATUS_LABELS.get(self.status, self.status)

    @classmethod
    def om_sample(cls, session: Any, tenant_id: int, marker: str) -> MeterAccount:
        """An account of the first declared utility, in a new community, note `marker`."""
        from onemeter.utilities import utilities

        community = Community(tenant_id=tenant_id, name=f"{marker}{uuid.uuid4().hex[:8]}")
        household = Household(tenant_id=tenant_id, community=community, room=f"{marker}room")
        account = cls(tenant_id=tenant_id, household=household, utility=sorted(utilities())[0],
                      note=f"{marker}note")
        session.add(account)
        session.flush()
        return account


class PlanTarget(Model):
    """The plan's numbers: communities and households per utility × phase × category.

    `category` None is a total the plan states itself (for `phase_year`, or for the whole
    programme when that is None too). District-wide, so no tenant: every table with a
    `tenant_id` must be TenantScoped with forced RLS, and these rows belong to no
    sub-district. A per-sub-district breakdown, when one is issued, gets a TenantScoped table.
    """

    __tablename__ = "om_plan_target"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    source: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    utility: Mapped[str] = mapped_column(
        sa.Enum(*UTILITIES, name="ck_om_plan_target_utility", native_enum=False,
                create_constraint=True, length=16), nullable=False)
    phase_year: Mapped[int | None] = mapped_column(sa.Integer)
    category: Mapped[str | None] = mapped_column(_category_type("ck_om_plan_target_cat"))
    communities: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    households: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    note: Mapped[str | None] = mapped_column(sa.String(200))

    @property
    def utility_label(self) -> str:
        return UTILITY_LABELS.get(self.utility, self.utility)

    @property
    def category_label(self) -> str:
        return "合计（方案所列）" if self.category is None else category_label(self.category)
