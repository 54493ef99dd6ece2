"""per-service queue settings: aging, offer timeout, wrap-up, decline cooldown, service-level threshold

NULL means "the global default" (vbranch.domain.service_rules.QueueDefaults).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 10:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

COLUMNS = ('aging_points_per_min', 'offer_timeout_s', 'wrapup_s', 'decline_cooldown_s',
           'service_level_threshold_s')


def upgrade() -> None:
    with op.batch_alter_table('service') as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('service') as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
