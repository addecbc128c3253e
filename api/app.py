"""The FastAPI application: ``create_app()`` (uvicorn: ``api.app:create_app --factory``).

Docs pages (``/docs``) are off unless ``HM2BP_API_DOCS_ASSETS`` names a local Swagger UI (no CDN).
On start it migrates the database to the newest schema (waiting for it while it is unreachable),
builds the process's services (job store, event bus, artifact store) from the ``HM2BP_*`` settings,
and deletes the staged uploads that a killed API process left (``uploads.sweep_staging``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from anyio import CapacityLimiter
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import CollectorRegistry

from hm2bp_service.files import owner_only_files
from hm2bp_service.outages import through_outages
from hm2bp_service.services import Services
from hm2bp_service.settings import Settings, get_settings
from hm2bp_service.store import migrate
from hm2bp_service.uploads import sweep_staging

from . import errors
from .blocking import writer_limiter
from .limits import BodyLimits
from .metrics import RequestMetrics, job_registry
from .routes import (
    capabilities,
    dashboard,
    datasets,
    docs,
    health,
    jobs,
    session,
    spec,
    streams,
    sweeps,
    webhooks,
    workers,
)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    owner_only_files(settings)  # before the database file and the artifact folder exist
    # a database that is restarting is waited for: a process manager starting the API beside it
    # (or restarting a crashed one) would otherwise see it die at once
    through_outages(lambda: migrate(settings.sqlalchemy_url), "migrating the database")
    services = Services.from_settings(settings)
    sweep_staging(settings.staging_dir)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        services.close()

    app = FastAPI(title="hm2bp", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Training as a service for spiking neural networks (HM2-BP).")
    app.state.services = services
    app.state.writer_limiter = writer_limiter(services.store)
    app.state.upload_limiter = CapacityLimiter(settings.upload_readers)
    app.state.registry = CollectorRegistry()
    app.state.job_registry = job_registry(services.store)
    errors.install(app)
    for module in (health, session, spec, datasets, jobs, streams, sweeps, webhooks, workers, capabilities,
                   dashboard):
        app.include_router(module.router)
    if settings.api_docs_assets is not None:
        app.include_router(docs.router(settings.api_docs_assets))
    app.mount("/static", dashboard.static_files, name="static")
    app.add_middleware(BodyLimits, settings=settings)  # innermost: its 413/408 answers get CORS headers, metrics
    if settings.allowed_origins:  # closed by default: only the listed origins' pages may call the API
        app.add_middleware(CORSMiddleware, allow_origins=settings.allowed_origins, allow_credentials=True,
                           allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"],
                           expose_headers=["Content-Disposition"], max_age=600)
    app.add_middleware(RequestMetrics, registry=app.state.registry)
    return app
