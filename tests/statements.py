"""Counting the SQL statements a piece of code sends: how tests show that a batch costs a
handful of statements whatever its size."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
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
