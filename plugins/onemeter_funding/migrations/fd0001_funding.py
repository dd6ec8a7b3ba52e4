"""funding plugin: project funding, payments, award grants, computations and allocations

Revision ID: fd0001
Revises:
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op

from onemeter.tenancy import disable_tenant_rls, enable_tenant_rls

revision = "fd0001"
down_revision = None
branch_labels = ("funding",)
depends_on = "0003_retrofit"

MONEY = sa.Numeric(precision=14, scale=2)
TENANT_TABLES = ("fd_project_funding", "fd_payment", "fd_award_allocation")


def _tenant_columns(table: str) -> list:
    return [
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["om_tenant.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "id", name=f"uq_{table}_tenant_id_id"),
    ]


def _project_reference() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["tenant_id", "project_id"],
                                   ["om_retrofit_project.tenant_id", "om_retrofit_project.id"],
                                   ondelete="CASCADE")


def upgrade():
    op.create_table(
        "fd_project_funding",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("estimated_investment", MONEY, nullable=True),
        sa.Column("developer_committed", MONEY, nullable=True),
        sa.Column("review_submitted_on", sa.Date(), nullable=True),
        sa.Column("reviewed_amount", MONEY, nullable=True),
        sa.Column("reviewer", sa.String(length=100), nullable=True),
        sa.Column("reviewed_on", sa.Date(), nullable=True),
        sa.Column("review_document", sa.String(length=255), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        _project_reference(),
        sa.UniqueConstraint("tenant_id", "project_id", name="uq_fd_project_funding_project"),
        *_tenant_columns("fd_project_funding"),
    )
    op.create_index("ix_fd_project_funding_tenant_id", "fd_project_funding", ["tenant_id"])
    op.create_table(
        "fd_payment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("payer", sa.String(length=16), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("paid_on", sa.Date(), nullable=False),
        sa.Column("document", sa.String(length=255), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("reference", sa.String(length=255), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        _project_reference(),
        *_tenant_columns("fd_payment"),
    )
    op.create_index("ix_fd_payment_tenant_id", "fd_payment", ["tenant_id"])
    op.create_index("ix_fd_payment_tenant_project", "fd_payment", ["tenant_id", "project_id"])
    op.create_table(
        "fd_award_grant",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("document", sa.String(length=255), nullable=True),
        sa.Column("entered_by", sa.String(length=128), nullable=True),
        sa.Column("entered_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "fd_award_computation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("rule_code", sa.String(length=64), nullable=False),
        sa.Column("rule_version", sa.String(length=32), nullable=False),
        sa.Column("rule_label", sa.String(length=255), nullable=False),
        sa.Column("grant_id", sa.Integer(), nullable=True),
        sa.Column("granted", MONEY, nullable=False),
        sa.Column("cap", MONEY, nullable=False),
        sa.Column("allocated", MONEY, nullable=False),
        sa.Column("eligible_total", MONEY, nullable=False),
        sa.Column("eligible_count", sa.Integer(), nullable=False),
        sa.Column("project_count", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("trigger", sa.String(length=255), nullable=True),
        sa.Column("computed_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["grant_id"], ["fd_award_grant.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "fd_award_allocation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("computation_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("eligible", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("reviewed_amount", MONEY, nullable=True),
        sa.Column("developer_paid", MONEY, nullable=False),
        sa.Column("award", MONEY, nullable=False),
        sa.Column("backstop", MONEY, nullable=True),
        sa.ForeignKeyConstraint(["computation_id"], ["fd_award_computation.id"],
                                ondelete="CASCADE"),
        _project_reference(),
        *_tenant_columns("fd_award_allocation"),
    )
    op.create_index("ix_fd_award_allocation_tenant_id", "fd_award_allocation", ["tenant_id"])
    op.create_index("ix_fd_award_allocation_tenant_computation", "fd_award_allocation",
                    ["tenant_id", "computation_id"])
    for table in TENANT_TABLES:
        enable_tenant_rls(op, table)


def downgrade():
    for table in reversed(TENANT_TABLES):
        disable_tenant_rls(op, table)
    op.drop_table("fd_award_allocation")
    op.drop_table("fd_award_computation")
    op.drop_table("fd_award_grant")
    op.drop_table("fd_payment")
    op.drop_table("fd_project_funding")
