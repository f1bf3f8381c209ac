"""Queries on service types."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from fieldops.catalog.models import ServiceType


def list_service_types(session: Session) -> Sequence[ServiceType]:
    return session.scalars(sa.select(ServiceType).order_by(ServiceType.code)).all()


def get_service_type(session: Session, code: str) -> ServiceType | None:
    return session.get(ServiceType, code)
