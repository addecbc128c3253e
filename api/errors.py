"""Error bodies: every error is JSON ``{"detail": sentence, "errors": [{field, message}]}``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException

from hm2bp_service.errors import Refused, field_path
from hm2bp_service.outages import is_outage

log = logging.getLogger(__name__)
OUTAGE_RETRY_SECONDS = 5  # the Retry-After of a 503 while the database is unreachable


def validation_errors(errors: Sequence[dict[str, Any]], prefix: Sequence[Any] = ()) -> list[dict[str, str]]:
    return [{"field": field_path([*prefix, *err["loc"]]), "message": err["msg"]} for err in errors]


def error_response(status_code: int, detail: str, errors: list[dict[str, str]] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail, "errors": errors or []}, status_code=status_code, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_errors(exc.errors())
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        return error_response(status.HTTP_422_UNPROCESSABLE_CONTENT, f"invalid request: {summary}", errors)

    @app.exception_handler(ValidationError)
    async def _invalid_model(_request: Request, exc: ValidationError) -> JSONResponse:
        errors = validation_errors(exc.errors())
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        return error_response(status.HTTP_422_UNPROCESSABLE_CONTENT, f"invalid request: {summary}", errors)

    @app.exception_handler(Refused)
    async def _refused(_request: Request, exc: Refused) -> JSONResponse:
        return error_response(exc.status, exc.detail, exc.errors, headers=exc.headers)

    @app.exception_handler(HTTPException)
    async def _http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return error_response(exc.status_code, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(DBAPIError)
    async def _database_error(request: Request, exc: DBAPIError) -> JSONResponse:
        if not is_outage(exc):
            return await _internal_error(request, exc)
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path,
                    str(exc).splitlines()[0][:200])
        return error_response(status.HTTP_503_SERVICE_UNAVAILABLE, "the database is unavailable; try again shortly",
                              headers={"Retry-After": str(OUTAGE_RETRY_SECONDS)})

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, _exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(status.HTTP_500_INTERNAL_SERVER_ERROR, "internal server error")
