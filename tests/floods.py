"""The set-up the batch-equivalence tests share: four floods in the west of the island, far
enough apart not to be merged, taken in through intake, and the road travel model."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from fieldops.clock import ManualClock
from fieldops.dispatch.service import TravelModel
from fieldops.dispatch.travel import load_travel_model
from fieldops.incidents.models import Channel
from fieldops.intake.context import IntakeContext
from fieldops.intake.schemas import NewReport
from fieldops.intake.service import IntakeOutcome, Submission, submit_many

LAYERS = Path(__file__).resolve().parents[1] / "layers"
PLACES = [(-73.857, 45.480), (-73.870, 45.490), (-73.840, 45.500), (-73.880, 45.470)]


def open_floods(session: Session, clock: ManualClock) -> list[int]:
    """Take the four floods in, in ``session`` (not committed); their incident ids."""
    results = submit_many(
        session,
        [
            Submission(
                NewReport(service_code="flooding", lon=lon, lat=lat, channel=Channel.DISPATCHER),
                "test",
                clock.now(),
            )
            for lon, lat in PLACES
        ],
        context=IntakeContext.load(session),
    )
    opened = [r for r in results if isinstance(r, IntakeOutcome)]
    assert len(opened) == len(PLACES) and not any(r.merged for r in opened)
    return [r.incident.id for r in opened]


def travel_model() -> TravelModel:
    return load_travel_model(LAYERS, metric_crs="EPSG:32188")
