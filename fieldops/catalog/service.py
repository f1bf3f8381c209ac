"""Use cases of the service catalogue."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from fieldops.catalog.models import ServiceType
from fieldops.catalog.repo import list_service_types
from fieldops.catalog.spec import ServiceSpec


def sync_service_types(
    session: Session, specs: Sequence[ServiceSpec], *, now: datetime
) -> tuple[int, int]:
    """Insert new service types and update changed ones; returns (added, updated).

    Types missing from ``specs`` are kept: reports already point at them.
    """
    existing = {s.code: s for s in list_service_types(session)}
    added = updated = 0
    for spec in specs:
        values = {
            "group": spec.group,
            "name_en": spec.name_en,
            "name_fr": spec.name_fr,
            "description_en": spec.description_en,
            "description_fr": spec.description_fr,
            "keywords": spec.keywords,
            "default_priority": spec.default_priority,
            "skills": list(spec.skills),
            "duplicate_radius_m": spec.duplicate_radius_m,
            "duplicate_window_s": int(spec.duplicate_window.total_seconds()),
            "resolve_sla_s": int(spec.resolve_sla.total_seconds()),
            "coarsen_public_location": spec.coarsen_public_location,
            "attributes": [a.model_dump(mode="json") for a in spec.attribute],
        }
        row = existing.get(spec.code)
        if row is None:
            session.add(ServiceType(code=spec.code, updated_at=now, **values))
            added += 1
        elif any(getattr(row, k) != v for k, v in values.items()):
            for k, v in values.items():
                setattr(row, k, v)
            row.updated_at = now
            updated += 1
    session.flush()
    return added, updated
