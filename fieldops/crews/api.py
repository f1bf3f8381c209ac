"""Crew routes: the roster as dispatchers see it, and position pings from crew devices."""

from __future__ import annotations

from fastapi import APIRouter

from fieldops.api.deps import CurrentPrincipal, DbSession, Now, ReadSession, Staff, State
from fieldops.auth.models import Role
from fieldops.crews.repo import list_crews
from fieldops.crews.schemas import CrewRead, FixesIn, FixesRead
from fieldops.crews.service import Fix, record_positions
from fieldops.db.base import RowId
from fieldops.dispatch.roster import crew_states
from fieldops.errors import NotFound

router = APIRouter(prefix="/api/v1", tags=["crews"])


@router.get("/crews", response_model=list[CrewRead])
def get_crews(session: ReadSession, state: State, _staff: Staff, now: Now) -> list[CrewRead]:
    """Every crew with its status, workload, shift and last known position."""
    states = {
        s.crew_id: s for s in crew_states(session, now=now, stale_after=state.settings.stale_after)
    }
    return [
        CrewRead(
            id=c.id,
            name=c.name,
            skills=c.skills,
            capacity=c.capacity,
            active_jobs=states[c.id].active_jobs,
            home_district_id=c.home_district_id,
            status=c.status,
            shift_starts_at=c.shift_starts_at,
            shift_ends_at=c.shift_ends_at,
            lon=states[c.id].lon,
            lat=states[c.id].lat,
            last_fix_at=c.last_fix_at,
            position_stale=states[c.id].position_stale,
        )
        for c in list_crews(session)
    ]


@router.post("/crews/{crew_id}/positions", response_model=FixesRead)
def post_positions(
    crew_id: RowId, body: FixesIn, session: DbSession, principal: CurrentPrincipal, now: Now
) -> FixesRead:
    """One fix or a queued batch sent after a network gap, accepted whole. Fixes carry
    the device's own time: out-of-order or repeated fixes never move a crew back."""
    if principal.role != Role.ADMIN and principal.crew_id != crew_id:
        # Another crew's id looks like no crew at all.
        raise NotFound(f"no crew with id {crew_id}")
    outcome = record_positions(
        session, crew_id, [Fix(f.lon, f.lat, f.fix_at) for f in body.fixes], now=now
    )
    session.commit()
    return FixesRead(stored=outcome.stored, repeated=outcome.repeated, moved=outcome.moved)
