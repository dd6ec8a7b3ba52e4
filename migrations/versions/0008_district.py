"""district rollups (per community × utility the project state and accounts by status, kept by
triggers), published bulletins, meeting and supervision records

Revision ID: 0008_district
Revises: 0007_import_profiles
Create Date: 2026-11-25 11:00:00
"""
from alembic import op
import sqlalchemy as sa

from onemeter.tenancy import disable_tenant_rls, enable_tenant_rls


revision = '0008_district'
down_revision = '0007_import_profiles'
branch_labels = None
depends_on = None

TENANT_TABLES = ('om_rollup_count',)

# Statement-level triggers with transition tables: one grouped upsert per statement, so a
# COPY or an import of 100k rows costs one aggregate, not 100k trigger calls. The delta
# upsert (column = column + excluded.column) is atomic under concurrent writers; the account
# triggers first lock the households they read (FOR SHARE; the foreign key's KEY SHARE does
# not conflict with an opt-out) so an opt-out committed meanwhile is seen, and the household
# trigger reads the accounts as committed when its lock was granted.
# The SQL is written out here, not imported: a migration must not change with later code.
COLUMNS = ("accounts", "opted_out", "surveyed", "installed", "active", "closed")


def _contributions(opted: str, sign: str) -> str:
    """How one account adds to each count column, its household's opt-out being `opted`."""
    status = "CASE WHEN NOT {o} AND a.status = '{s}' THEN {n} ELSE 0 END"
    return ", ".join([
        f"{sign} AS accounts", f"CASE WHEN {opted} THEN {sign} ELSE 0 END AS opted_out",
        *(status.format(o=opted, s=s, n=sign) + f" AS {s}"
          for s in ("surveyed", "installed", "active", "closed"))])


_UPSERT = ("INSERT INTO om_rollup_count AS c (tenant_id, community_id, utility, "
           + ", ".join(COLUMNS) + ") SELECT tenant_id, community_id, utility, "
           + ", ".join(f"sum({c})" for c in COLUMNS) + " FROM ({rows}) x"
           " GROUP BY tenant_id, community_id, utility"
           " ORDER BY tenant_id, community_id, utility"
           " ON CONFLICT (tenant_id, community_id, utility) DO UPDATE SET "
           + ", ".join(f"{c} = c.{c} + EXCLUDED.{c}" for c in COLUMNS) + ";")
_ACCOUNT_ROWS = ("SELECT a.tenant_id, h.community_id, a.utility, {contributions}"
                 " FROM {table} a JOIN om_household h"
                 " ON h.tenant_id = a.tenant_id AND h.id = a.household_id")
_LOCK = ("PERFORM 1 FROM om_household h JOIN {table} a"
         " ON h.tenant_id = a.tenant_id AND h.id = a.household_id"
         " ORDER BY h.tenant_id, h.id FOR SHARE OF h;\n")
_MOVED = (" FROM old_rows o JOIN new_rows nw ON nw.tenant_id = o.tenant_id AND nw.id = o.id"
          " JOIN om_meter_account a ON a.tenant_id = nw.tenant_id AND a.household_id = nw.id"
          " WHERE o.community_id <> nw.community_id OR o.opted_out <> nw.opted_out")
_HOUSEHOLD_ROWS = (
    "SELECT a.tenant_id, o.community_id, a.utility, " + _contributions("o.opted_out", "-1")
    + _MOVED + " UNION ALL SELECT a.tenant_id, nw.community_id, a.utility, "
    + _contributions("nw.opted_out", "1") + _MOVED)


def _account_rows(table: str, sign: str) -> str:
    return _ACCOUNT_ROWS.format(table=table, contributions=_contributions("h.opted_out", sign))


# A project's state is copied onto its community × utility row; each trigger sets only its
# own columns, so a project step and an account change on the same row never undo each other.
_PROJECT_CLEAR = ("UPDATE om_rollup_count c SET project_state = NULL FROM old_rows o"
                  " WHERE c.tenant_id = o.tenant_id AND c.community_id = o.community_id"
                  " AND c.utility = o.utility;\n")
_PROJECT_SET = ("INSERT INTO om_rollup_count AS c (tenant_id, community_id, utility,"
                " project_state, " + ", ".join(COLUMNS) + ") SELECT tenant_id, community_id,"
                " utility, state, " + ", ".join("0" for _ in COLUMNS) + " FROM new_rows"
                " ORDER BY tenant_id, community_id, utility"
                " ON CONFLICT (tenant_id, community_id, utility)"
                " DO UPDATE SET project_state = EXCLUDED.project_state;")

FUNCTIONS = {
    "om_rollup_account_insert": _LOCK.format(table="new_rows")
    + _UPSERT.format(rows=_account_rows("new_rows", "1")),
    "om_rollup_account_delete": _LOCK.format(table="old_rows")
    + _UPSERT.format(rows=_account_rows("old_rows", "-1")),
    "om_rollup_account_update": _LOCK.format(table="new_rows") + _UPSERT.format(
        rows=_account_rows("old_rows", "-1") + " UNION ALL " + _account_rows("new_rows", "1")),
    "om_rollup_household_update": _UPSERT.format(rows=_HOUSEHOLD_ROWS),
    "om_rollup_project_insert": _PROJECT_SET,
    "om_rollup_project_update": _PROJECT_CLEAR + _PROJECT_SET,
    "om_rollup_project_delete": _PROJECT_CLEAR,
    # Derived rows have no foreign key (they are no community's dependents): they go here.
    "om_rollup_community_delete": "DELETE FROM om_rollup_count c USING old_rows o"
                                  " WHERE c.tenant_id = o.tenant_id AND c.community_id = o.id;",
}
TRIGGERS = (
    ("om_rollup_account_insert", "om_meter_account", "INSERT", "NEW TABLE AS new_rows"),
    ("om_rollup_account_delete", "om_meter_account", "DELETE", "OLD TABLE AS old_rows"),
    ("om_rollup_account_update", "om_meter_account", "UPDATE",
     "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
    ("om_rollup_household_update", "om_household", "UPDATE",
     "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
    ("om_rollup_project_insert", "om_retrofit_project", "INSERT", "NEW TABLE AS new_rows"),
    ("om_rollup_project_update", "om_retrofit_project", "UPDATE",
     "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
    ("om_rollup_project_delete", "om_retrofit_project", "DELETE", "OLD TABLE AS old_rows"),
    ("om_rollup_community_delete", "om_community", "DELETE", "OLD TABLE AS old_rows"),
)


def upgrade():
    op.create_table('om_rollup_count',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('community_id', sa.Integer(), nullable=False),
    sa.Column('utility', sa.String(length=32), nullable=False),
    sa.Column('project_state', sa.String(length=40), nullable=True),
    sa.Column('accounts', sa.Integer(), nullable=False),
    sa.Column('opted_out', sa.Integer(), nullable=False),
    sa.Column('surveyed', sa.Integer(), nullable=False),
    sa.Column('installed', sa.Integer(), nullable=False),
    sa.Column('active', sa.Integer(), nullable=False),
    sa.Column('closed', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['om_tenant.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant_id', 'community_id', 'utility', name='uq_om_rollup_count_community_utility'),
    sa.UniqueConstraint('tenant_id', 'id', name='uq_om_rollup_count_tenant_id_id')
    )
    with op.batch_alter_table('om_rollup_count', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_om_rollup_count_tenant_id'), ['tenant_id'], unique=False)
    for table in TENANT_TABLES:
        enable_tenant_rls(op, table)
    # Published bulletins: district-wide (like the plan targets), no tenant, never changed.
    op.create_table('om_bulletin_snapshot',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('month', sa.String(length=7), nullable=False),
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('published_at', sa.DateTime(), nullable=False),
    sa.Column('published_by', sa.String(length=128), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('workbook', sa.LargeBinary(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('month')
    )
    # Meeting and supervision records of the office: district-wide, no tenant.
    op.create_table('om_district_record',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.Enum('meeting', 'coordination', 'inspection', name='ck_om_district_record_kind', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('held_on', sa.Date(), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('participants', sa.Text(), nullable=True),
    sa.Column('concerns', sa.String(length=200), nullable=True),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('follow_up_by', sa.Date(), nullable=True),
    sa.Column('recorded_by', sa.String(length=128), nullable=True),
    sa.Column('recorded_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
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
            "INSERT INTO om_rollup_count (tenant_id, community_id, utility, "
            + ", ".join(COLUMNS) + ") SELECT tenant_id, community_id, utility, "
            + ", ".join(f"sum({c})" for c in COLUMNS) + " FROM ("
            + _account_rows("om_meter_account", "1") + " WHERE a.tenant_id = %(t)s) x"
            " GROUP BY tenant_id, community_id, utility", {"t": tenant})
        bind.exec_driver_sql(
            "INSERT INTO om_rollup_count AS c (tenant_id, community_id, utility, project_state, "
            + ", ".join(COLUMNS) + ") SELECT tenant_id, community_id, utility, state, "
            + ", ".join("0" for _ in COLUMNS) + " FROM om_retrofit_project"
            " WHERE tenant_id = %(t)s ON CONFLICT (tenant_id, community_id, utility)"
            " DO UPDATE SET project_state = EXCLUDED.project_state", {"t": tenant})
    bind.exec_driver_sql("SELECT set_config('app.write_tenant_id', '', true)")


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for name, table, _event, _referencing in TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        for name in FUNCTIONS:
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    op.drop_table('om_district_record')
    op.drop_table('om_bulletin_snapshot')
    for table in TENANT_TABLES:
        disable_tenant_rls(op, table)
    with op.batch_alter_table('om_rollup_count', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_om_rollup_count_tenant_id'))
    op.drop_table('om_rollup_count')
