"""What a rollback does to objects written around the ORM's flush.

``insert_pending`` and the grouped flush (``fieldops.db.updates``) write rows without the
unit of work, so a rollback does not know the objects behind them. ``remember`` notes each
object with the transaction or savepoint that wrote it and what a rollback of that one
must do to it, as the ORM does for what it flushed: a new object leaves the session
(``let_go``), a changed one reads the database again (``expire``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction, make_transient

Undo = Callable[[Session, Any], None]

_WRITTEN = "fieldops.db.written"


def remember(
    session: Session, transaction: SessionTransaction, objects: Iterable[Any], undo: Undo
) -> None:
    """``undo`` each of ``objects`` if ``transaction`` (or one around it) rolls back."""
    written: list[tuple[SessionTransaction, Any, Undo]] = session.info.setdefault(_WRITTEN, [])
    written += [(transaction, obj, undo) for obj in objects]


def let_go(session: Session, obj: Any) -> None:
    """A new object whose row was rolled back: out of the session, transient."""
    if obj in session:
        session.expunge(obj)
    make_transient(obj)


def expire(session: Session, obj: Any) -> None:
    """A changed object whose row was rolled back: its attributes load again."""
    if obj is not None and obj in session:
        session.expire(obj)


@event.listens_for(Session, "after_soft_rollback")
def _undo_rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    written = session.info.get(_WRITTEN)
    if not written:
        return
    kept = []
    for transaction, obj, undo in written:
        if _within(transaction, previous_transaction):
            undo(session, obj)
        else:
            kept.append((transaction, obj, undo))
    session.info[_WRITTEN] = kept


@event.listens_for(Session, "after_commit")
def _forget_committed(session: Session) -> None:
    # Also heard when a savepoint is released: what it wrote is then the enclosing
    # transaction's, and a rollback of that one must still undo it.
    if not session.in_nested_transaction():
        session.info.pop(_WRITTEN, None)


def _within(transaction: SessionTransaction | None, outer: SessionTransaction) -> bool:
    while transaction is not None:
        if transaction is outer:
            return True
        transaction = transaction.parent
    return False
