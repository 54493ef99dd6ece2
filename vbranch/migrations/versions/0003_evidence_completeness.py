"""evidence completeness: a session's recording issues and their acknowledgement; per-service rule

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 06:40:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('customer_session') as batch:
        batch.add_column(sa.Column('evidence_issues', sa.JSON(), nullable=False, server_default='[]'))
        batch.add_column(sa.Column('evidence_ack', sa.JSON(), nullable=True))
    with op.batch_alter_table('service') as batch:
        batch.add_column(sa.Column('require_complete_recordings', sa.Boolean(), nullable=False,
                                   server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table('service') as batch:
        batch.drop_column('require_complete_recordings')
    with op.batch_alter_table('customer_session') as batch:
        batch.drop_column('evidence_ack')
        batch.drop_column('evidence_issues')
