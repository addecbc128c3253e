"""job_leases: every lease a job was given (owner, attempt, taken, held until, released), so its
history shows who ran it when: no two leases of one job may overlap (benchmarks/chaos.py audits it)

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

from hm2bp_service.store.schema import UTCDateTime

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'job_leases',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('job_id', sa.String(64), sa.ForeignKey('jobs.id', ondelete='CASCADE'), nullable=False),
        sa.Column('owner', sa.String(128), nullable=False),
        sa.Column('attempt', sa.Integer(), nullable=False),
        sa.Column('taken_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('until', UTCDateTime(timezone=True), nullable=False),
        sa.Column('released_at', UTCDateTime(timezone=True), nullable=True),
    )
    op.create_index('ix_job_leases_job_id', 'job_leases', ['job_id'])


def downgrade() -> None:
    op.drop_index('ix_job_leases_job_id', 'job_leases')
    op.drop_table('job_leases')
