"""API tokens: random, prefixed ``hm2bp_``, shown once, stored as their sha256, revocable.

``current_user`` is the one dependency that guards HTTP routes and SSE (``authenticate`` does the
same for websockets): it reads ``Authorization: Bearer <token>``, or else the session cookie, and
answers 401 otherwise.

The session cookie is for browsers, whose websocket and EventSource cannot send a header:
``POST /v1/session`` with a bearer token sets it (HttpOnly, SameSite=Strict, path /v1). It holds
the token itself, so revoking the token ends the session. A cookie is only honoured when the
request's ``Origin`` is the API's own or one of ``HM2BP_CORS_ORIGINS``; without an ``Origin``
header only for GET (browsers send ``Origin`` on every cross-origin request, every websocket
handshake and every same-origin POST), which stops other sites from riding the cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from hm2bp_service.store import Store, UserRecord

from .blocking import store_read

TOKEN_PREFIX = "hm2bp_"
SESSION_COOKIE = "hm2bp_session"
SAFE_METHODS = frozenset({"GET", "HEAD"})
bearer = HTTPBearer(auto_error=False, description="an API token from `hm2bp token create --user NAME`")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(store: Store, user_name: str) -> str:
    """Mint a token for ``user_name`` (created if new); only its hash is stored."""
    user = store.users.ensure(user_name)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    store.users.add_token(user.id, hash_token(token), token[:12])
    return token


def user_for_token(store: Store, token: str | None) -> UserRecord | None:
    if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 256:
        return None
    digest = hash_token(token)
    user = store.users.by_token_hash(digest)
    # the lookup is by hash; compare again in constant time so timing says nothing about near misses
    return user if user is not None and hmac.compare_digest(digest, hash_token(token)) else None


def bearer_token(connection: HTTPConnection) -> str | None:
    scheme, _, value = connection.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def own_origin(connection: HTTPConnection) -> str:
    """``scheme://host[:port]`` of this API as the client addressed it (``ws`` counts as ``http``)."""
    scheme = {"ws": "http", "wss": "https"}.get(connection.url.scheme, connection.url.scheme)
    return f"{scheme}://{connection.headers.get('host', '')}".lower()


def origin_allowed(connection: HTTPConnection) -> bool:
    """May this request authenticate with the session cookie? (See the module docstring.)"""
    origin = connection.headers.get("origin")
    if origin is None:
        method = connection.scope.get("method", "GET")  # a websocket scope has none: its handshake is a GET
        return (method in SAFE_METHODS
                and connection.headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none"))
    origin = origin.rstrip("/").lower()
    allowed = connection.app.state.services.settings.allowed_origins
    return origin == own_origin(connection) or origin in (o.lower() for o in allowed)


def connection_token(connection: HTTPConnection) -> str | None:
    """The bearer token, or else the session cookie's when the origin may use it."""
    token = bearer_token(connection)
    if token is None and SESSION_COOKIE in connection.cookies and origin_allowed(connection):
        token = connection.cookies[SESSION_COOKIE]
    return token


def authenticate(connection: HTTPConnection) -> UserRecord | None:
    """The caller of a request or websocket handshake, or None."""
    return user_for_token(connection.app.state.services.store, connection_token(connection))


def unauthorized() -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, "missing, invalid or revoked API token",
                         headers={"WWW-Authenticate": "Bearer"})


async def current_user(request: Request, _: HTTPAuthorizationCredentials | None = Depends(bearer)) -> UserRecord:
    # async, with the one blocking step (the token lookup) a store read: a sync dependency would
    # cost a thread hand-off of its own on every request
    user = await store_read(request, authenticate, request)
    if user is None:
        raise unauthorized()
    return user
