"""Every route of the app, gathered in one place."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

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
from fieldops.incidents.api import intake as incidents_intake
from fieldops.incidents.api import router as incidents_router
from fieldops.mapping.api import router as map_router
from fieldops.open311.api import intake as open311_intake
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


def include_routes(app: FastAPI) -> None:
    """Add every route to ``app``.

    FastAPI tries routes one by one, router after router, each time a request comes in, at
    a few microseconds a route, and walks the router that matched a second time to handle
    the request. So the parts are included in the app directly (a router gathering them
    would be one more level to walk), and intake's two routes come first, each in a router
    of its own: the dispatcher's ``POST /api/v1/incidents``, then Open311's ``POST
    requests``. No route shares both its path and its method with another, so their order
    changes which route answers nothing, only how soon it is found.
    """
    for part in (
        incidents_intake,
        open311_intake,
        incidents_router,
        open311_router,
        health,
        districts_router,
        services_router,
        keys_router,
        crews_router,
        crew_page_router,
        dispatch_router,
        escalation_router,
        emergencies_router,
        drills_router,
        map_router,
    ):
        app.include_router(part)
