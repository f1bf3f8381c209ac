"""Escalation rows: the loaded policy, and every planned, fired, cancelled or skipped step."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from fieldops.db.base import Base, UTCDateTime


class StepStatus(StrEnum):
    PLANNED = "planned"
    FIRED = "fired"
    CANCELLED = "cancelled"  # its deadline was met in time, or the plan changed
    SKIPPED = "skipped"  # due, but nothing was left to do when it came up


class PolicyVersion(Base):
    """One loaded escalation policy; the newest row is in force."""

    __tablename__ = "escalation_policies"

    id: Mapped[int] = mapped_column(primary_key=True)
    loaded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(Text)
    document: Mapped[list[dict[str, Any]]] = mapped_column(JSON)


class EscalationStep(Base):
    __tablename__ = "escalation_steps"
    __table_args__ = (
        # A step of an incident exists once: planning twice, or two schedulers, cannot
        # make a second one.
        UniqueConstraint("incident_id", "key"),
        # The tick's only query: planned steps by due time.
        Index("ix_escalation_steps_due", "status", "due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    key: Mapped[str] = mapped_column(String(120))
    deadline: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(32))
    deadline_at: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[StepStatus] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    planned_at: Mapped[datetime] = mapped_column(UTCDateTime)
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
