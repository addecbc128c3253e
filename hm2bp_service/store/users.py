"""Users and their API tokens (stored as the sha256 of the token) and webhook signing secrets
(stored encrypted: ``hm2bp_service.sealing``)."""

from __future__ import annotations

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from ..sealing import SecretBox
from .database import Database, rowcount
from .records import UserRecord
from .schema import Token, User, new_webhook_secret, utcnow

_users, _tokens = User.__table__, Token.__table__
_USER_BY_TOKEN = (select(_users).join(_tokens, _tokens.c.user_id == _users.c.id)
                  .where(_tokens.c.token_hash == bindparam("token_hash"), _tokens.c.revoked_at.is_(None)))


def webhook_secret_of(session: Session, user_id: int, box: SecretBox | None) -> str:
    """The user's webhook signing secret in clear, made (and stored sealed) if the user has none
    yet, in ``session``'s transaction; ``sealing.InvalidToken`` when the service's key did not seal it."""
    if box is None:
        raise RuntimeError("this store was opened without the key of the webhook secrets (Store(..., box))")
    user = session.get_one(User, user_id)
    if user.webhook_secret_sealed is None:
        secret = new_webhook_secret()
        user.webhook_secret_sealed = box.seal(secret)
        return secret
    return box.open(user.webhook_secret_sealed)


class Users:
    def __init__(self, db: Database, box: SecretBox | None = None):
        self.db, self.box = db, box

    def ensure(self, name: str) -> UserRecord:
        """The user called ``name``, created if new."""
        with self.db.writing() as session:
            user = session.scalar(select(User).where(User.name == name))
            if user is None:
                user = User(name=name)
                session.add(user)
                session.flush()
            return UserRecord.of(user)

    def add_token(self, user_id: int, token_hash: str, prefix: str) -> None:
        with self.db.writing() as session:
            session.add(Token(user_id=user_id, token_hash=token_hash, prefix=prefix))

    def by_token_hash(self, token_hash: str) -> UserRecord | None:
        """The user of a live (not revoked) token with this hash (checked on every request: a
        prebuilt Core statement, see ``jobs.py``)."""
        with self.db.connect() as connection:
            row = connection.execute(_USER_BY_TOKEN, {"token_hash": token_hash}).first()
        return UserRecord.of(row) if row is not None else None

    def revoke_token(self, token_hash: str) -> bool:
        with self.db.writing() as session:
            result = session.execute(
                update(Token).where(Token.token_hash == token_hash, Token.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
            return rowcount(result) > 0

    def webhook_secret(self, user_id: int) -> str:
        """The user's webhook signing secret (made now if the user has none yet)."""
        with self.db.writing() as session:
            return webhook_secret_of(session, user_id, self.box)

    def rotate_webhook_secret(self, user_id: int) -> str:
        """A new secret; deliveries from now on (retries included) are signed with it."""
        with self.db.writing() as session:
            session.get_one(User, user_id).webhook_secret_sealed = None
            return webhook_secret_of(session, user_id, self.box)
