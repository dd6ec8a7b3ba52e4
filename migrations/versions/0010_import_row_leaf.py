"""om_import_row as a leaf: no (tenant_id, id) unique index and no separate foreign key to
om_tenant (its (tenant_id, batch_id) key to om_import_batch checks the tenant), and no
(tenant_id, household_id) index (no query reads undo records by household; a rollback reads
its batch's). Each was a per-row index insert or trigger call of every import (100,000 undo
records a batch).

Revision ID: 0010_import_row_leaf
Revises: 0009_supervision
Create Date: 2026-12-05 08:30:00
"""
from alembic import op

revision = '0010_import_row_leaf'
down_revision = '0009_supervision'
branch_labels = None
depends_on = None

# SQLite's foreign keys are unnamed: batch mode names them by this convention to drop one.
_NAMING = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def upgrade():
    op.drop_index('ix_om_import_row_tenant_household', table_name='om_import_row')
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_constraint('om_import_row_tenant_id_fkey', 'om_import_row', type_='foreignkey')
        op.drop_constraint('uq_om_import_row_tenant_id_id', 'om_import_row', type_='unique')
        return
    with op.batch_alter_table('om_import_row', naming_convention=_NAMING) as batch_op:
        batch_op.drop_constraint('fk_om_import_row_tenant_id_om_tenant', type_='foreignkey')
        batch_op.drop_constraint('uq_om_import_row_tenant_id_id', type_='unique')


def downgrade():
    with op.batch_alter_table('om_import_row', naming_convention=_NAMING) as batch_op:
        batch_op.create_unique_constraint('uq_om_import_row_tenant_id_id', ['tenant_id', 'id'])
        batch_op.create_foreign_key(
            'om_import_row_tenant_id_fkey' if op.get_bind().dialect.name == 'postgresql'
            else 'fk_om_import_row_tenant_id_om_tenant', 'om_tenant', ['tenant_id'], ['id'])
    op.create_index('ix_om_import_row_tenant_household', 'om_import_row',
                    ['tenant_id', 'household_id'], unique=False)
