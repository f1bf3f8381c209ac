"""Assignment rows: one crew sent to one incident, and what became of it."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from fieldops.db.base import Base, UTCDateTime


class AssignmentStatus(StrEnum):
    PENDING = "pending"  # sent, not yet accepted
    ACCEPTED = "accepted"
    EN_ROUTE = "en_route"
    ON_SCENE = "on_scene"
    DONE = "done"
    DECLINED = "declined"
    CANCELLED = "cancelled"  # the incident was cancelled or the dispatcher withdrew it
    REASSIGNED = "reassigned"  # another crew took over

    @property
    def is_active(self) -> bool:
        return self in ACTIVE_ASSIGNMENT


ACTIVE_ASSIGNMENT = frozenset(
    {
        AssignmentStatus.PENDING,
        AssignmentStatus.ACCEPTED,
        AssignmentStatus.EN_ROUTE,
        AssignmentStatus.ON_SCENE,
    }
)


class Assignment(Base):
    __tablename__ = "assignments"
    __table_args__ = (
        Index("ix_assignments_crew_active", "crew_id", "is_active"),
        # Every active assignment (a drill's fleet reads them at every tick).
        Index("ix_assignments_is_active", "is_active"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    crew_id: Mapped[int] = mapped_column(ForeignKey("crews.id"))
    status: Mapped[AssignmentStatus] = mapped_column(String(16))
    is_active: Mapped[bool]
    # Bumped on every change: a crew phone replaying an old action is told what changed.
    version: Mapped[int] = mapped_column(default=1)
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime)
    assigned_by: Mapped[str] = mapped_column(String(200))
    eta_s: Mapped[float]
    travel_model: Mapped[str] = mapped_column(String(32))
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    arrived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    note: Mapped[str] = mapped_column(Text, default="")
