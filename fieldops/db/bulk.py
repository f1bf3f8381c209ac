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
as always. The objects it writes are not tracked as new in the transaction: if it rolls
back, roll the whole session back (a savepoint's rollback would leave them looking
stored). Every new object it keeps in the session must already carry its primary key
(``give_ids``); objects it lets go may leave theirs to the database (one statement fewer
than drawing them first).
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.orm import Mapper, Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from fieldops.db.base import Base


def insert_pending(session: Session, *, keep: tuple[type[Base], ...] | None = None) -> None:
    """INSERT every object pending in ``session`` (one statement per table) and make them
    persistent, as ``session.flush()`` would for new objects alone.

    ``keep``: only objects of these classes stay in the session; the others are written
    and let go (rows nothing reads back in this transaction, such as log events: putting
    each back into the session costs more than writing it). Those may come without their
    ids: the database numbers them, in the session's order."""
    pending = list(session.new)
    if not pending:
        return
    by_class: dict[type[Base], list[Any]] = defaultdict(list)
    for obj in pending:
        by_class[type(obj)].append(obj)
    plans = {
        _plan(cls, numbered=not _numbered_by_database(cls, objects, keep)): objects
        for cls, objects in by_class.items()
    }
    by_table = {plan.table: (plan, objects) for plan, objects in plans.items()}
    if len(by_table) != len(plans):
        raise TypeError("two classes share a table")
    connection = session.connection()  # no autoflush: these objects are the flush
    write = _copy if connection.dialect.name == "postgresql" else _execute_many
    for table in Base.metadata.sorted_tables:  # parents before children
        if table in by_table:
            plan, objects = by_table.pop(table)
            write(connection, table, [plan.row(obj) for obj in objects])
    if by_table:
        raise TypeError(f"not a table of fieldops: {', '.join(t.name for t in by_table)}")
    for obj in pending:
        session.expunge(obj)
        if keep is None or isinstance(obj, keep):
            make_transient_to_detached(obj)
            session.add(obj)


def _numbered_by_database(
    cls: type[Base], objects: list[Any], keep: tuple[type[Base], ...] | None
) -> bool:
    """Whether the objects go without their primary key: objects let go, all without."""
    if keep is None or issubclass(cls, keep):
        return False
    key = _plan(cls, numbered=True).key
    unnumbered = sum(obj.__dict__.get(key) is None for obj in objects)
    if 0 < unnumbered < len(objects):
        raise ValueError(f"{cls.__tablename__}: some new rows have their ids, some not")
    return unnumbered > 0


@dataclass(frozen=True)
class _Plan:
    """How objects of one mapped class become rows of its table."""

    table: sa.Table
    key: str  # the primary key's attribute
    # (column key, attribute key, the value a row that leaves the attribute unset takes)
    columns: tuple[tuple[str, str, Callable[[], Any]], ...]

    def row(self, obj: Any) -> dict[str, Any]:
        """The object's column values; an attribute left unset takes its column's default,
        on the object too (as a flush sets it)."""
        values = obj.__dict__
        row: dict[str, Any] = {}
        for column, key, default in self.columns:
            if key in values:
                row[column] = values[key]
            else:
                value = default()
                set_committed_value(obj, key, value)
                row[column] = value
        return row


@functools.cache
def _plan(cls: type[Base], *, numbered: bool) -> _Plan:
    """``numbered``: the rows carry their primary key (else the database gives it)."""
    mapper: Mapper[Any] = sa.inspect(cls)
    table = mapper.local_table
    assert isinstance(table, sa.Table)
    (key_column,) = mapper.primary_key
    columns = [
        (column.key, mapper.get_property_by_column(column).key, _default_of(table, column))
        for column in table.columns
        if numbered or column is not key_column
    ]
    return _Plan(table, mapper.get_property_by_column(key_column).key, tuple(columns))


def _default_of(table: sa.Table, column: sa.Column[Any]) -> Callable[[], Any]:
    default = column.default
    if column.primary_key:

        def refuse() -> Any:
            raise ValueError(f"{table.name}: a new row without its {column.key} (give_ids)")

        return refuse
    if default is None:
        return lambda: None
    if isinstance(default, sa.ColumnDefault):
        if default.is_callable:
            return functools.partial(default.arg, None)
        return lambda: default.arg
    raise TypeError(f"{table.name}.{column.key}: a default only the database knows")


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
