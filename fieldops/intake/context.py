"""What intake keeps in memory between requests: the district index and the service rules."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from fieldops.catalog.repo import list_service_types
from fieldops.districts.repo import district_shapes
from fieldops.geo.districting import DistrictIndex


@dataclass(frozen=True)
class ServiceRules:
    code: str
    group: str
    name_en: str
    name_fr: str
    default_priority: int
    duplicate_radius_m: float
    duplicate_window: timedelta
    resolve_sla: timedelta
    coarsen_public_location: bool
    attributes: tuple[dict[str, Any], ...] = ()  # Open311 attributes the service asks for


@dataclass(frozen=True)
class IntakeContext:
    """Built once per process (and again after districts or services change)."""

    districts: DistrictIndex[int]
    district_names: dict[int, str]
    services: dict[str, ServiceRules]

    @classmethod
    def load(cls, session: Session) -> IntakeContext:
        shapes = district_shapes(session)
        services = {
            s.code: ServiceRules(
                code=s.code,
                group=s.group,
                name_en=s.name_en,
                name_fr=s.name_fr,
                default_priority=s.default_priority,
                duplicate_radius_m=s.duplicate_radius_m,
                duplicate_window=timedelta(seconds=s.duplicate_window_s),
                resolve_sla=timedelta(seconds=s.resolve_sla_s),
                coarsen_public_location=s.coarsen_public_location,
                attributes=tuple(s.attributes),
            )
            for s in list_service_types(session)
        }
        return cls(
            districts=DistrictIndex([i for i, _, _ in shapes], [g for _, _, g in shapes]),
            district_names={i: name for i, name, _ in shapes},
            services=services,
        )
