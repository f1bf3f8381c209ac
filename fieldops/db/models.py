"""Every ORM model, imported once so the metadata (and migrations) see all tables."""

from fieldops.auth.models import ApiKey
from fieldops.catalog.models import ServiceType
from fieldops.crews.models import Crew, CrewPosition
from fieldops.db.base import Base
from fieldops.dispatch.models import Assignment
from fieldops.districts.models import District
from fieldops.idempotency.models import IdempotentResponse
from fieldops.incidents.models import Incident, IncidentEvent, Report

__all__ = [
    "ApiKey",
    "Assignment",
    "Base",
    "Crew",
    "CrewPosition",
    "District",
    "IdempotentResponse",
    "Incident",
    "IncidentEvent",
    "Report",
    "ServiceType",
]
