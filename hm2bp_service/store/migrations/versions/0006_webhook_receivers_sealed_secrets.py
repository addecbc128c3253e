"""webhooks that cannot reach inside: users.webhook_secret (in clear) becomes
users.webhook_secret_sealed (Fernet, hm2bp_service.sealing: the service's key from
HM2BP_WEBHOOK_SECRETS_KEY or DATA_DIR/webhook-secrets.key); webhook_deliveries.receiver
(scheme://host:port, deliveries are capped per receiver); and every stored last_error, which
held up to 200 characters of receivers' replies and connection errors' text, is cut down to a
short status (HTTP 500, or "connection failed")

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def _box():
    from hm2bp_service.sealing import SecretBox
    from hm2bp_service.settings import get_settings

    return SecretBox.from_settings(get_settings())


def upgrade() -> None:
    from hm2bp_service.egress import receiver_of

    bind = op.get_bind()
    with op.batch_alter_table('users') as batch:
        batch.add_column(sa.Column('webhook_secret_sealed', sa.Text(), nullable=True))
    users = sa.table('users', sa.column('id', sa.Integer()), sa.column('webhook_secret', sa.String()),
                     sa.column('webhook_secret_sealed', sa.Text()))
    clear = bind.execute(sa.select(users.c.id, users.c.webhook_secret)
                         .where(users.c.webhook_secret.is_not(None))).all()
    if clear:
        box = _box()
        for user_id, secret in clear:
            bind.execute(users.update().where(users.c.id == user_id).values(webhook_secret_sealed=box.seal(secret)))
    with op.batch_alter_table('users') as batch:
        batch.drop_column('webhook_secret')

    with op.batch_alter_table('webhook_deliveries') as batch:
        batch.add_column(sa.Column('receiver', sa.String(length=512), nullable=False, server_default=''))
    deliveries = sa.table('webhook_deliveries', sa.column('id', sa.String()), sa.column('url', sa.String()),
                          sa.column('receiver', sa.String()), sa.column('last_status', sa.Integer()),
                          sa.column('last_error', sa.Text()))
    for delivery_id, url in bind.execute(sa.select(deliveries.c.id, deliveries.c.url)).all():
        bind.execute(deliveries.update().where(deliveries.c.id == delivery_id).values(receiver=receiver_of(url)))
    bind.execute(deliveries.update().where(deliveries.c.last_error.is_not(None), deliveries.c.last_status.is_(None))
                 .values(last_error='connection failed'))
    bind.execute(deliveries.update().where(deliveries.c.last_error.is_not(None), deliveries.c.last_status.is_not(None))
                 .values(last_error=sa.literal('HTTP ') + sa.cast(deliveries.c.last_status, sa.String())))


def downgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table('webhook_deliveries') as batch:
        batch.drop_column('receiver')
    with op.batch_alter_table('users') as batch:
        batch.add_column(sa.Column('webhook_secret', sa.String(length=64), nullable=True))
    users = sa.table('users', sa.column('id', sa.Integer()), sa.column('webhook_secret', sa.String()),
                     sa.column('webhook_secret_sealed', sa.Text()))
    sealed = bind.execute(sa.select(users.c.id, users.c.webhook_secret_sealed)
                          .where(users.c.webhook_secret_sealed.is_not(None))).all()
    if sealed:
        box = _box()
        for user_id, secret in sealed:
            bind.execute(users.update().where(users.c.id == user_id).values(webhook_secret=box.open(secret)))
    with op.batch_alter_table('users') as batch:
        batch.drop_column('webhook_secret_sealed')
