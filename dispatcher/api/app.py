"""The FastAPI application factory."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from config.settings import get_settings
from dispatcher import __version__, flower, logs
from dispatcher.api import (
    access_log,
    broadcasts,
    customers,
    experiments,
    links,
    notifications,
    openapi,
    pages,
    problems,
    receipts,
    stats,
    system,
)
from dispatcher.api.deps import KeyRing
from dispatcher.api.limits import BodyLimit
from dispatcher.publisher import CeleryPublisher
from dispatcher.queues import create_celery
from dispatcher.runtime import Runtime, build_runtime


def create_app(runtime: Runtime) -> FastAPI:
    # Swagger UI at /docs and ReDoc at /redoc, their assets served from /docs-assets.
    app = FastAPIOffline(
        title="Cascade",
        summary="Notification dispatcher: free channels first, SMS only when nobody read it.",
        version=__version__,
        static_url="/docs-assets",
        generate_unique_id_function=openapi.operation_id,
        swagger_ui_parameters={"persistAuthorization": True},
    )
    app.state.runtime = runtime
    access_log.install()  # webhook secrets in query strings never reach the access log
    app.state.keyring = KeyRing(runtime.settings.effective_api_keys)
    problems.install(app)
    openapi.install(app)
    for module in (
        notifications,
        customers,
        receipts,
        system,
        stats,
        broadcasts,
        experiments,
        pages,
        links,
    ):
        app.include_router(module.router)
    app.mount("/stats/static", StaticFiles(directory=pages.STATIC), name="stats-static")
    app.add_middleware(
        BodyLimit,
        max_bytes=runtime.settings.max_body_bytes,
        # A broadcast's id list may hold a million ids: a larger limit on that route only.
        overrides={"/v1/broadcasts": runtime.settings.max_broadcast_body_bytes},
    )
    return app


def production_app() -> FastAPI:
    """Entry point for ``uvicorn --factory dispatcher.api.app:production_app``."""
    settings = get_settings()
    # With `dispatcher api --workers N` each worker is a fresh (spawned) process that
    # inherits no logging set-up: give it the one format here, as the parent has.
    logs.configure("api", settings.log_format, settings.log_level)
    celery = create_celery(settings)
    flower.install(celery, "api")  # receipts applied here appear in Flower
    return create_app(build_runtime(settings, CeleryPublisher(celery, settings.send_group)))
