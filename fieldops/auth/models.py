"""API key rows and the roles they grant."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from fieldops.db.base import Base, UTCDateTime


class Role(StrEnum):
    PUBLIC = "public"
    CREW = "crew"
    DISPATCHER = "dispatcher"
    MANAGER = "manager"
    ADMIN = "admin"


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(String(16))
    # SHA-256 of the secret: the secret itself is shown once and never stored.
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    # The secret's first characters, so people can tell their keys apart.
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A crew key belongs to one crew and sees only that crew's assignments.
    crew_id: Mapped[int | None] = mapped_column(ForeignKey("crews.id"))
