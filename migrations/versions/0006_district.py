"""district rollups: meter accounts counted per community × utility × status, kept by triggers

Revision ID: 0006_district
Revises: 0005_reconcile
Create Date: 2026-11-25 11:00:00
"""
from alembic import op
import sqlalchemy as sa

from onemeter.tenancy import disable_tenant_rls, enable_tenant_rls


revision = '0006_district'
down_revision = '0005_reconcile'
branch_labels = None
depends_on = None

TENANT_TABLES = ('om_rollup_account_count',)

# Statement-level triggers with transition tables: one grouped upsert per statement, so a
# COPY or an import of 100k rows costs one aggregate, not 100k trigger calls. The delta
# upsert (n = n + excluded.n) is atomic under concurrent writers; the account triggers first
# lock the households they read (FOR SHARE; the foreign key's KEY SHARE does not conflict
# with an opt-out) so an opt-out committed meanwhile is seen, and the household trigger
# reads the accounts as committed when its lock was granted.
_UPSERT = """
    INSERT INTO om_rollup_account_count AS c
        (tenant_id, community_id, utility, status, opted_out, n)
    SELECT tenant_id, community_id, utility, status, opted_out, sum(d) FROM ({rows}) x
    GROUP BY tenant_id, community_id, utility, status, opted_out
    HAVING sum(d) <> 0
    ORDER BY tenant_id, community_id, utility, status, opted_out
    ON CONFLICT (tenant_id, community_id, utility, status, opted_out)
    DO UPDATE SET n = c.n + EXCLUDED.n;
"""
_ACCOUNT_ROWS = ("SELECT a.tenant_id, h.community_id, a.utility, a.status, h.opted_out,"
                 " {sign} AS d FROM {table} a JOIN om_household h"
                 " ON h.tenant_id = a.tenant_id AND h.id = a.household_id")
_LOCK = ("PERFORM 1 FROM om_household h JOIN {table} a"
         " ON h.tenant_id = a.tenant_id AND h.id = a.household_id"
         " ORDER BY h.tenant_id, h.id FOR SHARE OF h;")
_HOUSEHOLD_ROWS = (
    "SELECT a.tenant_id, o.community_id, a.utility, a.status, o.opted_out, -count(*) AS d"
    " FROM old_rows o JOIN new_rows nw ON nw.tenant_id = o.tenant_id AND nw.id = o.id"
    " JOIN om_meter_account a ON a.tenant_id = nw.tenant_id AND a.household_id = nw.id"
    " WHERE o.community_id <> nw.community_id OR o.opted_out <> nw.opted_out"
    " GROUP BY 1, 2, 3, 4, 5"
    " UNION ALL"
    " SELECT a.tenant_id, nw.community_id, a.utility, a.status, nw.opted_out, count(*)"
    " FROM old_rows o JOIN new_rows nw ON nw.tenant_id = o.tenant_id AND nw.id = o.id"
    " JOIN om_meter_account a ON a.tenant_id = nw.tenant_id AND a.household_id = nw.id"
    " WHERE o.community_id <> nw.community_id OR o.opted_out <> nw.opted_out"
    " GROUP BY 1, 2, 3, 4, 5")

FUNCTIONS = {
    "om_rollup_account_insert": _LOCK.format(table="new_rows") + _UPSERT.format(
        rows=_ACCOUNT_ROWS.format(sign=1, table="new_rows")),
    "om_rollup_account_delete": _LOCK.format(table="old_rows") + _UPSERT.format(
        rows=_ACCOUNT_ROWS.format(sign=-1, table="old_rows")),
    "om_rollup_account_update": _LOCK.format(table="new_rows") + _UPSERT.format(
        rows=_ACCOUNT_ROWS.format(sign=-1, table="old_rows") + " UNION ALL "
        + _ACCOUNT_ROWS.format(sign=1, table="new_rows")),
    "om_rollup_household_update": _UPSERT.format(rows=_HOUSEHOLD_ROWS),
}
TRIGGERS = (
    ("om_rollup_account_insert", "om_meter_account", "INSERT", "NEW TABLE AS new_rows"),
    ("om_rollup_account_delete", "om_meter_account", "DELETE", "OLD TABLE AS old_rows"),
    ("om_rollup_account_update", "om_meter_account", "UPDATE",
     "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
    ("om_rollup_household_update", "om_household", "UPDATE",
     "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
)


def upgrade():
    op.create_table('om_rollup_account_count',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('community_id', sa.Integer(), nullable=False),
    sa.Column('utility', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('opted_out', sa.Boolean(), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'community_id'], ['om_community.tenant_id', 'om_community.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['om_tenant.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant_id', 'community_id', 'utility', 'status', 'opted_out', name='uq_om_rollup_account_count_bucket'),
    sa.UniqueConstraint('tenant_id', 'id', name='uq_om_rollup_account_count_tenant_id_id')
    )
    with op.batch_alter_table('om_rollup_account_count', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_om_rollup_account_count_tenant_id'), ['tenant_id'], unique=False)
    for table in TENANT_TABLES:
        enable_tenant_rls(op, table)
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, body in FUNCTIONS.items():
        op.execute(f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
                   f"BEGIN\n{body}\nRETURN NULL;\nEND\n$$")
    for name, table, event, referencing in TRIGGERS:
        op.execute(f"CREATE TRIGGER {name} AFTER {event} ON {table}"
                   f" REFERENCING {referencing} FOR EACH STATEMENT EXECUTE FUNCTION {name}()")
    # Existing rows, tenant by tenant (each tenant's rows may only be written in its scope).
    bind = op.get_bind()
    for (tenant,) in bind.exec_driver_sql("SELECT id FROM om_tenant ORDER BY id").all():
        bind.exec_driver_sql("SELECT set_config('app.write_tenant_id', %(t)s, true)",
                             {"t": str(tenant)})
        bind.exec_driver_sql(
            "INSERT INTO om_rollup_account_count"
            " (tenant_id, community_id, utility, status, opted_out, n)"
            " SELECT a.tenant_id, h.community_id, a.utility, a.status, h.opted_out, count(*)"
            " FROM om_meter_account a JOIN om_household h"
            " ON h.tenant_id = a.tenant_id AND h.id = a.household_id"
            " WHERE a.tenant_id = %(t)s GROUP BY 1, 2, 3, 4, 5", {"t": tenant})
    bind.exec_driver_sql("SELECT set_config('app.write_tenant_id', '', true)")


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for name, table, _event, _referencing in TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        for name in FUNCTIONS:
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    for table in TENANT_TABLES:
        disable_tenant_rls(op, table)
    with op.batch_alter_table('om_rollup_account_count', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_om_rollup_account_count_tenant_id'))
    op.drop_table('om_rollup_account_count')
