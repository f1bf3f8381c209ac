"""Instants on SQLite: the one-step processors store and read exactly what the chain of
``UTCDateTime``'s methods and SQLAlchemy's SQLite DATETIME stores and reads (the same text,
so every stored instant, comparison and index stays as it was), for any instant in any
zone."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.types import TypeDecorator

from fieldops.db.base import UTCDateTime

SQLITE = sqlite.dialect()
COLUMN = cast(UTCDateTime, UTCDateTime().dialect_impl(SQLITE))


def chain_bind(value: datetime) -> Any:
    """What the methods and SQLite's DATETIME store, one after the other."""
    process: Callable[[Any], Any] | None = TypeDecorator.bind_processor(COLUMN, SQLITE)
    assert process is not None
    return process(value)


def chain_result(value: Any) -> Any:
    process: Callable[[Any], Any] | None = TypeDecorator.result_processor(COLUMN, SQLITE, None)
    assert process is not None
    return process(value)


BIND = COLUMN.bind_processor(SQLITE)
RESULT = COLUMN.result_processor(SQLITE, None)

zones = st.one_of(
    st.just(UTC),
    st.timedeltas(min_value=timedelta(hours=-23, minutes=59), max_value=timedelta(hours=23))
    .map(lambda offset: timezone(offset - timedelta(microseconds=offset.microseconds)))
    .filter(lambda zone: zone is not UTC),
    st.timezones(),
)
# Hypothesis takes naive bounds, whatever zones it gives the instants.
EARLIEST = datetime(2, 1, 1)  # noqa: DTZ001
LATEST = datetime(9998, 12, 31)  # noqa: DTZ001
instants = st.datetimes(min_value=EARLIEST, max_value=LATEST, timezones=zones)


@given(instants)
def test_an_instant_is_stored_as_the_chain_stores_it(value: datetime) -> None:
    assert BIND is not None and RESULT is not None
    stored = BIND(value)
    assert stored == chain_bind(value)
    read = RESULT(stored)
    assert read == chain_result(stored) == value.astimezone(UTC)
    assert read.tzinfo is UTC


@given(st.datetimes(min_value=EARLIEST.replace(year=1000), max_value=LATEST))
def test_text_without_fraction_or_written_elsewhere_reads_as_the_chain_reads_it(
    naive: datetime,
) -> None:
    assert RESULT is not None
    for text in (
        f"{naive:%Y-%m-%d %H:%M:%S}",  # CURRENT_TIMESTAMP's form
        f"{naive:%Y-%m-%d %H:%M:%S.%f}",
        f"{naive:%Y-%m-%d}",  # a bare date: the long way
    ):
        assert RESULT(text) == chain_result(text)


def test_none_and_naive_instants() -> None:
    assert BIND is not None and RESULT is not None
    assert BIND(None) is None and RESULT(None) is None
    with pytest.raises(ValueError, match="naive datetime"):
        BIND(datetime(2026, 11, 29, 12, 0))  # noqa: DTZ001 (the naive instant refused)


def test_other_backends_keep_the_chain() -> None:
    dialect = postgresql.dialect()
    column = UTCDateTime().dialect_impl(dialect)
    value = datetime(2026, 11, 29, 7, 0, tzinfo=timezone(timedelta(hours=-5)))
    process = column.bind_processor(dialect)
    stored = process(value) if process is not None else value
    assert stored == value and stored.tzinfo is UTC


@given(st.lists(instants, min_size=1, max_size=30))
def test_instants_seen_before_store_and_read_as_the_first_time(values: list[datetime]) -> None:
    """Each instant's text is made once and kept: an instant given again, in any zone,
    and its text read again, give what the chain gives."""
    assert BIND is not None and RESULT is not None
    for value in values + values[::-1] + [v.astimezone(UTC) for v in values]:
        stored = BIND(value)
        assert stored == chain_bind(value)
        assert RESULT(stored) == chain_result(stored) == value.astimezone(UTC)


def test_a_naive_instant_is_refused_after_the_same_wall_time_in_utc() -> None:
    """The kept text of an instant never answers for a naive datetime of the same wall
    time (a naive and an aware datetime are never equal keys)."""
    assert BIND is not None
    aware = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    assert BIND(aware) == "2026-11-29 12:00:00.000000"
    naive = aware.replace(tzinfo=None)
    with pytest.raises(ValueError, match="naive datetime"):
        BIND(naive)


@pytest.mark.parametrize(
    "wall",
    [
        datetime(2026, 11, 1, 1, 30),  # noqa: DTZ001 (repeated: clocks go back at 2:00)
        datetime(2026, 3, 8, 2, 30),  # noqa: DTZ001 (skipped: clocks go forward at 2:00)
    ],
)
def test_a_wall_time_twice_in_a_zone_stores_each_instant(wall: datetime) -> None:
    """In a zone with clock changes, the two readings of one wall time (``fold`` 0 and 1)
    are equal datetimes with equal hashes, yet an hour apart as instants: each is stored
    as its own instant, whichever comes first."""
    assert BIND is not None
    zone = ZoneInfo("America/New_York")
    first, second = wall.replace(tzinfo=zone), wall.replace(tzinfo=zone, fold=1)
    assert first == second and hash(first) == hash(second)
    assert first.astimezone(UTC) != second.astimezone(UTC)
    for pair in ((first, second), (second, first)):
        for value in pair:
            assert BIND(value) == chain_bind(value)


def test_the_kept_texts_stay_bounded() -> None:
    from fieldops.db import base

    assert BIND is not None and RESULT is not None
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for k in range(2 * base._MEMO_LIMIT + 1):
        RESULT(BIND(start + timedelta(seconds=k)))
    assert 0 < len(base._texts) <= base._MEMO_LIMIT
    assert 0 < len(base._instants) <= base._MEMO_LIMIT
