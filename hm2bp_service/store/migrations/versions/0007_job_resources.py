"""jobs.resources: the CPU and memory of a job's training process, sampled by its worker's
supervisor while it runs (``{"cpu_percent", "rss_mib", "sampled_at"}``; NULL otherwise)

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('resources', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('resources')
