"""Litigation cases (诉讼案件), the projects each covers, their history and recovery shares.

One open case per developer and sub-district: every project of that developer referred to
litigation (五(四)) joins it. All four tables are tenant-owned with forced row-level security.
"""

from __future__ import annotations

import datetime as dt
import decimal

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from onemeter.database import Model
from onemeter.retrofit.models import RetrofitProject
from onemeter.tenancy import TenantScoped, tenant_reference
from onemeter_litigation.stages import INITIAL_STATE, is_overdue, next_action, state_label

MONEY = sa.Numeric(14, 2, asdecimal=True)
#: The stage a case leaves only once; an open case is any other.
CLOSED = "closed"


class LitigationCase(TenantScoped, Model):
    """The case file against one developer (and its legal representative) in one sub-district.

    Change `state` only through `onemeter_litigation.service.take_step`, which checks the
    step against `stages`, writes the `CaseEvent` and passes recoveries to the hook.
    """

    __tablename__ = "lit_case"
    __tenant_table_args__ = (
        # Several projects of one developer join the same open case; the database holds it.
        sa.Index("uq_lit_case_open_developer", "tenant_id", "developer_id", unique=True,
                 postgresql_where=sa.text("state <> 'closed'"),
                 sqlite_where=sa.text("state <> 'closed'")),
        sa.Index("ix_lit_case_tenant_state_deadline", "tenant_id", "state", "deadline"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    #: The developer (shared reference data, not tenant-owned); None if none was recorded.
    developer_id: Mapped[int | None] = mapped_column(sa.Integer,
                                                     sa.ForeignKey("om_developer.id"))
    #: As recorded when the case was opened: the registry may change, the file may not.
    developer_name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    legal_representative: Mapped[str | None] = mapped_column(sa.String(50))
    state: Mapped[str] = mapped_column(sa.String(32), nullable=False, default=INITIAL_STATE,
                                       info={"checked": True})
    #: The date of the current stage (催告期限, 开庭日期); None outside those stages.
    deadline: Mapped[dt.date | None] = mapped_column(sa.Date)
    court: Mapped[str | None] = mapped_column(sa.String(100))
    case_number: Mapped[str | None] = mapped_column(sa.String(64), info={"checked": True})
    filed_on: Mapped[dt.date | None] = mapped_column(sa.Date)
    judgment_on: Mapped[dt.date | None] = mapped_column(sa.Date)
    amount_awarded: Mapped[decimal.Decimal | None] = mapped_column(MONEY)
    enforcement_case_number: Mapped[str | None] = mapped_column(sa.String(64),
                                                                info={"checked": True})
    amount_recovered: Mapped[decimal.Decimal] = mapped_column(
        MONEY, nullable=False, default=decimal.Decimal("0.00"))
    closed_on: Mapped[dt.date | None] = mapped_column(sa.Date)
    opened_at: Mapped[dt.datetime] = mapped_column(sa.DateTime, nullable=False)
    comment: Mapped[str | None] = mapped_column(sa.Text)

    links: Mapped[list[CaseProject]] = relationship(
        "CaseProject", primaryjoin="LitigationCase.id == foreign(CaseProject.case_id)",
        order_by="CaseProject.id", viewonly=True)

    def __repr__(self) -> str:
        return f"{self.developer_name}（{self.case_number or '案件 ' + str(self.id)}）"

    @classmethod
    def om_sample(cls, session: Session, tenant_id: int, marker: str) -> LitigationCase:
        """A case with one linked project, its text reading `marker` (for the access matrix)."""
        project = RetrofitProject.om_sample(session, tenant_id, marker)
        case = cls(tenant_id=tenant_id, developer_name=f"{marker}developer_name",
                   legal_representative=f"{marker}legal_representative"[:50],
                   court=f"{marker}court", comment=f"{marker}comment",
                   opened_at=dt.datetime(2021, 7, 7, 9, 0), state=INITIAL_STATE)
        session.add(case)
        session.flush()
        session.add(CaseProject(tenant_id=tenant_id, case_id=case.id, project_id=project.id,
                                referred_at=case.opened_at))
        session.flush()
        return case

    @property
    def state_label(self) -> str:
        return state_label(self.state)

    @property
    def next_action(self) -> str:
        return next_action(self.state)

    @property
    def is_open(self) -> bool:
        return self.state != CLOSED

    def overdue_on(self, today: dt.date) -> bool:
        """Whether the case is overdue on `today` (a stage date passed, nothing done)."""
        return is_overdue(self, today)

    @property
    def overdue_flag(self) -> str:
        """已逾期 when overdue today (Beijing), else empty: the list's red flag."""
        from onemeter.retrofit.service import beijing_today

        return "已逾期" if self.overdue_on(beijing_today()) else ""

    @property
    def project_count(self) -> int:
        return len(self.links)


class CaseProject(TenantScoped, Model):
    """A retrofit project covered by a case (a project is in one case only)."""

    __tablename__ = "lit_case_project"
    __tenant_table_args__ = (
        tenant_reference("case_id", "lit_case", ondelete="CASCADE"),
        tenant_reference("project_id", "om_retrofit_project"),
        sa.UniqueConstraint("tenant_id", "project_id", name="uq_lit_case_project_project"),
        sa.Index("ix_lit_case_project_tenant_case", "tenant_id", "case_id"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    project_id: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    referred_at: Mapped[dt.datetime] = mapped_column(sa.DateTime, nullable=False)

    case: Mapped[LitigationCase] = relationship(LitigationCase, foreign_keys=[case_id])
    project: Mapped[RetrofitProject] = relationship(RetrofitProject, foreign_keys=[project_id])


class CaseEvent(TenantScoped, Model):
    """One entry of a case's history: who, when, which step, from and to, what they gave."""

    __tablename__ = "lit_case_event"
    __tenant_table_args__ = (
        tenant_reference("case_id", "lit_case", ondelete="CASCADE"),
        tenant_reference("project_id", "om_retrofit_project"),
        sa.Index("ix_lit_case_event_tenant_case", "tenant_id", "case_id"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    at: Mapped[dt.datetime] = mapped_column(sa.DateTime, nullable=False)
    user_id: Mapped[int | None] = mapped_column(sa.Integer)
    actor: Mapped[str | None] = mapped_column(sa.String(128))
    step: Mapped[str] = mapped_column(sa.String(40), nullable=False)
    from_state: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    to_state: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    #: The project referred (open_case / join_case events).
    project_id: Mapped[int | None] = mapped_column(sa.Integer)
    department: Mapped[str | None] = mapped_column(sa.String(50))
    result: Mapped[str | None] = mapped_column(sa.Text)
    occurred_on: Mapped[dt.date | None] = mapped_column(sa.Date)
    deadline: Mapped[dt.date | None] = mapped_column(sa.Date)
    court: Mapped[str | None] = mapped_column(sa.String(100))
    case_number: Mapped[str | None] = mapped_column(sa.String(64))
    amount: Mapped[decimal.Decimal | None] = mapped_column(MONEY)
    #: The document number (文号) the clerk typed.
    document: Mapped[str | None] = mapped_column(sa.String(255))
    #: The uploaded scan (`onemeter.uploads` key `<tenant>/<sha256>.<ext>`).
    attachment: Mapped[str | None] = mapped_column(sa.String(100))
    comment: Mapped[str | None] = mapped_column(sa.Text)

    case: Mapped[LitigationCase] = relationship(LitigationCase, foreign_keys=[case_id])


class RecoveryShare(TenantScoped, Model):
    """The part of one recovery credited to one project (what the payment hook was given)."""

    __tablename__ = "lit_recovery_share"
    __tenant_table_args__ = (
        tenant_reference("event_id", "lit_case_event", ondelete="CASCADE"),
        tenant_reference("project_id", "om_retrofit_project"),
        sa.Index("ix_lit_recovery_share_tenant_event", "tenant_id", "event_id"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    project_id: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    amount: Mapped[decimal.Decimal] = mapped_column(MONEY, nullable=False)

    event: Mapped[CaseEvent] = relationship(CaseEvent, foreign_keys=[event_id])
    project: Mapped[RetrofitProject] = relationship(RetrofitProject, foreign_keys=[project_id])
