"""Giving new rows their ids before they are inserted, many at a time.

An INSERT that must hand back the ids it generated (``RETURNING``) is rendered as one
long multi-row statement for a batch, which the PostgreSQL driver has to parse anew each
time. Rows that already carry their ids go in with the driver's pipelined
``executemany`` or as arrays, every table in one statement (``fieldops.db.bulk``),
instead. So on PostGIS the ids are drawn from each table's own sequence, for every table
at once, in one statement.

SQLite hands back generated ids one row at a time, so a batch becomes one INSERT per row.
There every writing transaction holds the database's write lock from its start (``BEGIN
IMMEDIATE``, see ``fieldops.db.engine``) and no table asks for AUTOINCREMENT: a new row's
id is the table's highest id plus one, which is what SQLite itself would give, so the ids
are read as each table's highest, in one statement. The ids given in a session but not yet
flushed count too. Give every new row its id before the flush that writes any of them
(``give_ids(session, session.new)``): a row left without one would take the table's next
id from SQLite, which may be one already given. Rows may be left to the database only when
no id of their table has been given and not yet written: rows written with no id at all
(``insert_pending``'s let-go rows, ``add_events``) are safe, as the next call here reads
the table's highest id again.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from fieldops.db.base import Base

# One row per table, its ids as one array (a row per id cost the client more than the
# server's nextval calls); each table's sequence looked up once, not once per id.
_DRAW = sa.text(
    """
    SELECT t.name, ARRAY(SELECT nextval(t.seq) FROM generate_series(1, t.n))
    FROM (
        SELECT name, n, CAST(pg_get_serial_sequence(name, 'id') AS regclass) AS seq
        FROM unnest(CAST(:names AS text[]), CAST(:counts AS int[])) AS u(name, n)
        OFFSET 0  -- keeps the lookup here: the planner would inline it into every nextval
    ) AS t
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
        _give_sqlite(session, wanting)
        return
    names = sorted(wanting)
    drawn = session.execute(_DRAW, {"names": names, "counts": [len(wanting[n]) for n in names]})
    for name, ids in drawn:
        for row, new_id in zip(wanting[name], sorted(ids), strict=True):
            row.id = new_id  # type: ignore[attr-defined]


def _give_sqlite(session: Session, wanting: dict[str, list[Base]]) -> None:
    names = tuple(sorted(wanting))
    highest = session.execute(_highest_ids(names)).one()
    given: dict[str, int] = session.info.setdefault("fieldops.ids.given", {})
    for name, stored in zip(names, highest, strict=True):
        last = max(int(stored), given.get(name, 0))
        for row in wanting[name]:
            last += 1
            row.id = last  # type: ignore[attr-defined]
        given[name] = last


@functools.lru_cache(maxsize=64)
def _highest_ids(names: tuple[str, ...]) -> sa.Select[Any]:
    """Each table's highest id, in one statement (built once per set of tables)."""
    tables = [Base.metadata.tables[name] for name in names]
    return sa.select(
        *(sa.select(sa.func.coalesce(sa.func.max(t.c.id), 0)).scalar_subquery() for t in tables)
    )
