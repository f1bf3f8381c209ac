"""Duplicate searches that could see each other's new incidents take advisory locks that
conflict: two search boxes of one group that meet hold one key, at least one of them
exclusively, whatever their radii (up to the catalogue's 5 km), so one of the two
transactions waits for the other; and no search takes more than a handful of locks."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from fieldops.geo.duplicates import bbox_around
from fieldops.incidents.repo import MAX_LOCK_CELLS, DuplicateSearch, duplicate_locks

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
        held_a, held_b = dict(duplicate_locks([a])), dict(duplicate_locks([b]))
        assert any(held_a[k] or held_b[k] for k in held_a.keys() & held_b.keys())
    # Bounded: its cells and its group, or its group alone.
    assert len(duplicate_locks([a])) <= MAX_LOCK_CELLS + 1


def test_a_wide_box_locks_its_group_and_conflicts_with_a_search_in_its_middle() -> None:
    # 5 km around a point: the box spans dozens of cells each way; a small search in its
    # middle (far from every corner cell) still has to wait for it, and it for them.
    wide = dict(duplicate_locks([search(-73.60, 45.52, 5000)]))
    middle = dict(duplicate_locks([search(-73.60, 45.52, 20)]))
    assert list(wide.values()) == [True]  # the group, exclusively
    (group,) = wide
    assert middle[group] is False  # the small one holds the group shared: they conflict
    assert len(middle) >= 2


def test_a_usual_search_takes_its_cells_and_its_group_in_ascending_order() -> None:
    locks = duplicate_locks([search(-73.5673, 45.5017, 150), search(-73.70, 45.45, 20)])
    assert locks == sorted(locks)
    assert [exclusive for _, exclusive in locks].count(False) == 1  # one group, shared
    assert 3 <= len(locks) <= 9
    one = duplicate_locks([search(-73.5673, 45.5017, 150)])
    assert 2 <= len(one) <= 5
    # Another group's search shares no lock with it.
    other = duplicate_locks([search(-73.5673, 45.5017, 150, group="water")])
    assert not {k for k, _ in one} & {k for k, _ in other}
