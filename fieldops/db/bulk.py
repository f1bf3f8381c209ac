"""Writing a batch of new rows without the ORM's unit of work.

A flush of many new objects costs, per object, the unit of work's bookkeeping (its
dependency sort, the insert parameters it collects, the identity map it updates after
each statement) on top of the statement itself. ``insert_pending`` writes the session's
new objects with one statement per table, in the tables' dependency order, and then
makes each object what a flush would have made it: persistent in the session, its
attributes the stored values, nothing pending.

The statement is a Core executemany on SQLite (in process: a row costs next to nothing)
and ``COPY ... FROM STDIN`` on PostgreSQL, where an executemany still sends and the
server still executes one prepared statement per row: COPY streams the rows in one
message and costs a third of the client's time per row. The values go through the
columns' own bind processing, as they would in an INSERT; a refusal (a constraint, a
bad value) is raised as the DBAPIError an INSERT would have raised.

It only inserts: objects already stored that were changed go out with the next flush,
as always. Every new object must already carry its primary key (``give_ids``).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.orm import Mapper, Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from fieldops.db.base import Base


def insert_pending(session: Session) -> None:
    """INSERT every object pending in ``session`` (one statement per table) and make them
    persistent, as ``session.flush()`` would for new objects alone."""
    pending = list(session.new)
    if not pending:
        return
    by_table: dict[sa.Table, list[Any]] = defaultdict(list)
    for obj in pending:
        mapper: Mapper[Any] = sa.inspect(type(obj))
        by_table[mapper.local_table].append(obj)  # type: ignore[index]
    connection = session.connection()  # no autoflush: these objects are the flush
    write = _copy if connection.dialect.name == "postgresql" else _execute_many
    for table in Base.metadata.sorted_tables:  # parents before children
        objects = by_table.pop(table, None)
        if objects:
            mapper = sa.inspect(type(objects[0]))
            write(connection, table, [_row(mapper, table, obj) for obj in objects])
    if by_table:
        raise TypeError(f"not a table of fieldops: {', '.join(t.name for t in by_table)}")
    for obj in pending:
        session.expunge(obj)
        make_transient_to_detached(obj)
        session.add(obj)


def _execute_many(connection: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    connection.execute(table.insert(), rows)


def _copy(connection: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    dialect = connection.dialect
    quote = dialect.identifier_preparer
    names = list(rows[0])
    statement = (
        f"COPY {quote.format_table(table)} ({', '.join(quote.quote(n) for n in names)}) FROM STDIN"
    )
    processors = [table.c[name].type._cached_bind_processor(dialect) for name in names]
    driver = connection.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(
                    [
                        value if process is None else process(value)
                        for value, process in zip(row.values(), processors, strict=True)
                    ]
                )
    except psycopg.Error as error:
        raise sa.exc.DBAPIError.instance(statement, None, error, psycopg.Error) from error


def _row(mapper: Mapper[Any], table: sa.Table, obj: Any) -> dict[str, Any]:
    """The object's column values; a column it leaves unset takes its default, on the
    object too (as a flush sets it)."""
    row: dict[str, Any] = {}
    values = obj.__dict__
    for column in table.columns:
        key = mapper.get_property_by_column(column).key
        if key in values:
            row[column.key] = values[key]
            continue
        if column.primary_key:
            raise ValueError(f"{table.name}: a new row without its {column.key} (give_ids)")
        default = column.default
        value = None
        if isinstance(default, sa.ColumnDefault):
            value = default.arg(None) if default.is_callable else default.arg
        elif default is not None:
            raise TypeError(f"{table.name}.{column.key}: a default only the database knows")
        set_committed_value(obj, key, value)
        row[column.key] = value
    return row
