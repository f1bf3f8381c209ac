"""A batch round asks the travel model only for what a plan can use, on both backends: an
incident no free crew may take (its crews are off duty) is not routed, nor is a crew that
may take none of the backlog, and the round assigns exactly what it assigns when every
time is known."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from floods import open_floods, travel_model
from numpy.typing import ArrayLike
from sqlalchemy.orm import Session

from fieldops.clock import ManualClock
from fieldops.crews.models import Crew, CrewStatus
from fieldops.dispatch import service
from fieldops.dispatch.service import BatchResult, batch_dispatch
from fieldops.geo.routing import Travel
from fieldops.incidents.models import Channel
from fieldops.intake.context import IntakeContext
from fieldops.intake.schemas import NewReport
from fieldops.intake.service import IntakeOutcome, Submission, submit_many

STALE = timedelta(minutes=5)
POTHOLE = (-73.575, 45.52)


class Recorded:
    """The real travel model, remembering what it was asked."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.destinations: list[tuple[float, float]] = []
        self.origins = 0

    def travel_matrix(
        self, from_lon: ArrayLike, from_lat: ArrayLike, to_lon: ArrayLike, to_lat: ArrayLike
    ) -> list[Travel]:
        self.destinations += list(zip(np.atleast_1d(to_lon), np.atleast_1d(to_lat), strict=True))
        self.origins = max(self.origins, len(np.atleast_1d(from_lon)))
        found: list[Travel] = self.inner.travel_matrix(from_lon, from_lat, to_lon, to_lat)
        return found

    def travel_to(self, lon: float, lat: float, from_lon: ArrayLike, from_lat: ArrayLike) -> Travel:
        return self.travel_matrix(from_lon, from_lat, [lon], [lat])[0]


def _round(session: Session, clock: ManualClock, travel: Any) -> BatchResult:
    return batch_dispatch(
        session,
        actor="test",
        now=clock.now(),
        travel=travel,
        stale_after=STALE,
        baseline=False,
    )


def _plan(result: BatchResult) -> list[tuple[int, int, float]]:
    return [(a.incident_id, a.crew_id, a.eta_s) for a in result.optimal.assignments]


def test_a_round_routes_only_what_a_plan_can_use(
    session: Session, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    floods = open_floods(session, clock)
    (pothole,) = submit_many(
        session,
        [
            Submission(
                NewReport(
                    service_code="pothole",
                    lon=POTHOLE[0],
                    lat=POTHOLE[1],
                    channel=Channel.DISPATCHER,
                ),
                "test",
                clock.now(),
            )
        ],
        context=IntakeContext.load(session),
    )
    assert isinstance(pothole, IntakeOutcome)
    # Every crew that could pump a flood is off duty: only the pothole can be taken.
    crews = session.scalars(sa.select(Crew)).all()
    pumps = [c for c in crews if "flood_pump" in c.skills]
    assert pumps and len(pumps) < len(crews)
    for crew in pumps:
        crew.status = CrewStatus.OFF_DUTY
    road_crews = [c for c in crews if "roads" in c.skills and "flood_pump" not in c.skills]
    session.flush()

    # What the round would do knowing every time: the same backlog, every pair routed.
    everything = Recorded(travel_model())
    with monkeypatch.context() as patch:
        patch.setattr(
            service,
            "travel_needed",
            lambda batch, crews, now: (np.arange(len(batch)), np.arange(len(crews))),
        )
        with session.begin_nested() as rehearsal:
            whole = _plan(_round(session, clock, everything))
            rehearsal.rollback()

    recorded = Recorded(travel_model())
    result = _round(session, clock, recorded)

    assert _plan(result) == whole
    assert [a.incident_id for a in result.optimal.assignments] == [pothole.incident.id]
    assert set(result.optimal.unassigned) == set(floods)
    assert recorded.destinations == [POTHOLE]  # the floods were not routed
    assert len(everything.destinations) == len(floods) + 1
    assert 0 < recorded.origins <= len(road_crews) < everything.origins
