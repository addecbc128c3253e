"""sweeps.search, sweeps.cancelled_at, sweeps.done_at: searches (random or TPE, with a trial budget
and a pruner) whose trials are made as earlier ones end; NULL for the grid sweeps made before

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

from hm2bp_service.store.schema import UTCDateTime

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sweeps') as batch:
        batch.add_column(sa.Column('search', sa.JSON(), nullable=True))
        batch.add_column(sa.Column('cancelled_at', UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('done_at', UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('sweeps') as batch:
        batch.drop_column('done_at')
        batch.drop_column('cancelled_at')
        batch.drop_column('search')
