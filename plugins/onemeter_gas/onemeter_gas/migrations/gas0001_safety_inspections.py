"""gas plugin: 入户安检 (gas safety inspections) per household

Revision ID: gas0001
Revises:
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op

from onemeter.tenancy import disable_tenant_rls, enable_tenant_rls

revision = "gas0001"
down_revision = None
branch_labels = ("gas",)
# The households it refers to come with the core's registry.
depends_on = "0002_registry"


def upgrade():
    op.create_table(
        "gas_safety_inspection",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("household_id", sa.Integer(), nullable=False),
        sa.Column("inspected_on", sa.Date(), nullable=False),
        sa.Column("result", sa.Enum("passed", "hazard", "refused", "absent",
                                    name="ck_gas_safety_inspection_result", native_enum=False,
                                    create_constraint=True, length=16), nullable=False),
        sa.Column("inspector", sa.String(length=50), nullable=True),
        sa.Column("hazard", sa.String(length=200), nullable=True),
        sa.Column("rectify_by", sa.Date(), nullable=True),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id", "household_id"],
                                ["om_household.tenant_id", "om_household.id"]),
        sa.ForeignKeyConstraint(["tenant_id"], ["om_tenant.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "id", name="uq_gas_safety_inspection_tenant_id_id"),
    )
    op.create_index("ix_gas_safety_inspection_tenant_household", "gas_safety_inspection",
                    ["tenant_id", "household_id"])
    enable_tenant_rls(op, "gas_safety_inspection")


def downgrade():
    disable_tenant_rls(op, "gas_safety_inspection")
    op.drop_table("gas_safety_inspection")
