"""The roster's statement is built once and bound at each read (``crew_states``), on both
backends: reads at several instants, with several staleness limits, each give every crew
(and, ``able_only``, exactly the crews able then) the state its ORM row gives it then."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from roster_reference import roster_from_orm
from sqlalchemy.orm import Session

from fieldops.clock import ManualClock
from fieldops.crews.models import Crew, CrewStatus
from fieldops.dispatch.roster import crew_states


def test_reads_at_other_instants_and_limits_follow_them(
    session: Session, clock: ManualClock
) -> None:
    now = clock.now()
    crews = session.scalars(
        sa.select(Crew).where(Crew.status != CrewStatus.OFF_DUTY).order_by(Crew.id)
    ).all()
    early, late, fixed = crews[:3]
    # One shift ends in an hour, one begins in an hour; one fix a minute old.
    early.shift_starts_at, early.shift_ends_at = now - timedelta(hours=7), now + timedelta(hours=1)
    late.shift_starts_at, late.shift_ends_at = now + timedelta(hours=1), now + timedelta(hours=9)
    fixed.last_lon, fixed.last_lat, fixed.last_fix_at = -73.6, 45.5, now - timedelta(minutes=1)
    session.flush()
    seen = []
    for at in (now, now + timedelta(hours=1), now - timedelta(minutes=1)):
        for stale_after in (timedelta(seconds=30), timedelta(minutes=5)):
            for able_only in (False, True):
                got = crew_states(session, now=at, stale_after=stale_after, able_only=able_only)
                assert got == roster_from_orm(
                    session, now=at, stale_after=stale_after, able_only=able_only
                )
                by_id = {s.crew_id: s for s in got}
                seen.append(
                    (early.id in by_id, late.id in by_id, by_id[fixed.id].position_stale)
                    if able_only
                    else None
                )
    able = [s for s in seen if s is not None]
    # Now: the early shift on, the late one not; an hour on, the other way round; the
    # minute-old fix stale past 30 s only, and fresh a minute ago.
    assert able == [
        (True, False, True),
        (True, False, False),
        (False, True, True),
        (False, True, True),
        (True, False, False),
        (True, False, False),
    ]
