"""Crew and position-fix rows, and the crew states."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from fieldops.db.base import Base, UTCDateTime


class CrewStatus(StrEnum):
    AVAILABLE = "available"
    ASSIGNED = "assigned"
    EN_ROUTE = "en_route"
    ON_SCENE = "on_scene"
    OFF_DUTY = "off_duty"


class Crew(Base):
    # On SpatiaLite the table also holds ``roster_stamp``, which only the database writes
    # (migration 0008) and only the roster read reads (``fieldops.dispatch.roster``).
    __tablename__ = "crews"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    skills: Mapped[list[str]] = mapped_column(JSON)
    # How many assignments the crew can hold at once.
    capacity: Mapped[int] = mapped_column(default=1)
    home_district_id: Mapped[int] = mapped_column(ForeignKey("districts.id"))
    depot_lon: Mapped[float]
    depot_lat: Mapped[float]
    shift_starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    shift_ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[CrewStatus] = mapped_column(String(16))
    # Last known position and the device's time of that fix (None until the first ping).
    last_lon: Mapped[float | None]
    last_lat: Mapped[float | None]
    last_fix_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A drill's crews live in the drill's own database; roster tells demo crews apart.
    roster: Mapped[str] = mapped_column(String(64), default="city")


class CrewPosition(Base):
    """One position fix as the crew's device reported it; repeated fixes are stored once."""

    __tablename__ = "crew_positions"
    __table_args__ = (UniqueConstraint("crew_id", "fix_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    crew_id: Mapped[int] = mapped_column(ForeignKey("crews.id"), index=True)
    lon: Mapped[float]
    lat: Mapped[float]
    fix_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
