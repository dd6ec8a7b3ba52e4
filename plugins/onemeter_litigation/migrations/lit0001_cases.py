"""litigation plugin: cases, the projects they cover, their history, recovery shares

Revision ID: lit0001
Revises:
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op

from onemeter.tenancy import disable_tenant_rls, enable_tenant_rls

revision = "lit0001"
down_revision = None
branch_labels = ("litigation",)
# The cases reference retrofit projects and developers.
depends_on = "0003_retrofit"

TENANT_TABLES = ("lit_case", "lit_case_project", "lit_case_event", "lit_recovery_share")
MONEY = sa.Numeric(precision=14, scale=2)
OPEN = sa.text("state <> 'closed'")


def upgrade():
    op.create_table(
        "lit_case",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("developer_id", sa.Integer(), nullable=True),
        sa.Column("developer_name", sa.String(length=200), nullable=False),
        sa.Column("legal_representative", sa.String(length=50), nullable=True),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("deadline", sa.Date(), nullable=True),
        sa.Column("court", sa.String(length=100), nullable=True),
        sa.Column("case_number", sa.String(length=64), nullable=True),
        sa.Column("filed_on", sa.Date(), nullable=True),
        sa.Column("judgment_on", sa.Date(), nullable=True),
        sa.Column("amount_awarded", MONEY, nullable=True),
        sa.Column("enforcement_case_number", sa.String(length=64), nullable=True),
        sa.Column("amount_recovered", MONEY, nullable=False),
        sa.Column("closed_on", sa.Date(), nullable=True),
        sa.Column("opened_at", sa.DateTime(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["developer_id"], ["om_developer.id"]),
        sa.ForeignKeyConstraint(["tenant_id"], ["om_tenant.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "id", name="uq_lit_case_tenant_id_id"),
    )
    op.create_index("ix_lit_case_tenant_id", "lit_case", ["tenant_id"])
    op.create_index("ix_lit_case_tenant_state_deadline", "lit_case",
                    ["tenant_id", "state", "deadline"])
    op.create_index("uq_lit_case_open_developer", "lit_case", ["tenant_id", "developer_id"],
                    unique=True, postgresql_where=OPEN, sqlite_where=OPEN)

    op.create_table(
        "lit_case_project",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("referred_at", sa.DateTime(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id", "case_id"], ["lit_case.tenant_id", "lit_case.id"],
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["tenant_id", "project_id"],
                                ["om_retrofit_project.tenant_id", "om_retrofit_project.id"]),
        sa.ForeignKeyConstraint(["tenant_id"], ["om_tenant.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "id", name="uq_lit_case_project_tenant_id_id"),
        sa.UniqueConstraint("tenant_id", "project_id", name="uq_lit_case_project_project"),
    )
    op.create_index("ix_lit_case_project_tenant_id", "lit_case_project", ["tenant_id"])
    op.create_index("ix_lit_case_project_tenant_case", "lit_case_project",
                    ["tenant_id", "case_id"])

    op.create_table(
        "lit_case_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(length=128), nullable=True),
        sa.Column("step", sa.String(length=40), nullable=False),
        sa.Column("from_state", sa.String(length=32), nullable=False),
        sa.Column("to_state", sa.String(length=32), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=True),
        sa.Column("department", sa.String(length=50), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("occurred_on", sa.Date(), nullable=True),
        sa.Column("deadline", sa.Date(), nullable=True),
        sa.Column("court", sa.String(length=100), nullable=True),
        sa.Column("case_number", sa.String(length=64), nullable=True),
        sa.Column("amount", MONEY, nullable=True),
        sa.Column("document", sa.String(length=255), nullable=True),
        sa.Column("attachment", sa.String(length=100), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id", "case_id"], ["lit_case.tenant_id", "lit_case.id"],
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["tenant_id", "project_id"],
                                ["om_retrofit_project.tenant_id", "om_retrofit_project.id"]),
        sa.ForeignKeyConstraint(["tenant_id"], ["om_tenant.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "id", name="uq_lit_case_event_tenant_id_id"),
    )
    op.create_index("ix_lit_case_event_tenant_id", "lit_case_event", ["tenant_id"])
    op.create_index("ix_lit_case_event_tenant_case", "lit_case_event", ["tenant_id", "case_id"])

    op.create_table(
        "lit_recovery_share",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id", "event_id"],
                                ["lit_case_event.tenant_id", "lit_case_event.id"],
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["tenant_id", "project_id"],
                                ["om_retrofit_project.tenant_id", "om_retrofit_project.id"]),
        sa.ForeignKeyConstraint(["tenant_id"], ["om_tenant.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "id", name="uq_lit_recovery_share_tenant_id_id"),
    )
    op.create_index("ix_lit_recovery_share_tenant_id", "lit_recovery_share", ["tenant_id"])
    op.create_index("ix_lit_recovery_share_tenant_event", "lit_recovery_share",
                    ["tenant_id", "event_id"])
    for table in TENANT_TABLES:
        enable_tenant_rls(op, table)


def downgrade():
    for table in reversed(TENANT_TABLES):
        disable_tenant_rls(op, table)
    op.drop_table("lit_recovery_share")
    op.drop_table("lit_case_event")
    op.drop_table("lit_case_project")
    op.drop_table("lit_case")
