"""dataset_files: each stored dataset file with the count of dataset rows that refer to it, kept in
the same transactions as those rows, so that an upload and a delete of the same content (by two
users) can never leave a record whose file is gone

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'dataset_files',
        sa.Column('storage_key', sa.String(length=512), primary_key=True),
        sa.Column('refs', sa.Integer(), nullable=False),
    )
    op.execute("INSERT INTO dataset_files (storage_key, refs) "
               "SELECT storage_key, COUNT(*) FROM datasets GROUP BY storage_key")


def downgrade() -> None:
    op.drop_table('dataset_files')
