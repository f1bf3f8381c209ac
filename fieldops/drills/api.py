"""Drill routes: managers start a scenario of the scenarios folder in the background, follow
it, and read its after-action report (HTML or JSON)."""

from __future__ import annotations

import threading
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from fieldops.api.deps import State, require_roles
from fieldops.api.responses import JSONBody
from fieldops.auth.models import Role
from fieldops.auth.service import Principal
from fieldops.drills.background import (
    SCENARIO_NAME,
    DrillJobs,
    DrillRequest,
    scenario_names,
)
from fieldops.drills.database import same_database
from fieldops.drills.model import DrillOptions
from fieldops.drills.scenarios import load_checked
from fieldops.errors import Conflict, InvalidInput, NotFound, SourceErrors

router = APIRouter(prefix="/api/v1", tags=["drills"])

Manager = Annotated[Principal, Depends(require_roles(Role.MANAGER))]
_JOBS_LOCK = threading.Lock()


class DrillCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scenario: str = Field(
        min_length=1, max_length=100, description="a scenario file of the scenarios folder"
    )
    seed: int | None = Field(
        default=None, ge=0, le=2**32 - 1, description="default: the scenario's"
    )
    scale: float = Field(default=1.0, gt=0, le=50, description="multiplies every arrival rate")
    crew_scale: float = Field(default=1.0, gt=0, le=50, description="multiplies every crew group")
    duration_h: float | None = Field(
        default=None, gt=0, le=24 * 14, description="default: the scenario's"
    )


def get_jobs(request: Request, state: State) -> DrillJobs:
    """The app's drill runner, made on first use."""
    app_state = request.app.state
    jobs: DrillJobs | None = getattr(app_state, "drills", None)
    if jobs is None:
        with _JOBS_LOCK:
            jobs = getattr(app_state, "drills", None)
            if jobs is None:
                jobs = DrillJobs(state.settings, state.clock.now)
                app_state.drills = jobs
    return jobs


Jobs = Annotated[DrillJobs, Depends(get_jobs)]


def _links(request: Request, status: dict[str, Any]) -> dict[str, Any]:
    base = f"/api/v1/drills/{status['id']}"
    links = {"self": base}
    if status["status"] == "done":
        links |= {"report": f"{base}/report", "report_json": f"{base}/report.json"}
    return {**status, "links": links}


@router.post("/drills", status_code=202)
def post_drill(
    body: DrillCreate, request: Request, manager: Manager, jobs: Jobs, state: State
) -> JSONBody:
    """Start a drill of a scenario in the scenarios folder (by file name, without .toml) on
    a database of its own; answers at once with its id (202 and a Location to follow).
    One drill runs at a time per server process; later ones queue."""
    folder = state.settings.scenarios_dir
    known = scenario_names(folder)
    if not SCENARIO_NAME.match(body.scenario) or body.scenario not in known:
        raise InvalidInput.for_field(
            "scenario", f"no scenario {body.scenario!r}; known: {', '.join(known) or 'none'}"
        )
    try:
        scenario = load_checked(folder / f"{body.scenario}.toml", state.settings.layers_dir)
    except SourceErrors as exc:
        raise InvalidInput.for_field(
            "scenario", "the scenario file is invalid: " + "; ".join(map(str, exc.problems))
        ) from None
    url = scenario.database.url
    if url is not None and same_database(url, state.settings.database_url):
        raise InvalidInput.for_field(
            "scenario", "its [database] url is the live database; a drill needs a scratch one"
        )
    status = jobs.start(
        DrillRequest(
            scenario=body.scenario,
            options=DrillOptions(
                seed=body.seed,
                scale=body.scale,
                crew_scale=body.crew_scale,
                duration_h=body.duration_h,
            ),
            requested_by=manager.actor,
        ),
        scenario,
    )
    answer = _links(request, status)
    return JSONBody(answer, 202, headers={"Location": answer["links"]["self"]})


def _status(jobs: DrillJobs, drill_id: str) -> dict[str, Any]:
    status = jobs.status(drill_id)
    if status is None:
        raise NotFound(f"no drill {drill_id}")
    return status


@router.get("/drills/{drill_id}")
def get_drill(drill_id: str, request: Request, _manager: Manager, jobs: Jobs) -> JSONBody:
    """The drill's state (queued, running, done, failed), its progress in simulated time,
    and, once done, links to its report."""
    return JSONBody(_links(request, _status(jobs, drill_id)))


def _report_file(jobs: DrillJobs, drill_id: str, name: str) -> str:
    status = _status(jobs, drill_id)
    if status["status"] != "done":
        raise Conflict(f"drill {drill_id} is {status['status']}: its report comes when it is done")
    folder = jobs.folder(drill_id)
    assert folder is not None
    return str(folder / name)


@router.get("/drills/{drill_id}/report")
def get_report_html(drill_id: str, _manager: Manager, jobs: Jobs) -> FileResponse:
    """The after-action report: tables, plots and the offline map, in French and English."""
    return FileResponse(
        _report_file(jobs, drill_id, "report.html"), media_type="text/html; charset=utf-8"
    )


@router.get("/drills/{drill_id}/report.json")
def get_report_json(drill_id: str, _manager: Manager, jobs: Jobs) -> FileResponse:
    """The report's figures (keys documented in fieldops/drills/report.py)."""
    return FileResponse(_report_file(jobs, drill_id, "report.json"), media_type="application/json")
