"""action items of the office's records (议定事项) and supervision notices (督办通知), each
addressed to a sub-district (its tenant data) or to another unit (no tenant, district-wide)

Revision ID: 0009_supervision
Revises: 0008_district
Create Date: 2026-12-05 05:30:00
"""
from alembic import op
import sqlalchemy as sa

from onemeter.tenancy import disable_tenant_rls, enable_tenant_rls


revision = '0009_supervision'
down_revision = '0008_district'
branch_labels = None
depends_on = None

# tenant_id is NULL for a row addressed to a unit that is no sub-district: such rows are
# read and written by the scopes that read every tenant only (district_rows policies).
TENANT_TABLES = ('om_action_item', 'om_supervision_notice')


def upgrade():
    op.create_table('om_action_item',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('record_id', sa.Integer(), nullable=False),
    sa.Column('unit', sa.String(length=100), nullable=True),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('deadline', sa.Date(), nullable=False),
    sa.Column('closed_on', sa.Date(), nullable=True),
    sa.Column('closing_note', sa.Text(), nullable=True),
    sa.Column('tenant_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['record_id'], ['om_district_record.id'], ),
    sa.ForeignKeyConstraint(['tenant_id'], ['om_tenant.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant_id', 'id', name='uq_om_action_item_tenant_id_id')
    )
    with op.batch_alter_table('om_action_item', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_om_action_item_record_id'), ['record_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_om_action_item_tenant_id'), ['tenant_id'], unique=False)
    op.create_table('om_supervision_notice',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('number', sa.String(length=60), nullable=False),
    sa.Column('issued_on', sa.Date(), nullable=False),
    sa.Column('issuer', sa.Enum('office', 'inspectorate', name='ck_om_supervision_notice_issuer', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('issued_by', sa.String(length=128), nullable=True),
    sa.Column('unit', sa.String(length=100), nullable=True),
    sa.Column('subject', sa.String(length=200), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('reply_due', sa.Date(), nullable=False),
    sa.Column('reply', sa.Text(), nullable=True),
    sa.Column('replied_on', sa.Date(), nullable=True),
    sa.Column('replied_by', sa.String(length=128), nullable=True),
    sa.Column('tenant_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['om_tenant.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant_id', 'id', name='uq_om_supervision_notice_tenant_id_id')
    )
    with op.batch_alter_table('om_supervision_notice', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_om_supervision_notice_tenant_id'), ['tenant_id'], unique=False)
    for table in TENANT_TABLES:
        enable_tenant_rls(op, table, district_rows=True)


def downgrade():
    for table in TENANT_TABLES:
        disable_tenant_rls(op, table)
    with op.batch_alter_table('om_supervision_notice', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_om_supervision_notice_tenant_id'))
    op.drop_table('om_supervision_notice')
    with op.batch_alter_table('om_action_item', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_om_action_item_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_om_action_item_record_id'))
    op.drop_table('om_action_item')
