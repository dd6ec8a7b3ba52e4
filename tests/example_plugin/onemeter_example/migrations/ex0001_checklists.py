"""example plugin: checklists and items

Revision ID: ex0001
Revises:
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op

from onemeter.tenancy import disable_tenant_rls, enable_tenant_rls

revision = "ex0001"
down_revision = None
branch_labels = ("example",)
depends_on = "0001_core"


def upgrade():
    op.create_table(
        "ex_checklist",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("contact_phone", sa.String(length=20), nullable=True),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["om_tenant.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "id", name="uq_ex_checklist_tenant_id_id"),
    )
    op.create_index("ix_ex_checklist_tenant_id", "ex_checklist", ["tenant_id"])
    op.create_table(
        "ex_checklist_item",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("checklist_id", sa.Integer(), nullable=False),
        sa.Column("text", sa.String(length=200), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id", "checklist_id"],
                                ["ex_checklist.tenant_id", "ex_checklist.id"]),
        sa.ForeignKeyConstraint(["tenant_id"], ["om_tenant.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "id", name="uq_ex_checklist_item_tenant_id_id"),
    )
    op.create_index("ix_ex_checklist_item_tenant_id", "ex_checklist_item", ["tenant_id"])
    op.create_index("ix_ex_checklist_item_checklist_id", "ex_checklist_item", ["checklist_id"])
    enable_tenant_rls(op, "ex_checklist")
    enable_tenant_rls(op, "ex_checklist_item")


def downgrade():
    disable_tenant_rls(op, "ex_checklist_item")
    disable_tenant_rls(op, "ex_checklist")
    op.drop_table("ex_checklist_item")
    op.drop_table("ex_checklist")
