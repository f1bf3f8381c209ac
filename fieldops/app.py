"""The application factory: one FastAPI app built from settings (tests build their own)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from fieldops import __version__
from fieldops.api.deps import AppState
from fieldops.api.errors import install_error_handlers
from fieldops.api.middleware import BodyLimitMiddleware, RequestIdMiddleware
from fieldops.api.ratelimit import IntakeRateLimitMiddleware
from fieldops.api.responses import PROBLEM_RESPONSES
from fieldops.api.router import include_routes
from fieldops.api.worker import freeze_startup_objects
from fieldops.clock import Clock, SystemClock
from fieldops.config import Settings
from fieldops.db.engine import make_engine, make_sessionmaker
from fieldops.notifications.service import LogSender, Sender
from fieldops.notifications.webhook import WebhookSender
from fieldops.scheduler import Jobs, build_scheduler


def create_app(settings: Settings, *, clock: Clock | None = None) -> FastAPI:
    """Build the app. The database must already be migrated (``fieldops db upgrade``)."""
    engine = make_engine(settings.database_url)
    state = AppState(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine),
        clock=clock or SystemClock(),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        scheduler = build_scheduler(jobs_for(state)) if settings.run_scheduler else None
        if scheduler is not None:
            scheduler.start()
        try:
            yield
        finally:
            if scheduler is not None:
                scheduler.shutdown(wait=True)

    app = FastAPI(
        title="FieldOps",
        version=__version__,
        description="Intake, dispatch and escalation for a city's field operations.",
        lifespan=lifespan,
        responses=PROBLEM_RESPONSES,
    )
    app.state.fieldops = state
    install_error_handlers(app)
    include_routes(app)
    # Innermost of the three: it reads an Open311 form's key after the size check.
    app.add_middleware(IntakeRateLimitMiddleware, state=state)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestIdMiddleware)
    return app


def jobs_for(state: AppState) -> Jobs:
    """The scheduled jobs of an app: its database, clock, travel model and senders."""
    settings = state.settings
    sender: Sender = (
        WebhookSender(settings.webhook_url, settings.webhook_secret)
        if settings.webhook_url
        else LogSender()
    )
    return Jobs(
        sessions=state.sessions,
        clock=state.clock,
        travel=state.travel,
        stale_after=settings.stale_after,
        sender=sender,
    )


def app_from_environment() -> FastAPI:
    """Factory for ``uvicorn --factory`` and worker processes: settings from FIELDOPS_*."""
    app = create_app(Settings())
    freeze_startup_objects()
    return app
