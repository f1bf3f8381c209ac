"""The ORM base and the column types every domain shares."""

from __future__ import annotations

from collections.abc import Callable
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


# SQLite's text of a UTC instant, and back, kept for up to a few thousand instants (the
# memo starts afresh when full): a tick writes and reads the same few instants in many
# rows (its ``now``, a shift's start, an incident's opening).
_MEMO_LIMIT = 8192
_texts: dict[datetime, str] = {}
_instants: dict[str, datetime] = {}


def _remember(memo: dict[Any, Any], key: Any, value: Any) -> None:
    if len(memo) >= _MEMO_LIMIT:
        memo.clear()
    memo[key] = value


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

    # On SQLite, every instant written or read goes through these (a scheduler tick moves
    # thousands): the stored text is made and read in one step each, as SQLAlchemy's
    # DATETIME stores it ("YYYY-MM-DD HH:MM:SS.ffffff", UTC), several times faster than the
    # chain of the methods above and SQLAlchemy's SQLite DATETIME processors. Other
    # backends keep that chain.

    def bind_processor(self, dialect: sa.Dialect) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        def process(value: datetime | None) -> str | None:
            if value is None:
                return None
            if value.tzinfo is UTC:
                # Kept by UTC instant only: in another zone two equal datetimes can be
                # different instants (a wall time repeated when the clocks go back).
                text = _texts.get(value)
                if text is None:
                    text = value.isoformat(" ", "microseconds")[:-6]  # less its "+00:00"
                    _remember(_texts, value, text)
                return text
            if value.tzinfo is None:
                raise ValueError("naive datetime given where an instant is needed")
            return value.astimezone(UTC).isoformat(" ", "microseconds")[:-6]

        return process

    def result_processor(
        self, dialect: sa.Dialect, coltype: Any
    ) -> Callable[[Any], datetime | None] | None:
        chain = super().result_processor(dialect, coltype)
        if dialect.name != "sqlite" or chain is None:
            return chain

        def process(value: Any) -> datetime | None:
            if value is None:
                return None
            read = _instants.get(value)
            if read is not None:
                return read
            try:
                read = datetime.fromisoformat(value + "+00:00")
            except (TypeError, ValueError):
                read = None
            # Not text as stored (a bare date reads as one without its zone): the long way.
            if read is None or read.tzinfo is None:
                return chain(value)
            _remember(_instants, value, read)
            return read

        return process


def point_type() -> Geometry:
    return Geometry(geometry_type="POINT", srid=SRID, spatial_index=True)


def multipolygon_type() -> Geometry:
    return Geometry(geometry_type="MULTIPOLYGON", srid=SRID, spatial_index=True)


def ewkt_point(lon: float, lat: float) -> str:
    """The EWKT both backends accept for a WGS84 point."""
    return f"SRID={SRID};POINT({lon!r} {lat!r})"
