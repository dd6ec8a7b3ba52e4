"""import profiles (列对应方案): a sub-district's saved column choices; reconcile attempts

Revision ID: 0007_import_profiles
Revises: 0006_tenant_indexes
Create Date: 2026-11-25 11:50:00
"""
from alembic import op
import sqlalchemy as sa

from onemeter.tenancy import disable_tenant_rls, enable_tenant_rls

revision = '0007_import_profiles'
down_revision = '0006_tenant_indexes'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('om_import_profile',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('overrides', sa.JSON(), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['om_tenant.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant_id', 'id', name='uq_om_import_profile_tenant_id_id'),
    sa.UniqueConstraint('tenant_id', 'name', name='uq_om_import_profile_tenant_name')
    )
    enable_tenant_rls(op, 'om_import_profile')
    with op.batch_alter_table('om_reconcile_run') as batch_op:
        batch_op.add_column(sa.Column('attempts', sa.Integer(), server_default='0', nullable=False))


def downgrade():
    with op.batch_alter_table('om_reconcile_run') as batch_op:
        batch_op.drop_column('attempts')
    disable_tenant_rls(op, 'om_import_profile')
    op.drop_table('om_import_profile')
