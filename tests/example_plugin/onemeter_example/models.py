"""Checklists (检查清单) and their items: a parent and a child, both tenant-owned."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from onemeter.database import Model
from onemeter.tenancy import TenantScoped, tenant_reference


class Checklist(TenantScoped, Model):
    __tablename__ = "ex_checklist"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    contact_phone: Mapped[str | None] = mapped_column(sa.String(20), info={"pii": "phone"})

    def __repr__(self) -> str:
        return self.name


class ChecklistItem(TenantScoped, Model):
    __tablename__ = "ex_checklist_item"
    __tenant_table_args__ = (tenant_reference("checklist_id", "ex_checklist"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    checklist_id: Mapped[int] = mapped_column(sa.Integer, nullable=False, index=True)
    text: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    checklist: Mapped[Checklist] = relationship(
        Checklist, primaryjoin="ChecklistItem.checklist_id == Checklist.id",
        foreign_keys=[checklist_id])
