"""Queries on districts."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from geoalchemy2.shape import to_shape
from shapely.geometry.base import BaseGeometry
from sqlalchemy.orm import Session

from fieldops.districts.models import District


def list_districts(session: Session) -> Sequence[District]:
    return session.scalars(sa.select(District).order_by(District.name)).all()


def district_shapes(session: Session) -> list[tuple[int, str, BaseGeometry]]:
    """Every district as (id, name, shapely geometry), in id order."""
    rows = session.execute(
        sa.select(District.id, District.name, District.geom).order_by(District.id)
    ).all()
    return [(row.id, row.name, to_shape(row.geom)) for row in rows]


def get_district_by_code(session: Session, code: str) -> District | None:
    return session.scalars(sa.select(District).where(District.code == code)).one_or_none()


def district_names(session: Session) -> list[tuple[int, str, str]]:
    """(id, code, name) of every district, without their boundaries."""
    rows = session.execute(sa.select(District.id, District.code, District.name)).all()
    return [(row.id, row.code, row.name) for row in rows]
