"""入户安检 (gas safety inspection): one visit of the gas company to one household.

A gas meter is only handed over to a household that passed; a hazard gets a deadline.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from onemeter.database import Model
from onemeter.registry.models import Household
from onemeter.tenancy import TenantScoped, tenant_reference

#: result code → Chinese label (stored codes, shown labels).
RESULTS = {"passed": "合格", "hazard": "有隐患待整改", "refused": "拒绝入户",
           "absent": "到访不遇"}


class GasSafetyInspection(TenantScoped, Model):
    """One 入户安检 of one household: when, by whom, the result and any hazard."""

    __tenant_id_index__ = False  # (tenant_id, id) and (tenant_id, household_id) serve it

    __tablename__ = "gas_safety_inspection"
    __tenant_table_args__ = (
        tenant_reference("household_id", "om_household"),
        sa.Index("ix_gas_safety_inspection_tenant_household", "tenant_id", "household_id"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    household_id: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    inspected_on: Mapped[dt.date] = mapped_column(sa.Date, nullable=False)
    result: Mapped[str] = mapped_column(
        sa.Enum(*RESULTS, name="ck_gas_safety_inspection_result", native_enum=False,
                create_constraint=True, length=16), nullable=False, default="passed")
    inspector: Mapped[str | None] = mapped_column(sa.String(50))
    #: What was found (漏气, 胶管老化 …) when the result is a hazard.
    hazard: Mapped[str | None] = mapped_column(sa.String(200))
    #: 整改期限: the day the hazard must be fixed by.
    rectify_by: Mapped[dt.date | None] = mapped_column(sa.Date)

    household: Mapped[Household] = relationship(Household, foreign_keys=[household_id])

    @property
    def result_label(self) -> str:
        return RESULTS.get(self.result, self.result)

    def __repr__(self) -> str:
        return f"{self.household} {self.inspected_on} {self.result_label}"
