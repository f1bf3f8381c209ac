"""Giving new rows their ids before they are inserted, many at a time.

An INSERT that must hand back the ids it generated (``RETURNING``) is rendered as one
long multi-row statement for a batch, which the PostgreSQL driver has to parse anew each
time. Rows that already carry their ids go in with the driver's pipelined
``executemany`` instead: one prepared statement, one round trip. So on PostGIS the ids
are drawn from each table's own sequence, for every table at once, in one statement.
SQLite runs in process and needs no such care: there a flush gives the ids.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from fieldops.db.base import Base

_DRAW = sa.text(
    """
    SELECT t.name, nextval(pg_get_serial_sequence(t.name, 'id')) AS id
    FROM unnest(CAST(:names AS text[]), CAST(:counts AS int[])) AS t(name, n),
         generate_series(1, t.n)
    """
)


def give_ids(session: Session, rows: Iterable[Base]) -> None:
    """Make sure every one of ``rows`` (new objects with an integer ``id`` primary key,
    added to ``session``) has its id."""
    wanting: dict[str, list[Base]] = defaultdict(list)
    for row in rows:
        table: sa.Table = row.__table__  # type: ignore[assignment]
        if "id" in table.c and getattr(row, "id", None) is None:
            wanting[table.name].append(row)
    if not wanting:
        return
    if session.get_bind().dialect.name != "postgresql":
        session.flush()
        return
    names = sorted(wanting)
    drawn: dict[str, list[int]] = defaultdict(list)
    for name, new_id in session.execute(
        _DRAW, {"names": names, "counts": [len(wanting[n]) for n in names]}
    ):
        drawn[name].append(new_id)
    for name in names:
        for row, new_id in zip(wanting[name], sorted(drawn[name]), strict=True):
            row.id = new_id  # type: ignore[attr-defined]
