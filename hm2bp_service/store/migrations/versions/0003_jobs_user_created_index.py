"""index jobs by (user_id, created_at): GET /v1/jobs reads one page, not every job of the user

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_jobs_user_created', 'jobs', ['user_id', 'created_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_jobs_user_created', table_name='jobs')
