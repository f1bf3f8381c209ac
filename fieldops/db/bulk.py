"""Writing a batch of new rows without the ORM's unit of work.

A flush of many new objects costs, per object, the unit of work's bookkeeping (its
dependency sort, the insert parameters it collects, the identity map it updates after
each statement) on top of the statement itself. ``insert_pending`` writes the session's
new objects in the tables' dependency order, and then makes each object what a flush
would have made it: persistent in the session, its attributes the stored values,
nothing pending.

On SQLite (in process: a row costs next to nothing) that is a Core executemany per table.
On PostgreSQL it is one statement for every table, whatever the number of rows: each
table's rows go as one JSON array (serialised in C), read back row by row into an INSERT,
and the INSERTs after the first ride along as data-modifying WITH clauses (the foreign
keys are checked at the end of the statement, when every table has its rows). One round
trip to the server and a few parameters, where an executemany sends and executes one
statement per row, a COPY costs two round trips per table, and one array per column costs
the driver as much to build as the rows themselves. The values go through the columns'
own bind processing, as they would in an INSERT, then through each column type's input
in the database, as COPY's text would; a refusal (a constraint, a bad value) is raised as
the error an INSERT would have raised.

It only inserts: objects already stored that were changed go out with the next flush,
as always. A rollback (of the transaction or of a savepoint around the write) forgets the
objects it kept, as it forgets objects a flush inserted: they leave the session.

Every new object it keeps in the session must already carry its primary key
(``give_ids``); objects it lets go may leave theirs to the database (one statement fewer
than drawing them first).
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from geoalchemy2 import Geometry
from sqlalchemy.orm import (
    Mapper,
    Session,
    make_transient_to_detached,
)
from sqlalchemy.orm.attributes import set_committed_value

from fieldops.db.base import Base
from fieldops.db.written import let_go, remember


def insert_pending(
    session: Session,
    *,
    keep: tuple[type[Base], ...] | None = None,
    rows: Mapping[type[Base], Sequence[Mapping[str, Any]]] | None = None,
) -> None:
    """INSERT every object pending in ``session`` (one statement on PostgreSQL, one per
    table on SQLite) and make them persistent, as ``session.flush()`` would for new
    objects alone.

    ``keep``: only objects of these classes stay in the session; the others are written
    and let go (rows nothing reads back in this transaction, such as log events: putting
    each back into the session costs more than writing it). Those may come without their
    ids: the database numbers them, in the session's order.

    ``rows``: plain rows to write with them (attribute values by name; one left out takes
    its column's default), numbered by the database in their order: cheaper still than
    objects let go, when nothing needs an object. A class given rows has no object pending.
    """
    pending = list(session.new)
    by_class: dict[type[Base], list[Any]] = defaultdict(list)
    for obj in pending:
        by_class[type(obj)].append(obj)
    by_table: dict[sa.Table, list[dict[str, Any]]] = {}
    for cls, objects in by_class.items():
        plan = _plan(cls, numbered=not _numbered_by_database(cls, objects, keep))
        if plan.table in by_table:
            raise TypeError("two classes share a table")
        by_table[plan.table] = [plan.row(obj) for obj in objects]
    for cls, plain in (rows or {}).items():
        if plain:
            plan = _plan(cls, numbered=False)
            if plan.table in by_table:
                raise ValueError(f"{plan.table.name}: rows given and objects pending")
            by_table[plan.table] = [plan.values(row) for row in plain]
    if not by_table:
        return
    connection = session.connection()  # no autoflush: these objects are the flush
    batches = [(table, by_table.pop(table)) for table in tables_in_order() if table in by_table]
    if by_table:
        raise TypeError(f"not a table of fieldops: {', '.join(t.name for t in by_table)}")
    if connection.dialect.name == "postgresql":
        _insert_as_json(connection, batches)
    else:
        for table, table_rows in batches:
            connection.execute(table.insert(), table_rows)
    transaction = session.get_nested_transaction() or session.get_transaction()
    assert transaction is not None  # the connection above began one
    kept = []
    for obj in pending:
        session.expunge(obj)
        if keep is None or isinstance(obj, keep):
            make_transient_to_detached(obj)
            session.add(obj)
            kept.append(obj)
    # A flush's new objects leave the session when their transaction rolls back, and so
    # do these.
    remember(session, transaction, kept, let_go)


def insertable(objects: Iterable[Any]) -> bool:
    """Whether ``insert_pending`` can keep these new objects: each carries its primary key
    and no object in a relationship (a flush would fill its key in), and every column of
    its table is one it can fill."""
    for obj in objects:
        cls: type[Base] = type(obj)
        try:
            plan = _plan(cls, numbered=True)
        except (TypeError, ValueError):  # a default only the database knows, a composite key
            return False
        values = obj.__dict__
        if values.get(plan.key) is None:
            return False
        if any(values.get(name) is not None for name in plan.relationships):
            return False
    return True


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

    @functools.cached_property
    def attributes(self) -> frozenset[str]:
        """The attribute keys a plain row may give."""
        return frozenset(key for _column, key, _default, _none in self.columns)

    def values(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """A plain row's column values; one left out (or None, where None counts as unset)
        takes its column's default."""
        unknown = given.keys() - self.attributes
        if unknown:
            raise TypeError(f"{self.table.name}: no column for {', '.join(sorted(unknown))}")
        return self._filled(given, None)

    def row(self, obj: Any) -> dict[str, Any]:
        """The object's column values; an attribute left unset takes its column's default,
        on the object too (as a flush sets it)."""
        values = obj.__dict__
        for name in self.relationships:
            if values.get(name) is not None:
                raise TypeError(f"{self.table.name}: {name} is set; give its key instead")
        return self._filled(values, obj)

    def _filled(self, given: Mapping[str, Any], obj: Any | None) -> dict[str, Any]:
        row: dict[str, Any] = {}
        for column, key, default, none_is_unset in self.columns:
            value = given.get(key)
            if value is None and (none_is_unset or key not in given):
                value = default()
                if obj is not None:
                    set_committed_value(obj, key, value)
            row[column] = value
        return row


@functools.cache
def tables_in_order() -> tuple[sa.Table, ...]:
    """Every table, parents before children (sorting them anew costs a quarter of a
    millisecond)."""
    return tuple(Base.metadata.sorted_tables)


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
    the JSON rows and a uniform executemany both send every column)."""
    where = f"{table.name}.{column.key}"
    if column.server_default is not None:
        raise TypeError(f"{where}: a default only the database knows")
    expression = column.type.bind_expression(sa.bindparam("value"))
    if expression is not None and not isinstance(column.type, Geometry):
        # Values reach the column as text: only PostGIS's EWKT parses as the SQL would.
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


def _insert_as_json(connection: sa.Connection, batches: list[tuple[sa.Table, Rows]]) -> None:
    """Every table's rows in one statement (PostgreSQL): see the module's docstring."""
    shape = tuple((table, tuple(rows[0])) for table, rows in batches)
    statement, processors = _json_statement(shape, connection.dialect)
    try:
        params = {
            f"t{n}": orjson.dumps(
                [_values(row, process) for row in rows], option=orjson.OPT_NON_STR_KEYS
            ).decode()
            for n, ((_table, rows), process) in enumerate(zip(batches, processors, strict=True))
        }
    except Exception as error:
        # As an INSERT through SQLAlchemy raises it: a value its type refuses.
        raise sa.exc.StatementError(str(error), statement, None, error) from error
    connection.exec_driver_sql(statement, params)


Rows = list[dict[str, Any]]
Processors = tuple[tuple[int, Callable[[Any], Any]], ...]  # (position, the type's processing)


def _values(row: dict[str, Any], processors: Processors) -> list[Any]:
    values = list(row.values())
    for position, process in processors:
        values[position] = process(values[position])
    for value in values:
        if isinstance(value, float) and not math.isfinite(value):
            # JSON has no NaN or infinity: it would turn them into null.
            raise ValueError(f"{value!r} cannot be written in a batch; store it alone")
    return values


@functools.lru_cache(maxsize=64)
def _json_statement(
    shape: tuple[tuple[sa.Table, tuple[str, ...]], ...], dialect: sa.Dialect
) -> tuple[str, list[Processors]]:
    """The statement for these tables and columns, and for each table the columns whose
    values go through their type's bind processing first (as in an INSERT)."""
    quote = dialect.identifier_preparer
    inserts = []
    processors: list[Processors] = []
    for n, (table, names) in enumerate(shape):
        columns = [table.c[name] for name in names]
        inserts.append(
            f"INSERT INTO {quote.format_table(table)} "
            f"({', '.join(quote.quote(column.name) for column in columns)}) "
            f"SELECT {', '.join(_selected(c, column, dialect) for c, column in enumerate(columns))}"
            # In the array's order: the ids the database gives follow it.
            f" FROM json_array_elements(CAST(%(t{n})s AS JSON)) WITH ORDINALITY AS e(r, n)"
            " ORDER BY e.n"
        )
        processors.append(
            tuple(
                (c, process)
                for c, column in enumerate(columns)
                if not isinstance(column.type, sa.JSON)
                and (process := column.type._cached_bind_processor(dialect)) is not None
            )
        )
    *first, last = inserts
    if not first:
        return last, processors
    withs = ", ".join(f"w{n} AS ({insert})" for n, insert in enumerate(first))
    return f"WITH {withs} {last}", processors


def _selected(position: int, column: sa.Column[Any], dialect: sa.Dialect) -> str:
    """The value of one column in a row of the JSON array. A JSON column's value is in the
    array as it is (None as JSON's null, as SQLAlchemy stores it); any other arrives as
    the text JSON gives it (a string's contents, a number's digits, SQL NULL for null) and
    goes through its column type's input, as it would from COPY. Text goes in as text:
    the INSERT refuses a value too long for its column, where a cast to the column's
    VARCHAR(n) would cut it short without a word."""
    if isinstance(column.type, sa.JSON):
        return f"CAST(e.r->{position} AS {column.type.compile(dialect=dialect)})"
    stored = column.type.impl_instance if isinstance(column.type, sa.TypeDecorator) else None
    if isinstance(stored or column.type, sa.String):
        return f"e.r->>{position}"
    return f"CAST(e.r->>{position} AS {column.type.compile(dialect=dialect)})"
