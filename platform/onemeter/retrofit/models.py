"""Retrofit projects (one per community × utility) and their history, one row per step."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from onemeter.database import Model
from onemeter.registry.models import Community
from onemeter.retrofit.procedure import DEADLINE_STATES, INITIAL_STATE, state_label
from onemeter.tenancy import TenantScoped, tenant_reference
from onemeter.utilities import utilities, utility_label, utility_spec

MONEY = sa.Numeric(14, 2, asdecimal=True)


class RetrofitProject(TenantScoped, Model):
    """The retrofit of one community for one utility, moved through the procedure (五).

    `utility` is the utility's code string (water, electricity, or a plugin's), so the
    procedure is the same for every utility. Change `state` only through
    `onemeter.retrofit.service.apply_transition`, which writes the history.
    """

    __tenant_id_index__ = False  # (tenant_id, id) serves it; see TenantScoped

    __tablename__ = "om_retrofit_project"
    __tenant_table_args__ = (
        tenant_reference("community_id", "om_community"),
        sa.UniqueConstraint("tenant_id", "community_id", "utility",
                            name="uq_om_retrofit_project_community_utility"),
        sa.Index("ix_om_retrofit_project_tenant_state_deadline", "tenant_id", "state",
                 "deadline"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    community_id: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    #: A `UtilitySpec` code ("checked": only a declared, enabled utility is accepted).
    utility: Mapped[str] = mapped_column(sa.String(32), nullable=False,
                                         info={"checked": True})
    state: Mapped[str] = mapped_column(sa.String(40), nullable=False, default=INITIAL_STATE)
    #: The deadline of the current order (states in DEADLINE_STATES), None otherwise.
    deadline: Mapped[dt.date | None] = mapped_column(sa.Date)
    #: 五(二): the fine imposed on a utility that stayed overdue (300,000–1,000,000 元).
    fine_amount: Mapped[decimal.Decimal | None] = mapped_column(MONEY)
    #: 五(五): when the utility recorded online payment per household (naive UTC).
    online_payment_enabled_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime)
    #: 五(五): recorded by the inspection: maintenance first, and no new or changed lines.
    maintenance_first: Mapped[bool | None] = mapped_column(sa.Boolean)
    no_new_lines: Mapped[bool | None] = mapped_column(sa.Boolean)
    comment: Mapped[str | None] = mapped_column(sa.Text)

    community: Mapped[Community] = relationship(Community, foreign_keys=[community_id])

    def __repr__(self) -> str:
        label = utility_label(self.utility)
        return f"{self.community}（{label}）" if self.community else f"项目 {self.id}"

    @classmethod
    def om_sample(cls, session: Session, tenant_id: int, marker: str) -> RetrofitProject:
        """A project of the first declared utility in a new community, text reading `marker`."""
        community = Community(tenant_id=tenant_id, name=f"{marker}{uuid.uuid4().hex[:8]}")
        project = cls(tenant_id=tenant_id, community=community, utility=sorted(utilities())[0],
                      comment=f"{marker}comment")
        session.add(project)
        session.flush()
        return project

    @property
    def state_label(self) -> str:
        return state_label(self.state)

    @property
    def has_deadline(self) -> bool:
        return self.state in DEADLINE_STATES and self.deadline is not None


class ProjectEvent(TenantScoped, Model):
    """One step of a project's procedure: who, when, from, to, and what they gave."""

    __tenant_id_index__ = False  # (tenant_id, id) serves it; see TenantScoped

    __tablename__ = "om_project_event"
    __tenant_table_args__ = (
        tenant_reference("project_id", "om_retrofit_project", ondelete="CASCADE"),
        sa.Index("ix_om_project_event_tenant_project", "tenant_id", "project_id"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    at: Mapped[dt.datetime] = mapped_column(sa.DateTime, nullable=False)
    user_id: Mapped[int | None] = mapped_column(sa.Integer)
    actor: Mapped[str | None] = mapped_column(sa.String(128))
    transition: Mapped[str] = mapped_column(sa.String(40), nullable=False)
    from_state: Mapped[str] = mapped_column(sa.String(40), nullable=False)
    to_state: Mapped[str] = mapped_column(sa.String(40), nullable=False)
    comment: Mapped[str | None] = mapped_column(sa.Text)
    deadline: Mapped[dt.date | None] = mapped_column(sa.Date)
    #: The document number (文号) or the path of the uploaded letter.
    document: Mapped[str | None] = mapped_column(sa.String(255))
    amount: Mapped[decimal.Decimal | None] = mapped_column(MONEY)

    project: Mapped[RetrofitProject] = relationship(RetrofitProject, foreign_keys=[project_id])


class ProjectCharge(TenantScoped, Model):
    """A fee charged (or demanded) in a project, as residents or inspections report it.

    五(六): a utility may no longer charge the fees its `UtilitySpec.cancelled_fees` lists;
    a charge under one of those names (or an obvious variant) is flagged on write with the
    fee it matched, and counted in reports. Recorded, never refused: the record is evidence.
    """

    __tenant_id_index__ = False  # (tenant_id, id) serves it; see TenantScoped

    __tablename__ = "om_project_charge"
    __tenant_table_args__ = (
        tenant_reference("project_id", "om_retrofit_project", ondelete="CASCADE"),
        sa.Index("ix_om_project_charge_tenant_project", "tenant_id", "project_id"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    name: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    amount: Mapped[decimal.Decimal] = mapped_column(MONEY, nullable=False)
    #: Who charged it and who paid (a household, the developer …), as reported.
    charged_by: Mapped[str | None] = mapped_column(sa.String(100))
    paid_by: Mapped[str | None] = mapped_column(sa.String(100))
    charged_on: Mapped[dt.date | None] = mapped_column(sa.Date)
    document: Mapped[str | None] = mapped_column(sa.String(255))
    #: The cancelled fee (verbatim from the plan) this charge is; None if it is not one.
    prohibited_fee: Mapped[str | None] = mapped_column(sa.String(50))
    comment: Mapped[str | None] = mapped_column(sa.Text)

    project: Mapped[RetrofitProject] = relationship(RetrofitProject, foreign_keys=[project_id])

    @property
    def prohibited(self) -> bool:
        return self.prohibited_fee is not None


@event.listens_for(ProjectCharge, "before_insert")
@event.listens_for(ProjectCharge, "before_update")
def _flag_prohibited_charge(mapper: Any, connection: Any, target: ProjectCharge) -> None:
    # On every write path (pages, API, imports): the project's utility decides the fee list.
    utility = connection.execute(sa.select(RetrofitProject.utility).where(
        RetrofitProject.id == target.project_id)).scalar()
    spec = utility_spec(utility)
    target.prohibited_fee = spec.cancelled_fee(target.name) if spec else None


def prohibited_charge_totals(session: Session) -> dict[str, tuple[int, decimal.Decimal]]:
    """Per utility code: (number, total amount) of flagged charges the scope reads."""
    rows = session.execute(
        sa.select(RetrofitProject.utility, sa.func.count(ProjectCharge.id),
                  sa.func.coalesce(sa.func.sum(ProjectCharge.amount), 0))
        .join(RetrofitProject, RetrofitProject.id == ProjectCharge.project_id)
        .where(ProjectCharge.prohibited_fee.is_not(None))
        .group_by(RetrofitProject.utility))
    return {u: (n, decimal.Decimal(total).quantize(decimal.Decimal("0.01")))
            for u, n, total in rows}


def overdue_filter(today: dt.date) -> sa.ColumnElement[bool]:
    """The SQL condition `is_overdue(project, today)` states: a deadline state, deadline past."""
    return sa.and_(RetrofitProject.state.in_(sorted(DEADLINE_STATES)),
                   RetrofitProject.deadline.is_not(None),
                   RetrofitProject.deadline < today)


def overdue_projects(session: Session, today: dt.date) -> list[RetrofitProject]:
    """Projects (of the tenants the current scope reads) overdue on `today`, oldest first."""
    return list(session.scalars(sa.select(RetrofitProject).where(overdue_filter(today))
                                .order_by(RetrofitProject.deadline, RetrofitProject.id)))
