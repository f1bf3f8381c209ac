"""The application factory: one FastAPI app built from settings (tests build their own)."""

from __future__ import annotations

from fastapi import FastAPI

from fieldops import __version__
from fieldops.api.deps import AppState
from fieldops.api.errors import install_error_handlers
from fieldops.api.middleware import BodyLimitMiddleware, RequestIdMiddleware
from fieldops.api.router import build_router
from fieldops.clock import Clock, SystemClock
from fieldops.config import Settings
from fieldops.db.engine import make_engine, make_sessionmaker


def create_app(settings: Settings, *, clock: Clock | None = None) -> FastAPI:
    """Build the app. The database must already be migrated (``fieldops db upgrade``)."""
    engine = make_engine(settings.database_url)
    app = FastAPI(
        title="FieldOps",
        version=__version__,
        description="Intake, dispatch and escalation for a city's field operations.",
    )
    app.state.fieldops = AppState(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine),
        clock=clock or SystemClock(),
    )
    install_error_handlers(app)
    app.include_router(build_router())
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestIdMiddleware)
    return app


def app_from_environment() -> FastAPI:
    """Factory for ``uvicorn --factory`` and worker processes: settings from FIELDOPS_*."""
    return create_app(Settings())
