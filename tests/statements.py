"""Counting the SQL statements a piece of code sends: how tests show that a batch costs a
handful of statements whatever its size."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine


@contextlib.contextmanager
def counting_statements(engine: Engine) -> Iterator[list[int]]:
    """Counts, in ``[0]`` of what it yields, the statements sent through ``engine``."""
    counter = [0]

    def count(*_: Any) -> None:
        counter[0] += 1

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield counter
    finally:
        event.remove(engine, "before_cursor_execute", count)


@contextlib.contextmanager
def statements_matching(engine: Engine, wanted: Callable[[str], bool]) -> Iterator[list[str]]:
    """Collects, in what it yields, the statements sent through ``engine`` that ``wanted``
    accepts, whitespace folded and lowercased, in the order sent."""
    seen: list[str] = []

    def look(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        text = " ".join(statement.split()).lower()
        if wanted(text):
            seen.append(text)

    event.listen(engine, "before_cursor_execute", look)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", look)
