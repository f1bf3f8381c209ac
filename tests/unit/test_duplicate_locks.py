"""Duplicate searches that could see each other's new incidents take a common advisory
lock: two search boxes of one group that meet share a key, whatever their radii (up to
the catalogue's 5 km), so one of the two transactions waits for the other."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from fieldops.geo.duplicates import bbox_around
from fieldops.incidents.repo import LOCK_CELL_DEG, DuplicateSearch, duplicate_lock_keys

SINCE = datetime(2026, 5, 1, tzinfo=UTC)
LON = st.floats(min_value=-73.98, max_value=-73.47)
LAT = st.floats(min_value=45.40, max_value=45.71)
RADIUS = st.one_of(st.floats(min_value=1, max_value=200), st.floats(min_value=200, max_value=5000))


def search(lon: float, lat: float, radius_m: float, group: str = "roads") -> DuplicateSearch:
    return DuplicateSearch(group=group, bbox=bbox_around(lon, lat, radius_m), since=SINCE)


def meet(a: DuplicateSearch, b: DuplicateSearch) -> bool:
    return not (
        a.bbox[2] < b.bbox[0] or b.bbox[2] < a.bbox[0]
        or a.bbox[3] < b.bbox[1] or b.bbox[3] < a.bbox[1]
    )  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(
    first=st.tuples(LON, LAT, RADIUS),
    # The second lies near the first, so that many pairs meet and many just miss.
    offset=st.tuples(st.floats(-0.08, 0.08), st.floats(-0.06, 0.06)),
    second_radius=RADIUS,
)
def test_searches_of_one_group_whose_boxes_meet_share_a_lock(
    first: tuple[float, float, float], offset: tuple[float, float], second_radius: float
) -> None:
    a = search(*first)
    b = search(first[0] + offset[0], first[1] + offset[1], second_radius)
    if meet(a, b):
        assert set(duplicate_lock_keys([a])) & set(duplicate_lock_keys([b]))


def test_a_wide_box_locks_every_cell_it_covers_not_only_its_corners() -> None:
    # 5 km around a point: the box spans several cells each way, and a small search in
    # its middle (far from every corner cell) still shares a key with it.
    wide = search(-73.60, 45.52, 5000)
    middle = search(-73.60, 45.52, 20)
    assert set(duplicate_lock_keys([wide])) >= set(duplicate_lock_keys([middle]))
    columns = (wide.bbox[2] - wide.bbox[0]) / LOCK_CELL_DEG
    rows = (wide.bbox[3] - wide.bbox[1]) / LOCK_CELL_DEG
    assert len(duplicate_lock_keys([wide])) >= int(columns) * int(rows) > 4


def test_a_usual_search_takes_one_to_four_locks_in_ascending_order() -> None:
    keys = duplicate_lock_keys([search(-73.5673, 45.5017, 150), search(-73.70, 45.45, 20)])
    assert keys == sorted(keys)
    assert 2 <= len(keys) <= 8
    assert len(duplicate_lock_keys([search(-73.5673, 45.5017, 150)])) <= 4
