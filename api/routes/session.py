"""``/v1/session``: the browser session cookie (see ``api.auth``) and who is signed in."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from .. import schemas
from ..auth import SESSION_COOKIE, bearer_token
from ..deps import UserDep

router = APIRouter(prefix="/v1/session", tags=["session"])
ERRORS = {401: {"model": schemas.ErrorBody}}


@router.get("", response_model=schemas.Session, responses=ERRORS)
def whoami(user: UserDep) -> schemas.Session:
    """The caller (by bearer token or session cookie)."""
    return schemas.Session(user=user.name)


@router.post("", response_model=schemas.Session, responses=ERRORS)
def start_session(request: Request, response: Response, user: UserDep) -> schemas.Session:
    """Exchange the bearer token for a session cookie (HttpOnly, SameSite=Strict, path /v1), which
    browsers need for websockets and EventSource. It ends with the browser session, on
    ``DELETE /v1/session``, or when the token is revoked."""
    token = bearer_token(request)
    if token is not None:  # a call made with the cookie alone keeps the cookie it has
        response.set_cookie(SESSION_COOKIE, token, path="/v1", httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
    return schemas.Session(user=user.name)


@router.delete("", status_code=status.HTTP_204_NO_CONTENT)
def end_session(response: Response) -> None:
    """Sign out: the cookie is cleared (the token itself stays valid until revoked)."""
    response.delete_cookie(SESSION_COOKIE, path="/v1", httponly=True, samesite="strict")
