"""Every route of the app, gathered in one place."""

from __future__ import annotations

from fastapi import APIRouter

from fieldops.api.deps import ReadSession
from fieldops.api.responses import JSONBody
from fieldops.auth.api import router as keys_router
from fieldops.catalog.api import router as services_router
from fieldops.crews.api import router as crews_router
from fieldops.crews.page import router as crew_page_router
from fieldops.db.migrate import current_revision
from fieldops.dispatch.api import router as dispatch_router
from fieldops.districts.api import router as districts_router
from fieldops.drills.api import router as drills_router
from fieldops.emergencies.api import router as emergencies_router
from fieldops.escalation.api import router as escalation_router
from fieldops.incidents.api import router as incidents_router
from fieldops.mapping.api import router as map_router
from fieldops.open311.api import router as open311_router

health = APIRouter(tags=["health"])


@health.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@health.get("/readyz")
def readyz(session: ReadSession) -> JSONBody:
    """The database answers and its schema is migrated."""
    revision = current_revision(session.get_bind())  # type: ignore[arg-type]
    if revision is None:
        return JSONBody({"status": "not ready", "reason": "schema not migrated"}, 503)
    return JSONBody({"status": "ready", "schema": revision})


def build_router() -> APIRouter:
    router = APIRouter()
    for part in (
        health,
        incidents_router,
        districts_router,
        services_router,
        keys_router,
        open311_router,
        crews_router,
        crew_page_router,
        dispatch_router,
        escalation_router,
        emergencies_router,
        drills_router,
        map_router,
    ):
        router.include_router(part)
    return router
