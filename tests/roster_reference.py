"""The roster as the ORM gives it, crew by crew (``crew_state`` of each row): what the
roster read (``fieldops.dispatch.roster.crew_states``) must equal, in the roster tests."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from fieldops.crews.models import Crew
from fieldops.dispatch import repo
from fieldops.dispatch.ranking import CrewState
from fieldops.dispatch.service import crew_state


def roster_from_orm(
    session: Session, *, now: datetime, stale_after: timedelta, able_only: bool = False
) -> list[CrewState]:
    """Every crew's state by id; ``able_only``: those on duty, on shift and below capacity
    (skills aside), as the roster read promises."""
    jobs = repo.active_job_counts(session)
    states = [
        crew_state(c, active_jobs=jobs.get(c.id, 0), now=now, stale_after=stale_after)
        for c in session.scalars(sa.select(Crew).order_by(Crew.id))
    ]
    if able_only:
        states = [s for s in states if s.can_take(frozenset(), now) is None]
    return states
