"""Dispatch routes: recommendations, assignment, batch dispatch, shift plans, crew actions."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from fieldops.api.deps import CrewMember, DbSession, Now, ReadSession, Staff, State
from fieldops.auth.service import Principal
from fieldops.db.base import RowId
from fieldops.dispatch import crew_steps, repo, service, shifts
from fieldops.dispatch.models import Assignment
from fieldops.dispatch.schemas import (
    AssignmentRead,
    AssignRequest,
    BatchItem,
    BatchRequest,
    BatchResponse,
    CrewAction,
    CrewAssignment,
    RecommendationRead,
    Recommendations,
    ShiftPlanRead,
    ShiftStopRead,
)
from fieldops.errors import Forbidden

router = APIRouter(prefix="/api/v1", tags=["dispatch"])


def assignment_read(a: Assignment) -> AssignmentRead:
    return AssignmentRead.model_validate(a, from_attributes=True)


@router.get("/incidents/{incident_id}/recommendations", response_model=Recommendations)
def get_recommendations(
    incident_id: RowId,
    session: ReadSession,
    state: State,
    _staff: Staff,
    now: Now,
    limit: Annotated[int, Query(ge=1, le=50)] = 5,
) -> Recommendations:
    """The best crews for this incident, ranked by the documented score, each with its
    ETA, the travel model behind it and a one-line reason."""
    _incident, ranked = service.recommend_crews(
        session,
        incident_id,
        now=now,
        travel=state.travel(),
        stale_after=state.settings.stale_after,
        limit=limit,
    )
    return Recommendations(
        incident_id=incident_id,
        items=[RecommendationRead.model_validate(r, from_attributes=True) for r in ranked],
    )


@router.post("/incidents/{incident_id}/assign", response_model=AssignmentRead, status_code=201)
def post_assign(
    incident_id: RowId,
    body: AssignRequest,
    session: DbSession,
    state: State,
    staff: Staff,
    now: Now,
) -> AssignmentRead:
    """Send a crew (recommended or not); a crew already on the incident is relieved."""
    assignment = service.assign_crew(
        session,
        incident_id,
        body.crew_id,
        actor=staff.actor,
        now=now,
        travel=state.travel(),
        stale_after=state.settings.stale_after,
    )
    result = assignment_read(assignment)
    session.commit()
    return result


@router.post("/dispatch/batch", response_model=BatchResponse)
def post_batch(
    body: BatchRequest, session: DbSession, state: State, staff: Staff, now: Now
) -> BatchResponse:
    """Assign every unassigned open incident (in the area, if given) at once, minimising
    total priority-weighted response time; compares with closest-free-crew-first."""
    result = service.batch_dispatch(
        session,
        actor=staff.actor,
        now=now,
        travel=state.travel(),
        stale_after=state.settings.stale_after,
        district_ids=body.district_ids,
        bbox=body.bbox,
    )
    ids = {(a.incident_id, a.crew_id): a.id for a in result.assignments}
    greedy = result.greedy
    assert greedy is not None, "asked for with the round"
    response = BatchResponse(
        assignments=[
            BatchItem(
                incident_id=a.incident_id,
                crew_id=a.crew_id,
                assignment_id=ids[(a.incident_id, a.crew_id)],
                eta_s=a.eta_s,
                slot=a.slot,
            )
            for a in result.optimal.assignments
        ],
        unassigned=result.optimal.unassigned,
        weighted_response_s=result.optimal.weighted_response_s,
        greedy_weighted_response_s=greedy.weighted_response_s,
        objective=result.optimal.objective,
        greedy_objective=greedy.objective,
    )
    session.commit()
    return response


@router.post("/crews/{crew_id}/plan", response_model=ShiftPlanRead)
def post_plan(
    crew_id: RowId, session: ReadSession, state: State, _staff: Staff, now: Now
) -> ShiftPlanRead:
    """Order the crew's queued jobs into a route for the rest of its shift."""
    plan = shifts.plan_shift(session, crew_id, now=now, travel=state.travel())
    return ShiftPlanRead(
        crew_id=plan.crew_id,
        stops=[ShiftStopRead.model_validate(s, from_attributes=True) for s in plan.stops],
        unplanned=plan.unplanned,
        travel_s=plan.travel_s,
    )


def _own_crew(principal: Principal) -> int:
    if principal.crew_id is None:
        raise Forbidden("this key belongs to no crew")
    return principal.crew_id


@router.get("/crew/assignments", response_model=list[CrewAssignment])
def get_my_assignments(
    session: ReadSession,
    crew: CrewMember,
    include_finished: bool = False,
) -> list[CrewAssignment]:
    """The calling crew's assignments (active only unless include_finished)."""
    rows = repo.crew_assignments(session, _own_crew(crew), active_only=not include_finished)
    return [
        CrewAssignment(
            **assignment_read(a).model_dump(),
            service_code=i.service_code,
            priority=i.priority,
            lon=i.lon,
            lat=i.lat,
            address=i.address,
            description=i.description,
        )
        for a, i in rows
    ]


@router.post("/crew/assignments/{assignment_id}/{action}", response_model=AssignmentRead)
def post_crew_action(
    assignment_id: RowId,
    action: Literal["accept", "decline", "en_route", "on_scene", "done"],
    body: CrewAction,
    session: DbSession,
    crew: CrewMember,
    now: Now,
) -> AssignmentRead:
    """Accept, decline (with a reason), or report en route, on scene and done (with a
    closing note). Send the ``version`` you last saw: if the assignment changed meanwhile
    (cancelled, reassigned) the answer is 409 with what changed, never a silent overwrite."""
    assignment = crew_steps.act_on_assignment(
        session,
        assignment_id,
        crew_id=_own_crew(crew),
        action=action,
        version=body.version,
        note=body.note,
        actor=crew.actor,
        now=now,
    )
    result = assignment_read(assignment)
    session.commit()
    return result
