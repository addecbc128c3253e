"""API tokens: random, prefixed ``hm2bp_``, shown once, stored as their sha256, revocable.

``current_user`` is the one dependency that guards HTTP routes, SSE and websockets: it reads
``Authorization: Bearer <token>`` and answers 401 otherwise.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from worker.store import JobStore, User

TOKEN_PREFIX = "hm2bp_"
bearer = HTTPBearer(auto_error=False, description="an API token from `hm2bp token create --user NAME`")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(store: JobStore, user_name: str) -> str:
    """Mint a token for ``user_name`` (created if new); only its hash is stored."""
    user = store.ensure_user(user_name)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    store.add_token(user.id, hash_token(token), token[:12])
    return token


def user_for_token(store: JobStore, token: str | None) -> User | None:
    if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 256:
        return None
    digest = hash_token(token)
    user = store.user_for_token_hash(digest)
    # the lookup is by hash; compare again in constant time so timing says nothing about near misses
    return user if user is not None and hmac.compare_digest(digest, hash_token(token)) else None


def bearer_token(connection: HTTPConnection) -> str | None:
    scheme, _, value = connection.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def unauthorized() -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, "missing, invalid or revoked API token",
                         headers={"WWW-Authenticate": "Bearer"})


def current_user(request: Request, _: HTTPAuthorizationCredentials | None = Depends(bearer)) -> User:
    user = user_for_token(request.app.state.services.store, bearer_token(request))
    if user is None:
        raise unauthorized()
    return user
