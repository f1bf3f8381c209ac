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
as always. A rollback (of the transaction or of a savepoint around the write) forgets the
objects it kept, as it forgets objects a flush inserted: they leave the session.

Every new object it keeps in the session must already carry its primary key
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
from geoalchemy2 import Geometry
from sqlalchemy import event
from sqlalchemy.orm import (
    Mapper,
    Session,
    SessionTransaction,
    make_transient,
    make_transient_to_detached,
)
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
    transaction = session.get_nested_transaction() or session.get_transaction()
    written: list[tuple[Any, Any]] = session.info.setdefault(_WRITTEN, [])
    for obj in pending:
        session.expunge(obj)
        if keep is None or isinstance(obj, keep):
            make_transient_to_detached(obj)
            session.add(obj)
            written.append((transaction, obj))


# What insert_pending kept in a session, with the transaction that wrote it: a flush's
# new objects leave the session when their transaction rolls back, and so do these.
_WRITTEN = "fieldops.bulk.written"


@event.listens_for(Session, "after_soft_rollback")
def _forget_rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    written = session.info.get(_WRITTEN)
    if not written:
        return
    kept = []
    for transaction, obj in written:
        if _within(transaction, previous_transaction):
            if obj in session:
                session.expunge(obj)
            make_transient(obj)
        else:
            kept.append((transaction, obj))
    session.info[_WRITTEN] = kept


@event.listens_for(Session, "after_commit")
def _forget_committed(session: Session) -> None:
    session.info.pop(_WRITTEN, None)


def _within(transaction: SessionTransaction | None, outer: SessionTransaction) -> bool:
    while transaction is not None:
        if transaction is outer:
            return True
        transaction = transaction.parent
    return False


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
    # (column key, attribute key, the value a row that leaves the attribute unset takes,
    # whether None counts as unset: a column with a default that does not store None)
    columns: tuple[tuple[str, str, Callable[[], Any], bool], ...]
    relationships: tuple[str, ...]  # set on a new object, a flush would fill its keys in

    def row(self, obj: Any) -> dict[str, Any]:
        """The object's column values; an attribute left unset takes its column's default,
        on the object too (as a flush sets it)."""
        values = obj.__dict__
        for name in self.relationships:
            if values.get(name) is not None:
                raise TypeError(f"{self.table.name}: {name} is set; give its key instead")
        row: dict[str, Any] = {}
        for column, key, default, none_is_unset in self.columns:
            value = values.get(key)
            if value is None and (none_is_unset or key not in values):
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
        (
            column.key,
            mapper.get_property_by_column(column).key,
            _default_of(table, column),
            column.default is not None and not isinstance(column.type, sa.JSON),
        )
        for column in table.columns
        if numbered or column is not key_column
    ]
    relationships = tuple(r.key for r in mapper.relationships)
    return _Plan(
        table, mapper.get_property_by_column(key_column).key, tuple(columns), relationships
    )


def _default_of(table: sa.Table, column: sa.Column[Any]) -> Callable[[], Any]:
    """What a row that leaves the column unset stores (written by us, not by the database:
    COPY and a uniform executemany both send every column)."""
    where = f"{table.name}.{column.key}"
    if column.server_default is not None:
        raise TypeError(f"{where}: a default only the database knows")
    expression = column.type.bind_expression(sa.bindparam("value"))
    if expression is not None and not isinstance(column.type, Geometry):
        # COPY sends values as they are: only PostGIS's EWKT text parses as the SQL would.
        raise TypeError(f"{where}: its type converts values in SQL")
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
    raise TypeError(f"{where}: a default only the database knows")


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
    pooled = connection.connection
    driver = pooled.driver_connection
    assert isinstance(driver, psycopg.Connection)
    # Errors as an INSERT through SQLAlchemy raises them: a value its type refuses as a
    # StatementError, the database's refusal as the matching DBAPIError, and a lost
    # connection invalidated, so that the rollback after it does not fail in turn.
    try:
        values = [
            [
                value if process is None else process(value)
                for value, process in zip(row.values(), processors, strict=True)
            ]
            for row in rows
        ]
    except Exception as error:
        raise sa.exc.StatementError(str(error), statement, None, error) from error
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for line in values:
                copy.write_row(line)
    except psycopg.Error as error:
        lost = dialect.is_disconnect(error, pooled, None)  # type: ignore[arg-type]
        if lost:
            connection.invalidate(error)
        raise sa.exc.DBAPIError.instance(
            statement, None, error, psycopg.Error, connection_invalidated=lost
        ) from error
