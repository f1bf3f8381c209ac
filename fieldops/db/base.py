"""The ORM base and the column types every domain shares."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import sqlalchemy as sa
from annotated_types import Interval
from geoalchemy2 import Geometry
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SRID = 4326

ROW_ID_MAX = 2**31 - 1
"""The largest id a row can have: ids are INTEGER columns, 32 bits on PostGIS."""

RowId = Annotated[int, Interval(ge=1, le=ROW_ID_MAX)]
"""An id sent from outside (path, query, body). A larger number names no row, and the
database refuses to compare a column with it, so the edge refuses it naming the field."""


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """A tz-aware UTC instant on both backends (SQLite stores no zone: we add it back)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where an instant is needed")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def point_type() -> Geometry:
    return Geometry(geometry_type="POINT", srid=SRID, spatial_index=True)


def multipolygon_type() -> Geometry:
    return Geometry(geometry_type="MULTIPOLYGON", srid=SRID, spatial_index=True)


def ewkt_point(lon: float, lat: float) -> str:
    """The EWKT both backends accept for a WGS84 point."""
    return f"SRID={SRID};POINT({lon!r} {lat!r})"
