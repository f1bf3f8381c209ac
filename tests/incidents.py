"""A new incident made directly, not through intake: for tests that set the tables up as
they need them."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from fieldops.districts.models import District
from fieldops.incidents.models import Incident
from fieldops.incidents.service import NewIncident, new_incident


def flooding_incident(
    session: Session, *, lon: float, reported_at: datetime, now: datetime
) -> Incident:
    """A flooded street on rue Saint-Denis, in the first district; not yet in the session."""
    district_id = session.scalar(sa.select(District.id).order_by(District.id).limit(1))
    assert district_id is not None
    return new_incident(
        NewIncident(
            service_code="flooding",
            service_group="water",
            priority=2,
            district_id=district_id,
            lon=lon,
            lat=45.52,
            address="rue Saint-Denis",
            description="Eau sur la chaussée",
            reported_at=reported_at,
        ),
        now=now,
    )
