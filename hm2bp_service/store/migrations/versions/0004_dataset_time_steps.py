"""datasets.time_steps: the steps per sample of an uploaded spike dataset, recorded at upload so
that fit checks read the dataset's facts instead of loading it (NULL for images, and for spike
datasets uploaded before this revision, whose step count is then checked when the job runs)

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('datasets') as batch:
        batch.add_column(sa.Column('time_steps', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('datasets') as batch:
        batch.drop_column('time_steps')
