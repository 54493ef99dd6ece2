"""recording segments: a call recorded across a server restart has several per party

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 12:20:00
"""
import sqlalchemy as sa
from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

# 0001 left the (session_id, party) constraint unnamed: name it the way each database did
_SQLITE_NAMES = {"uq": "uq_%(table_name)s_%(column_0_N_name)s"}


def _old_unique() -> str:
    return "recording_session_id_party_key" if op.get_bind().dialect.name == "postgresql" \
        else "uq_recording_session_id_party"


def upgrade() -> None:
    with op.batch_alter_table('recording', naming_convention=_SQLITE_NAMES) as batch:
        batch.add_column(sa.Column('segment', sa.Integer(), nullable=False, server_default='1'))
        batch.drop_constraint(_old_unique(), type_='unique')
        batch.create_unique_constraint('uq_recording_session_id_party_segment', ['session_id', 'party', 'segment'])


def downgrade() -> None:
    with op.batch_alter_table('recording') as batch:
        batch.drop_constraint('uq_recording_session_id_party_segment', type_='unique')
        batch.drop_column('segment')
        batch.create_unique_constraint(_old_unique(), ['session_id', 'party'])
