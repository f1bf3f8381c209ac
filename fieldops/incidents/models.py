"""Incident, report and event rows, and the incident lifecycle states."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from fieldops.db.base import Base, UTCDateTime, point_type


class IncidentStatus(StrEnum):
    OPEN = "open"
    ASSIGNED = "assigned"
    ACKNOWLEDGED = "acknowledged"
    EN_ROUTE = "en_route"
    ON_SCENE = "on_scene"
    RESOLVED = "resolved"
    CANCELLED = "cancelled"

    @property
    def is_closed(self) -> bool:
        return self in CLOSED_STATUSES


CLOSED_STATUSES = frozenset({IncidentStatus.RESOLVED, IncidentStatus.CANCELLED})
OPEN_STATUSES = frozenset(IncidentStatus) - CLOSED_STATUSES


class Channel(StrEnum):
    """Where a report came from."""

    OPEN311 = "open311"
    DISPATCHER = "dispatcher"
    IMPORT = "import"
    DRILL = "drill"


class Incident(Base):
    __tablename__ = "incidents"
    __table_args__ = (
        # The duplicate search: open incidents of one group near a point, recently reported
        # (every column it filters on, so it reads the index alone).
        Index(
            "ix_incidents_dup_search", "service_group", "is_open", "lat", "lon", "last_report_at"
        ),
        # A batch round's backlog: the open incidents, a few among the day's thousands.
        Index("ix_incidents_status", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    service_code: Mapped[str] = mapped_column(ForeignKey("service_types.code"))
    service_group: Mapped[str] = mapped_column(String(64))
    status: Mapped[IncidentStatus] = mapped_column(String(32))
    is_open: Mapped[bool] = mapped_column(index=True)
    priority: Mapped[int]
    district_id: Mapped[int] = mapped_column(ForeignKey("districts.id"), index=True)
    lon: Mapped[float]
    lat: Mapped[float]
    # The point is kept for spatial SQL (maps, exports); Python reads lon and lat, so an
    # object loads without it (loaded on first access): rows are loaded at every tick.
    geom = mapped_column(point_type(), nullable=False, deferred=True)
    address: Mapped[str] = mapped_column(Text, default="")
    description: Mapped[str] = mapped_column(Text, default="")
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_report_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_report_at: Mapped[datetime] = mapped_column(UTCDateTime)
    report_count: Mapped[int] = mapped_column(default=1)
    status_notes: Mapped[str] = mapped_column(Text, default="")
    # Absolute deadlines from the escalation policy (None where none applies yet).
    dispatch_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledge_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    arrive_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolve_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Escalation steps of this incident wait until then (a dispatcher's snooze).
    snoozed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    emergency_id: Mapped[int | None] = mapped_column(ForeignKey("emergencies.id"), index=True)
    # A non-critical report inside an emergency area is told when to expect action.
    service_notice: Mapped[str] = mapped_column(Text, default="")

    reports: Mapped[list[Report]] = relationship(
        back_populates="incident", order_by="Report.id", lazy="raise"
    )


class Report(Base):
    """One citizen or staff report; several may be merged into one incident."""

    __tablename__ = "reports"
    __table_args__ = (UniqueConstraint("channel", "source_ref"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    service_code: Mapped[str] = mapped_column(ForeignKey("service_types.code"))
    channel: Mapped[Channel] = mapped_column(String(16))
    # The sender's own id for this report (a CSV row's ID_UNIQUE, say): re-sending it
    # finds the report already there instead of adding it again.
    source_ref: Mapped[str | None] = mapped_column(String(128))
    district_id: Mapped[int] = mapped_column(ForeignKey("districts.id"))
    lon: Mapped[float]
    lat: Mapped[float]
    geom = mapped_column(point_type(), nullable=False, deferred=True)  # as an incident's
    address: Mapped[str] = mapped_column(Text, default="")
    address_id: Mapped[str] = mapped_column(String(128), default="")
    zipcode: Mapped[str] = mapped_column(String(16), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    media_url: Mapped[str] = mapped_column(Text, default="")
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Reporter contact details: staff eyes only, never in public output.
    reporter_first_name: Mapped[str] = mapped_column(String(200), default="")
    reporter_last_name: Mapped[str] = mapped_column(String(200), default="")
    reporter_email: Mapped[str] = mapped_column(String(320), default="")
    reporter_phone: Mapped[str] = mapped_column(String(64), default="")
    device_id: Mapped[str] = mapped_column(String(128), default="")
    account_id: Mapped[str] = mapped_column(String(128), default="")
    submitted_by_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))

    incident: Mapped[Incident] = relationship(back_populates="reports", lazy="raise")


class IncidentEvent(Base):
    """One state change of an incident. Rows are only ever added: the audit trail and the
    change feed (``id`` is the feed cursor)."""

    __tablename__ = "incident_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
