"""Service type rows (Open311 "services")."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from fieldops.db.base import Base, UTCDateTime


class ServiceType(Base):
    __tablename__ = "service_types"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    group: Mapped[str] = mapped_column(String(64))
    name_en: Mapped[str] = mapped_column(String(200))
    name_fr: Mapped[str] = mapped_column(String(200))
    description_en: Mapped[str] = mapped_column(Text, default="")
    description_fr: Mapped[str] = mapped_column(Text, default="")
    keywords: Mapped[str] = mapped_column(Text, default="")
    default_priority: Mapped[int]
    skills: Mapped[list[str]] = mapped_column(JSON)
    duplicate_radius_m: Mapped[float]
    duplicate_window_s: Mapped[int]
    resolve_sla_s: Mapped[int]
    coarsen_public_location: Mapped[bool] = mapped_column(default=False)
    # Open311 attribute definitions, in the wire shape (code, datatype, values...).
    attributes: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # When the definition last changed: drives the Open311 discovery changeset.
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
