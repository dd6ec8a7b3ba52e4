"""Funding tables: per project investment and fiscal review, payments, and award computations.

Per-project rows are tenant-owned (forced row-level security); the award grant and the
computation header are district-wide (the city grants one award to the district).
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, column_property, mapped_column, relationship

from onemeter.database import Model
from onemeter.retrofit.models import RetrofitProject
from onemeter.tenancy import Tenant, TenantScoped, tenant_reference

MONEY = sa.Numeric(14, 2, asdecimal=True)

#: Who paid: the developer (开发建设单位), the district treasury (区财政兜底), the city's award.
PAYERS = {"developer": "开发建设单位", "treasury": "区财政（兜底）", "municipal": "市以奖代补"}
#: `source` of a payment typed in on the payment page (others name the plugin that recorded it).
MANUAL = "manual"
#: Fields only the finance bureau enters (财政评审); tenant staff read them.
REVIEW_FIELDS = ("reviewed_amount", "reviewer", "reviewed_on", "review_document")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class ProjectFunding(TenantScoped, Model):
    """A retrofit project's money: estimate, developer's commitment, and the fiscal review.

    The sub-district enters the estimate, the commitment and when it submitted the project
    for review (送审); the finance bureau enters the review (amount, reviewer, date,
    documents). At most one per project.
    """

    __tablename__ = "fd_project_funding"
    __tenant_table_args__ = (
        tenant_reference("project_id", "om_retrofit_project", ondelete="CASCADE"),
        sa.UniqueConstraint("tenant_id", "project_id", name="uq_fd_project_funding_project"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    estimated_investment: Mapped[Decimal | None] = mapped_column(MONEY)
    developer_committed: Mapped[Decimal | None] = mapped_column(MONEY)
    review_submitted_on: Mapped[dt.date | None] = mapped_column(sa.Date)
    reviewed_amount: Mapped[Decimal | None] = mapped_column(MONEY)
    reviewer: Mapped[str | None] = mapped_column(sa.String(100))
    reviewed_on: Mapped[dt.date | None] = mapped_column(sa.Date)
    review_document: Mapped[str | None] = mapped_column(sa.String(255))
    note: Mapped[str | None] = mapped_column(sa.Text)

    project: Mapped[RetrofitProject] = relationship(RetrofitProject, foreign_keys=[project_id])
    tenant: Mapped[Tenant] = relationship(
        Tenant, primaryjoin="Tenant.id == ProjectFunding.tenant_id", foreign_keys="ProjectFunding.tenant_id",
        viewonly=True)

    def __repr__(self) -> str:
        return f"{self.project}" if self.project is not None else f"资金 {self.id}"


class FundingPayment(TenantScoped, Model):
    """Money paid towards a project, dated and documented, by payer.

    `source` is `manual` for payments entered on the page, or the plugin that recorded it
    (a recovery through the courts: `litigation`, with its `reference`, e.g. the 案号).
    """

    __tablename__ = "fd_payment"
    __tenant_table_args__ = (
        tenant_reference("project_id", "om_retrofit_project", ondelete="CASCADE"),
        sa.Index("ix_fd_payment_tenant_project", "tenant_id", "project_id"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    payer: Mapped[str] = mapped_column(sa.String(16), nullable=False, default="developer",
                                       info={"checked": True})
    amount: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    paid_on: Mapped[dt.date] = mapped_column(sa.Date, nullable=False)
    document: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    source: Mapped[str] = mapped_column(sa.String(32), nullable=False, default=MANUAL,
                                        info={"checked": True})
    reference: Mapped[str | None] = mapped_column(sa.String(255))
    comment: Mapped[str | None] = mapped_column(sa.Text)

    project: Mapped[RetrofitProject] = relationship(RetrofitProject, foreign_keys=[project_id])
    tenant: Mapped[Tenant] = relationship(
        Tenant, primaryjoin="Tenant.id == FundingPayment.tenant_id", foreign_keys="FundingPayment.tenant_id",
        viewonly=True)

    @classmethod
    def om_sample(cls, session: Session, tenant_id: int, marker: str) -> FundingPayment:
        """A developer payment on a new project, text reading `marker` (for the matrix)."""
        project = RetrofitProject.om_sample(session, tenant_id, marker)
        payment = cls(tenant_id=tenant_id, project=project, payer="developer",
                      amount=Decimal("1.00"), paid_on=dt.date(2021, 7, 7),
                      document=f"{marker}document", reference=f"{marker}reference",
                      comment=f"{marker}comment")
        session.add(payment)
        session.flush()
        return payment

    @property
    def payer_label(self) -> str:
        return PAYERS.get(self.payer, self.payer)


class AwardGrant(Model):
    """The award the city granted the district (以奖代补), as entered by the finance bureau."""

    __tablename__ = "fd_award_grant"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    amount: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    as_of: Mapped[dt.date] = mapped_column(sa.Date, nullable=False)
    document: Mapped[str | None] = mapped_column(sa.String(255))
    entered_by: Mapped[str | None] = mapped_column(sa.String(128))
    entered_at: Mapped[dt.datetime] = mapped_column(sa.DateTime, nullable=False,
                                                    default=_utcnow)


class AwardComputation(Model):
    """One computation of the award: the day, the rule (code + version) and its totals.

    Kept forever: recomputing with the same day and rule reproduces it, and the rule that
    produced each figure stays known after a newer rule takes effect.
    """

    __tablename__ = "fd_award_computation"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    as_of: Mapped[dt.date] = mapped_column(sa.Date, nullable=False)
    rule_code: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    rule_version: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    rule_label: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    grant_id: Mapped[int | None] = mapped_column(sa.ForeignKey("fd_award_grant.id"))
    granted: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    cap: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    allocated: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    eligible_total: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    eligible_count: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    project_count: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    note: Mapped[str | None] = mapped_column(sa.Text)
    trigger: Mapped[str | None] = mapped_column(sa.String(255))
    computed_at: Mapped[dt.datetime] = mapped_column(sa.DateTime, nullable=False,
                                                     default=_utcnow)

    grant: Mapped[AwardGrant | None] = relationship(AwardGrant)

    def __repr__(self) -> str:
        return f"第 {self.id} 次计算（{self.as_of}，{self.rule_code}@{self.rule_version}）"


class AwardAllocation(TenantScoped, Model):
    """One project's line of a computation: eligible or why not, award, backstop."""

    __tablename__ = "fd_award_allocation"
    __audit__ = False  # derived by the recomputation, which is itself recorded
    __tenant_table_args__ = (
        tenant_reference("project_id", "om_retrofit_project", ondelete="CASCADE"),
        sa.Index("ix_fd_award_allocation_tenant_computation", "tenant_id", "computation_id"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    computation_id: Mapped[int] = mapped_column(
        sa.ForeignKey("fd_award_computation.id", ondelete="CASCADE"), nullable=False)
    project_id: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    eligible: Mapped[bool] = mapped_column(sa.Boolean, nullable=False)
    reason: Mapped[str | None] = mapped_column(sa.String(500))
    reviewed_amount: Mapped[Decimal | None] = mapped_column(MONEY)
    developer_paid: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    award: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    backstop: Mapped[Decimal | None] = mapped_column(MONEY)

    project: Mapped[RetrofitProject] = relationship(RetrofitProject, foreign_keys=[project_id])
    tenant: Mapped[Tenant] = relationship(
        Tenant, primaryjoin="Tenant.id == AwardAllocation.tenant_id", foreign_keys="AwardAllocation.tenant_id",
        viewonly=True)
    computation: Mapped[AwardComputation] = relationship(AwardComputation)

    @classmethod
    def om_sample(cls, session: Session, tenant_id: int, marker: str) -> AwardAllocation:
        """A line of a new computation for a new project, text reading `marker`."""
        project = RetrofitProject.om_sample(session, tenant_id, marker)
        computation = AwardComputation(
            as_of=dt.date(2021, 7, 7), rule_code="sample", rule_version=uuid.uuid4().hex[:8],
            rule_label="样例", granted=Decimal(0), cap=Decimal(0), allocated=Decimal(0),
            eligible_total=Decimal(0), eligible_count=0, project_count=1)
        row = cls(tenant_id=tenant_id, project=project, computation=computation, eligible=False,
                  reason=f"{marker}reason", developer_paid=Decimal(0), award=Decimal(0))
        session.add(row)
        session.flush()
        return row


#: What the developer has paid towards the project (sum of its developer payments, 元).
ProjectFunding.developer_paid = column_property(
    sa.select(sa.func.coalesce(sa.func.sum(FundingPayment.amount), 0))
    .where(FundingPayment.project_id == ProjectFunding.project_id,
           FundingPayment.tenant_id == ProjectFunding.tenant_id,
           FundingPayment.payer == "developer")
    .correlate_except(FundingPayment).scalar_subquery())
