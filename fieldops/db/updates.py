"""A flush of changed objects as one UPDATE per table and set of changed columns.

A tick of a drill, or a batch of crews' steps, changes a few dozen rows: an assignment
accepted here, finished there, incidents moved, crews' statuses. The ORM's unit of work
writes them one mapper at a time in primary-key order, and starts a new statement each
time the next row's changed columns differ from the row before: rows changed in two ways
that alternate by id become as many statements as there are alternations, and each
object costs the unit of work's bookkeeping on top of its row.

``ChangesSession.flush`` writes the changed objects itself when they are plain column
changes (nothing deleted; no SQL expression, no relationship, no column under a unique
constraint or index, no hook listening to the flush): their rows grouped by table and by
the set of columns that changed, one executemany per group, each row holding only what
the ORM would have written (a value set back to what was stored is not written). Then the
objects are what a flush leaves: clean, their attributes the stored values (an expired
object's other attributes load when next read, not during the flush). New objects, when
``insert_pending`` can keep them (their ids given, see ``fieldops.db.ids``), go in after
the UPDATEs, one INSERT per table; a foreign key changed with them, which might name one,
is left to the ORM. Anything else goes to the ORM's flush, unchanged. The writes run in
the ORM's own flush transaction: an error rolls back as a failed flush does.

Only on SQLite. There a writer holds the whole database from ``BEGIN IMMEDIATE`` on, so
no other transaction sees the order in which rows are updated; within the transaction
only unique constraints could (rows written out of id order colliding on a value one of
them frees), and those changes are the ORM's. PostgreSQL locks rows one by one, in the
order they are updated, and keeps the unit of work's (by primary key within a table).

A savepoint rolled back expires the objects written within it, as it expires the objects
a flush wrote, so they read the database's values again.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import InstanceState, Mapper, Session
from sqlalchemy.orm.base import NO_VALUE
from sqlalchemy.orm.exc import StaleDataError

from fieldops.db.bulk import insert_pending, insertable, tables_in_order
from fieldops.db.written import expire, remember


class ChangesSession(Session):
    """A session whose flush writes changed objects grouped by columns (see the module)."""

    def flush(self, objects: Sequence[Any] | None = None) -> None:
        if objects is None and not self.deleted and (self.dirty or self.new):
            bind = self.get_bind()
            if bind.dialect.name == "sqlite" and not _flush_hooks(self):
                written = _flush_by_groups(self)
                if written:
                    return
        super().flush(objects)


def _flush_hooks(session: Session) -> bool:
    """Whether anything listens to the flush, which only the ORM's flush tells."""
    hooks = session.dispatch
    return bool(hooks.before_flush or hooks.after_flush or hooks.after_flush_postexec)


def _flush_by_groups(session: Session) -> bool:
    """The changed objects' rows grouped (``_changed_rows``), then the new objects'
    (``insert_pending``), in one sub-transaction as the ORM's flush: an error rolls the
    transaction back (the savepoint, in one) and the session wants ``rollback()``, as
    after a failed flush. False, having written nothing, when a change is not plain."""
    new = list(session.new)
    if new and (not insertable(new) or any(_insert_hooks(sa.inspect(o).mapper) for o in new)):
        return False
    # The UPDATEs go first, as the ORM updates a table before inserting into it; a changed
    # foreign key, which might name a new row, is left to the ORM.
    changed = _changed_rows(session, foreign_keys=not new)
    if changed is None:
        return False
    states, groups = changed
    # The ORM's own flush transaction (what ``Session._flush`` begins).
    transaction = session._autobegin_t()._begin()
    try:
        _write(session, groups)
        if new:
            insert_pending(session)
        # What the unit of work does to the objects it wrote: clean, nothing pending.
        InstanceState._commit_all_states([(s, s.dict) for s in states], session.identity_map)
        transaction.commit()
    except BaseException:
        transaction.rollback(_capture_exception=True)
        raise
    # A rollback of the whole transaction expires every object anyway; one of a savepoint
    # expires what was written within it.
    nested = session.get_nested_transaction()
    if nested is not None:
        remember(session, nested, [s.obj() for s in states], expire)
    return True


@dataclass(frozen=True, eq=False)
class _Table:
    """How a mapped class's changed attributes become an UPDATE of its table."""

    table: sa.Table
    columns: dict[str, sa.Column[Any]]  # attribute key -> its column (plain columns only)
    unique: frozenset[str]  # columns under a unique constraint or index, the key's among them
    update: sa.Update  # ... WHERE <primary key> = :pk_, the SET clause from each row's keys


@functools.cache
def _table(mapper: Mapper[Any]) -> _Table | None:
    """The class's plan, or None when its changes are the ORM's to write (a class that
    inherits, a composite key, a version counter, a column updated by default)."""
    table = mapper.local_table
    if not isinstance(table, sa.Table) or mapper.inherits or mapper.version_id_col is not None:
        return None
    if len(mapper.primary_key) != 1:
        return None
    (key_column,) = mapper.primary_key
    if any(c.onupdate is not None or c.server_onupdate is not None for c in table.columns):
        return None
    columns = {}
    for prop in mapper.column_attrs:
        (column,) = prop.columns
        if isinstance(column, sa.Column) and column.table is table:
            columns[prop.key] = column
    unique = {c.key for c in table.primary_key.columns}
    for constraint in table.constraints:
        if isinstance(constraint, sa.UniqueConstraint):
            unique |= {c.key for c in constraint.columns}
    for index in table.indexes:
        if index.unique:
            unique |= {c.key for c in index.columns if isinstance(c, sa.Column)}
    update = table.update().where(key_column == sa.bindparam("pk_"))
    return _Table(table, columns, frozenset(unique), update)


_Groups = dict[tuple[_Table, tuple[str, ...]], list[dict[str, Any]]]


def _changed_rows(
    session: Session, *, foreign_keys: bool
) -> tuple[list[InstanceState[Any]], _Groups] | None:
    """The changed objects and their rows grouped by table and changed columns, or None
    when a change is not a plain column's (``foreign_keys``: a foreign key's is)."""
    states: list[InstanceState[Any]] = [sa.inspect(obj) for obj in session.dirty]
    groups: _Groups = defaultdict(list)
    for state in states:
        plan = _table(state.mapper)
        if plan is None or state.key is None or _update_hooks(state.mapper):
            return None
        values = state.dict
        row: dict[str, Any] = {}
        for key, stored in state.committed_state.items():
            column = plan.columns.get(key)
            value = values.get(key, NO_VALUE)
            if (
                column is None
                or value is NO_VALUE
                or column.key in plan.unique  # rows written out of id order could collide
                or (column.foreign_keys and not foreign_keys)
                # A SQL expression (or what stands for one): the ORM's to write.
                or isinstance(value, sa.ClauseElement)
                or hasattr(value, "__clause_element__")
            ):
                return None
            if stored is not NO_VALUE and column.type.compare_values(value, stored):
                continue  # set back to the stored value: nothing to write
            row[column.key] = value
        if row:
            columns = tuple(sorted(row))
            row["pk_"] = state.key[1][0]  # the identity: an expired object has no id loaded
            groups[(plan, columns)].append(row)
    return states, groups


def _update_hooks(mapper: Mapper[Any]) -> bool:
    """Whether anything listens to the class's updates, which only the ORM's flush tells."""
    hooks = mapper.dispatch
    return bool(hooks.before_update or hooks.after_update)


def _insert_hooks(mapper: Mapper[Any]) -> bool:
    hooks = mapper.dispatch
    return bool(hooks.before_insert or hooks.after_insert)


def _write(session: Session, groups: _Groups) -> None:
    """One executemany per group: tables in dependency order, rows in id order."""
    connection = session.connection()
    order = _table_order()
    for (plan, _columns), rows in sorted(
        groups.items(), key=lambda group: (order[group[0][0].table], group[0][1])
    ):
        rows.sort(key=lambda r: r["pk_"])
        result = connection.execute(plan.update, rows)
        if result.rowcount != len(rows):
            raise StaleDataError(
                f"UPDATE statement on table {plan.table.name!r} expected to update "
                f"{len(rows)} row(s); {result.rowcount} were matched."
            )


@functools.cache
def _table_order() -> dict[sa.Table, int]:
    """Each table's place among them all, parents before children."""
    return {table: n for n, table in enumerate(tables_in_order())}
