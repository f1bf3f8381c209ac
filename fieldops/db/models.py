"""Every ORM model, imported once so the metadata (and migrations) see all tables."""

from fieldops.auth.models import ApiKey
from fieldops.catalog.models import ServiceType
from fieldops.crews.models import Crew, CrewPosition
from fieldops.db.base import Base
from fieldops.dispatch.models import Assignment
from fieldops.districts.models import District
from fieldops.emergencies.models import Emergency
from fieldops.escalation.models import EscalationStep, PolicyVersion
from fieldops.idempotency.models import IdempotentResponse
from fieldops.incidents.models import Incident, IncidentEvent, Report
from fieldops.notifications.models import Notification

__all__ = [
    "ApiKey",
    "Assignment",
    "Base",
    "Crew",
    "CrewPosition",
    "District",
    "Emergency",
    "EscalationStep",
    "IdempotentResponse",
    "Incident",
    "IncidentEvent",
    "Notification",
    "PolicyVersion",
    "Report",
    "ServiceType",
]
