"""the audit chain cannot fork: one row per prev_hash

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 07:00:00
"""
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('audit_log') as batch:
        batch.create_unique_constraint('uq_audit_log_prev_hash', ['prev_hash'])


def downgrade() -> None:
    with op.batch_alter_table('audit_log') as batch:
        batch.drop_constraint('uq_audit_log_prev_hash', type_='unique')
