"""Emergency rows."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from fieldops.db.base import Base, UTCDateTime, multipolygon_type


class Emergency(Base):
    __tablename__ = "emergencies"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    hazard: Mapped[str] = mapped_column(String(64))
    # Loaded when read (a large polygon): most uses need the factor, the box or the dates,
    # and a process keeps each area it parsed under its digest (``repo.area_shape``).
    area = mapped_column(multipolygon_type(), nullable=False, deferred=True)
    area_digest: Mapped[str] = mapped_column(String(64), default="")  # SHA-256 of its WKB
    # Bounding box of the area, for a cheap prefilter on both backends.
    min_lon: Mapped[float]
    min_lat: Mapped[float]
    max_lon: Mapped[float]
    max_lat: Mapped[float]
    service_codes: Mapped[list[str]] = mapped_column(JSON)
    # Escalation windows are multiplied by this while the emergency is active.
    deadline_factor: Mapped[float]
    # Batch dispatch runs over the area this often (seconds); 0 turns it off.
    batch_every_s: Mapped[int]
    notice_en: Mapped[str] = mapped_column(Text, default="")
    notice_fr: Mapped[str] = mapped_column(Text, default="")
    declared_at: Mapped[datetime] = mapped_column(UTCDateTime)
    declared_by: Mapped[str] = mapped_column(String(200))
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_by: Mapped[str] = mapped_column(String(200), default="")
