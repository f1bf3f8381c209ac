"""The filters of GET requests through the real app, on SpatiaLite and PostGIS: the default
90-day window, start_date/end_date, status, service_code, service_request_id, page and
page_size, updated_after/updated_before and lat/long/radius."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from georeport_doc import (
    BASE,
    OUTREMONT,
    PLATEAU,
    START,
    VILLE_MARIE,
    GeoReport,
    error_descriptions,
    moved,
    w3c,
)

from fieldops.clock import ManualClock

FORMATS = ["xml", "json"]


# --- the default window and start_date/end_date ---------------------------------------------


def test_by_default_only_the_last_90_days_are_listed(georeport: GeoReport) -> None:
    old = georeport.staff_report("pothole", OUTREMONT, requested_at=START - timedelta(days=100))
    recent = georeport.create("pothole", PLATEAU)

    assert georeport.ids() == [recent]
    assert georeport.ids(
        start_date=w3c(START - timedelta(days=120)), end_date=w3c(START - timedelta(days=60))
    ) == [old]
    assert georeport.ids(
        start_date="2026-01-01T00:00:00-05:00", end_date="2026-03-31T00:00:00-04:00"
    ) == [old]
    # The old request is still there by its id.
    assert georeport.one(old)["requested_datetime"] == "2026-01-24T09:00:00-05:00"


def test_the_default_window_edge_is_90_days_before_now(georeport: GeoReport) -> None:
    inside = georeport.staff_report(
        "pothole", PLATEAU, requested_at=START - timedelta(days=90) + timedelta(minutes=1)
    )
    georeport.staff_report(
        "fallen_tree", OUTREMONT, requested_at=START - timedelta(days=90) - timedelta(minutes=1)
    )

    assert georeport.ids() == [inside]


def test_the_default_window_moves_with_the_clock(georeport: GeoReport, clock: ManualClock) -> None:
    request_id = georeport.create("pothole", PLATEAU)
    clock.advance(timedelta(days=89))
    assert georeport.ids() == [request_id]

    clock.advance(timedelta(days=2))

    assert georeport.ids() == []
    assert georeport.one(request_id)["service_request_id"] == request_id


def test_a_span_of_exactly_90_days_is_allowed(georeport: GeoReport) -> None:
    request_id = georeport.create("pothole", PLATEAU)

    assert georeport.ids(start_date=w3c(START - timedelta(days=90)), end_date=w3c(START)) == [
        request_id
    ]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_span_over_90_days_is_a_400(georeport: GeoReport, fmt: str) -> None:
    response = georeport.get(
        "requests",
        fmt,
        start_date=w3c(START - timedelta(days=90, seconds=1)),
        end_date=w3c(START),
    )

    assert error_descriptions(response, 400, fmt) == [
        "end_date: the span from start_date may be at most 90 days"
    ]


def test_an_end_before_the_start_is_a_400(georeport: GeoReport) -> None:
    response = georeport.get("requests", start_date=w3c(START), end_date=w3c(START - timedelta(1)))

    assert error_descriptions(response, 400, "json") == ["end_date: is before start_date"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", ["start_date", "end_date", "updated_after", "updated_before"])
@pytest.mark.parametrize("value", ["2026-05-01T00:00:00", "2026-05-01"])
def test_a_naive_datetime_is_a_400(georeport: GeoReport, fmt: str, name: str, value: str) -> None:
    response = georeport.get("requests", fmt, **{name: value})

    assert error_descriptions(response, 400, fmt) == [
        f"{name}: must carry a time zone (Z or ±HH:MM)"
    ]


@pytest.mark.parametrize("name", ["start_date", "end_date", "updated_after", "updated_before"])
def test_a_datetime_that_is_not_w3c_is_a_400(georeport: GeoReport, name: str) -> None:
    response = georeport.get("requests", **{name: "last tuesday"})

    assert error_descriptions(response, 400, "json") == [
        f"{name}: must be a W3C datetime, e.g. 2026-05-04T10:00:00-04:00"
    ]


def test_empty_filters_behave_as_absent(georeport: GeoReport) -> None:
    request_id = georeport.create("pothole", PLATEAU)

    listed = georeport.ids(
        start_date="",
        end_date="",
        status="",
        service_code="",
        service_request_id="",
        page="",
        page_size="",
        updated_after="",
        lat="",
        long="",
        radius="",
        jurisdiction_id="",
    )
    assert listed == [request_id]


# --- status, service_code and service_request_id --------------------------------------------


@pytest.fixture
def open_and_closed(georeport: GeoReport, clock: ManualClock) -> dict[str, str]:
    """An open pothole (first), then a fallen tree closed as resolved, a minute apart."""
    pothole = georeport.create("pothole", PLATEAU)
    clock.advance(timedelta(minutes=1))
    tree = georeport.create("fallen_tree", OUTREMONT)
    georeport.set_status(tree, "resolved", "Cleared by the tree crew")
    return {"open": pothole, "closed": tree}


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("open", ["open"]),
        ("closed", ["closed"]),
        ("open,closed", ["closed", "open"]),
        ("closed, open", ["closed", "open"]),
        ("OPEN", ["open"]),
    ],
)
def test_status_filters(
    georeport: GeoReport, open_and_closed: dict[str, str], status: str, expected: list[str]
) -> None:
    assert georeport.ids(status=status) == [open_and_closed[e] for e in expected]
    statuses = [r["status"] for r in georeport.requests(status=status)]
    assert statuses == expected


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_unknown_status_is_a_400(georeport: GeoReport, fmt: str) -> None:
    response = georeport.get("requests", fmt, status="open,fixed")

    assert error_descriptions(response, 400, fmt) == [
        "status: must be open, closed or both (comma-separated)"
    ]


def test_service_code_takes_a_comma_separated_list(
    georeport: GeoReport, clock: ManualClock
) -> None:
    made = {}
    for code, where in (
        ("pothole", PLATEAU),
        ("fallen_tree", OUTREMONT),
        ("snow_ice", VILLE_MARIE),
    ):
        made[code] = georeport.create(code, where)
        clock.advance(timedelta(minutes=1))

    assert georeport.ids(service_code="pothole") == [made["pothole"]]
    assert georeport.ids(service_code="pothole,snow_ice") == [made["snow_ice"], made["pothole"]]
    assert georeport.ids(service_code="snow_ice, fallen_tree") == [
        made["snow_ice"],
        made["fallen_tree"],
    ]
    assert georeport.ids(service_code="unicorn_sighting") == []
    assert georeport.ids() == [made["snow_ice"], made["fallen_tree"], made["pothole"]]


def test_service_request_id_overrides_every_other_filter(
    georeport: GeoReport, open_and_closed: dict[str, str]
) -> None:
    old = georeport.staff_report("snow_ice", VILLE_MARIE, requested_at=START - timedelta(days=200))
    wanted = f"{open_and_closed['open']}, {open_and_closed['closed']},{old},999999999"

    listed = georeport.ids(
        service_request_id=wanted,
        service_code="dead_animal",
        status="open",
        start_date="2025-01-01T00:00:00Z",
        end_date="2025-01-02T00:00:00Z",
        updated_after="2030-01-01T00:00:00Z",
        updated_before="2020-01-01T00:00:00Z",
    )

    assert listed == [open_and_closed["closed"], open_and_closed["open"], old]
    assert georeport.ids(service_request_id=old) == [old]


def test_service_request_id_must_be_ids(georeport: GeoReport) -> None:
    response = georeport.get("requests", service_request_id="12,abc")

    assert error_descriptions(response, 400, "json") == [
        "service_request_id: must be request ids, comma-separated"
    ]


# --- page and page_size ---------------------------------------------------------------------


def test_page_and_page_size_walk_the_list_newest_first(
    georeport: GeoReport, clock: ManualClock
) -> None:
    places = [
        PLATEAU,
        OUTREMONT,
        VILLE_MARIE,
        moved(PLATEAU, north_m=300),
        moved(OUTREMONT, north_m=300),
    ]
    made = []
    for where in places:
        made.append(georeport.create("pothole", where))
        clock.advance(timedelta(minutes=1))
    newest_first = made[::-1]

    assert georeport.ids(page_size="2") == newest_first[:2]
    assert georeport.ids(page_size="2", page="1") == newest_first[:2]
    assert georeport.ids(page_size="2", page="2") == newest_first[2:4]
    assert georeport.ids(page_size="2", page="3") == newest_first[4:]
    assert georeport.ids(page_size="2", page="4") == []
    assert georeport.ids(page="2") == []
    assert georeport.ids(page_size="1000") == newest_first


@pytest.mark.parametrize(
    ("name", "value", "description"),
    [
        ("page_size", "0", "page_size: must be a whole number from 1 to 1000"),
        ("page_size", "1001", "page_size: must be a whole number from 1 to 1000"),
        ("page_size", "-1", "page_size: must be a whole number from 1 to 1000"),
        ("page_size", "ten", "page_size: must be a whole number from 1 to 1000"),
        ("page", "0", "page: must be a whole number from 1 to 1000000"),
        ("page", "1.5", "page: must be a whole number from 1 to 1000000"),
    ],
)
def test_a_bad_page_or_page_size_is_a_400(
    georeport: GeoReport, name: str, value: str, description: str
) -> None:
    response = georeport.get("requests", **{name: value})

    assert error_descriptions(response, 400, "json") == [description]


# --- updated_after / updated_before ---------------------------------------------------------


def test_updated_after_and_before_follow_the_last_change(
    georeport: GeoReport, clock: ManualClock
) -> None:
    first = georeport.create("pothole", PLATEAU)  # 14:00Z
    clock.advance(timedelta(hours=1))
    second = georeport.create("fallen_tree", OUTREMONT)  # 15:00Z

    assert georeport.ids(updated_after="2026-05-04T14:30:00Z") == [second]
    assert georeport.ids(updated_before="2026-05-04T14:30:00Z") == [first]
    assert georeport.ids(updated_after="2026-05-04T10:30:00-04:00") == [second]

    clock.advance(timedelta(hours=1))
    georeport.set_status(first, "resolved")  # 16:00Z

    assert georeport.ids(updated_after="2026-05-04T15:30:00Z") == [first]
    assert georeport.ids(updated_before="2026-05-04T15:30:00Z") == [second]
    assert georeport.ids(
        updated_after="2026-05-04T14:30:00Z", updated_before="2026-05-04T15:30:00Z"
    ) == [second]
    assert georeport.one(first)["updated_datetime"] == "2026-05-04T12:00:00-04:00"


# --- lat / long / radius --------------------------------------------------------------------


@pytest.fixture
def around_plateau(georeport: GeoReport, clock: ManualClock) -> dict[int, str]:
    """Requests of distinct groups at 0, 300 m north, 450 m east and 800 m north of PLATEAU,
    created a minute apart in that order; keyed by distance in metres."""
    made = {}
    for distance, code, where in (
        (0, "pothole", PLATEAU),
        (300, "fallen_tree", moved(PLATEAU, north_m=300)),
        (450, "dead_animal", moved(PLATEAU, east_m=450)),
        (800, "snow_ice", moved(PLATEAU, north_m=800)),
    ):
        made[distance] = georeport.create(code, where)
        clock.advance(timedelta(minutes=1))
    return made


@pytest.mark.parametrize(
    ("radius", "within"),
    [
        ("250", [0]),
        ("440", [0, 300]),
        ("460", [0, 300, 450]),
        (None, [0, 300, 450]),  # 500 m by default
        ("790", [0, 300, 450]),
        ("810", [0, 300, 450, 800]),
    ],
)
def test_lat_long_radius_keeps_requests_within_radius_metres(
    georeport: GeoReport, around_plateau: dict[int, str], radius: str | None, within: list[int]
) -> None:
    params = {"lat": str(PLATEAU[1]), "long": str(PLATEAU[0])}
    if radius is not None:
        params["radius"] = radius

    assert georeport.ids(**params) == [around_plateau[d] for d in reversed(within)]


@pytest.mark.parametrize(
    ("params", "description"),
    [
        ({"lat": "45.523"}, "lat/long: send both lat and long as decimal degrees"),
        ({"long": "-73.58"}, "lat/long: send both lat and long as decimal degrees"),
        ({"lat": "north", "long": "-73.58"}, "lat/long: send both lat and long as decimal degrees"),
        ({"lat": "91", "long": "-73.58"}, "lat/long: is out of range"),
        (
            {"lat": "45.523", "long": "-73.58", "radius": "0"},
            "radius: must be metres, more than 0 and at most 50000",
        ),
        (
            {"lat": "45.523", "long": "-73.58", "radius": "50001"},
            "radius: must be metres, more than 0 and at most 50000",
        ),
    ],
)
def test_a_bad_lat_long_or_radius_is_a_400(
    georeport: GeoReport, params: dict[str, str], description: str
) -> None:
    response = georeport.get("requests", **params)

    assert error_descriptions(response, 400, "json") == [description]


# --- application bugs -----------------------------------------------------------------------


def test_paging_a_radius_search_fills_each_page(georeport: GeoReport, clock: ManualClock) -> None:
    near = georeport.create("pothole", PLATEAU)
    clock.advance(timedelta(minutes=1))
    north = georeport.create("fallen_tree", moved(PLATEAU, north_m=100))
    clock.advance(timedelta(minutes=1))
    # 150 m north and 150 m east: 212 m away, inside the 200 m box but outside the circle.
    georeport.create("dead_animal", moved(PLATEAU, north_m=150, east_m=150))
    params = {"lat": str(PLATEAU[1]), "long": str(PLATEAU[0]), "radius": "200"}

    assert georeport.ids(**params) == [north, near]
    assert georeport.ids(**params, page_size="2", page="1") == [north, near]


def test_service_request_id_overrides_a_radius_search(georeport: GeoReport) -> None:
    request_id = georeport.create("pothole", PLATEAU)

    listed = georeport.ids(service_request_id=request_id, lat="45.0", long="-73.0", radius="100")

    assert listed == [request_id]


def test_a_radius_that_is_not_a_number_is_a_400_naming_radius(georeport: GeoReport) -> None:
    response = georeport.get("requests", lat="45.523", long="-73.58", radius="far")

    assert error_descriptions(response, 400, "json") == [
        "radius: must be metres, more than 0 and at most 50000"
    ]


@pytest.mark.parametrize(
    ("path", "params", "status", "description"),
    [
        ("requests", {"page": "²"}, 400, "page: must be a whole number from 1 to 1000000"),
        ("requests", {"page_size": "²"}, 400, "page_size: must be a whole number from 1 to 1000"),
        (
            "requests",
            {"service_request_id": "²"},
            400,
            "service_request_id: must be request ids, comma-separated",
        ),
        ("requests/²", {}, 404, "no request '²'"),
    ],
    ids=["page", "page_size", "service_request_id", "one_request"],
)
def test_unicode_digits_are_refused_as_georeport_errors(
    lenient_client: TestClient,
    path: str,
    params: dict[str, str],
    status: int,
    description: str,
) -> None:
    response = lenient_client.get(f"{BASE}/{path}.json", params=params)

    assert error_descriptions(response, status, "json") == [description]
