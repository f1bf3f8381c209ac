"""Time spent inside the database driver while a bench runs: statements executed, rows
fetched, transactions committed.

SQLAlchemy's calls into the DBAPI are timed for as long as the context is open: the
dialect's execute and commit methods and the cursor fetches of its results. What the
driver does there is the database's own work (for SQLite, in process: the engine runs
the statement, its triggers and indexes, and hands over the rows); the rest of a run's
wall time is Python's (FieldOps, SQLAlchemy, numpy...). A fetch's figure includes the thin
SQLAlchemy layer around the cursor's own call.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import cursor
from sqlalchemy.engine.default import DefaultDialect


@dataclass
class DriverTime:
    execute_s: float = 0.0
    fetch_s: float = 0.0
    commit_s: float = 0.0
    statements: int = 0  # an executemany counts once
    commits: int = 0

    @property
    def total_s(self) -> float:
        return self.execute_s + self.fetch_s + self.commit_s


# (class, method, the DriverTime field it adds to, the counter it bumps)
_TIMED: list[tuple[type, str, str, str | None]] = [
    (DefaultDialect, "do_execute", "execute_s", "statements"),
    (DefaultDialect, "do_executemany", "execute_s", "statements"),
    (DefaultDialect, "do_execute_no_params", "execute_s", "statements"),
    (DefaultDialect, "do_commit", "commit_s", "commits"),
    (cursor.CursorFetchStrategy, "fetchone", "fetch_s", None),
    (cursor.CursorFetchStrategy, "fetchmany", "fetch_s", None),
    (cursor.CursorFetchStrategy, "fetchall", "fetch_s", None),
]


@contextmanager
def driver_time() -> Iterator[DriverTime]:
    """Time the driver's work until the context closes (in this process, every engine)."""
    spent = DriverTime()
    originals: list[tuple[type, str, Callable[..., Any]]] = []

    def timed(original: Callable[..., Any], field: str, counter: str | None) -> Callable[..., Any]:
        @functools.wraps(original)
        def call(*args: Any, **kwargs: Any) -> Any:
            begun = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                setattr(spent, field, getattr(spent, field) + time.perf_counter() - begun)
                if counter is not None:
                    setattr(spent, counter, getattr(spent, counter) + 1)

        return call

    try:
        for owner, name, field, counter in _TIMED:
            original = owner.__dict__[name]
            originals.append((owner, name, original))
            setattr(owner, name, timed(original, field, counter))
        yield spent
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)
