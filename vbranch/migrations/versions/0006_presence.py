"""presence: resume tokens (hashed) and grace deadlines survive a restart

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 12:00:00
"""
import sqlalchemy as sa
from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'presence',
        sa.Column('party', sa.String(length=80), primary_key=True),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('connected', sa.Boolean(), nullable=False),
        sa.Column('grace_until', sa.Float(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table('presence')
