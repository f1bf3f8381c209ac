"""The map routes through the real app, on SpatiaLite and PostGIS: the change feed, hot spots,
heat, the live page and the browser files it loads from our own route."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pyproj
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from fieldops.auth.models import Role
from fieldops.clock import ManualClock
from fieldops.db.engine import unit_of_work
from fieldops.emergencies.models import Emergency
from fieldops.incidents.models import IncidentEvent

Report = Callable[..., httpx.Response]
Problem = Callable[[httpx.Response, int], dict[str, Any]]
Headers = dict[str, str]

PLATEAU = (-73.5800, 45.5230)
OUTREMONT = (-73.6080, 45.5180)
VILLE_MARIE = (-73.5500, 45.5000)
GEOD = pyproj.Geod(ellps="WGS84")


def along(start: tuple[float, float], metres: float, azimuth: float = 60.0) -> tuple[float, float]:
    lon, lat, _ = GEOD.fwd(start[0], start[1], azimuth, metres)
    return (lon, lat)


def opened(response: httpx.Response) -> int:
    assert response.status_code == 201, response.text
    incident_id: int = response.json()["incident"]["id"]
    return incident_id


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def feature_ids(collection: dict[str, Any]) -> list[int]:
    return [f["id"] for f in collection["features"]]


def crew_count(app_client: TestClient, headers: Headers) -> int:
    return len(ok(app_client.get("/api/v1/crews", headers=headers)))


# --- the change feed ------------------------------------------------------------------------


def test_the_feed_without_a_cursor_gives_every_open_incident_and_the_cursor(
    app_client: TestClient, report: Report, dispatcher: Headers, district_ids: dict[str, int]
) -> None:
    first = opened(report("flooding", PLATEAU, description="basement"))
    second = opened(report("pothole", OUTREMONT))
    closed = opened(report("fallen_tree", VILLE_MARIE))
    patch = {"status": "resolved"}
    response = app_client.patch(f"/api/v1/incidents/{closed}", json=patch, headers=dispatcher)
    assert response.status_code == 200

    body = ok(app_client.get("/api/v1/feed", headers=dispatcher))

    assert body["snapshot"] is True
    assert body["events"] == [] and body["gaps"] == []
    assert feature_ids(body["incidents"]) == [first, second]
    events = ok(app_client.get(f"/api/v1/incidents/{closed}", headers=dispatcher))["events"]
    assert body["cursor"] == max(e["id"] for e in events)
    feature = body["incidents"]["features"][0]
    assert feature["geometry"] == {"type": "Point", "coordinates": [PLATEAU[0], PLATEAU[1]]}
    assert feature["properties"] == {
        "service_code": "flooding",
        "status": "open",
        "priority": 2,
        "district_id": district_ids["Le Plateau-Mont-Royal"],
        "report_count": 1,
    }
    assert body["emergencies"] == {"type": "FeatureCollection", "features": []}
    assert len(body["crews"]["features"]) == crew_count(app_client, dispatcher)


def test_the_feed_after_a_cursor_gives_new_events_and_the_touched_incidents_state(
    app_client: TestClient, report: Report, dispatcher: Headers, clock: ManualClock
) -> None:
    kept = opened(report("flooding", PLATEAU))
    closing = opened(report("pothole", OUTREMONT))
    cursor = ok(app_client.get("/api/v1/feed", headers=dispatcher))["cursor"]

    new = opened(report("fallen_tree", VILLE_MARIE))
    merged = report("flooding", along(PLATEAU, 40.0))
    assert merged.json()["merged"] is True
    url = f"/api/v1/incidents/{closing}"
    assert app_client.patch(url, json={"status": "cancelled"}, headers=dispatcher).is_success

    body = ok(app_client.get(f"/api/v1/feed?after={cursor}", headers=dispatcher))

    assert body["snapshot"] is False and body["more"] is False
    assert [(e["incident_id"], e["kind"]) for e in body["events"]] == [
        (new, "opened"),
        (kept, "report_merged"),
        (closing, "status_changed"),
    ]
    assert body["events"][2]["data"]["to"] == "cancelled"
    assert body["events"][0]["at"] == clock.now().isoformat()
    assert body["cursor"] == body["events"][-1]["id"]
    assert body["gaps"] == []
    state = {f["id"]: f["properties"] for f in body["incidents"]["features"]}
    assert sorted(state) == sorted([kept, closing, new])
    assert state[kept]["report_count"] == 2
    assert state[closing]["status"] == "cancelled"

    again = ok(app_client.get(f"/api/v1/feed?after={body['cursor']}", headers=dispatcher))
    assert again["events"] == [] and again["incidents"]["features"] == []
    assert again["cursor"] == body["cursor"]


def test_a_full_page_says_more_and_stops_the_cursor_there(
    app_client: TestClient, report: Report, dispatcher: Headers
) -> None:
    cursor = ok(app_client.get("/api/v1/feed", headers=dispatcher))["cursor"]
    ids = [opened(report("pothole", where)) for where in (PLATEAU, OUTREMONT, VILLE_MARIE)]

    page = ok(app_client.get(f"/api/v1/feed?after={cursor}&limit=2", headers=dispatcher))
    rest = ok(app_client.get(f"/api/v1/feed?after={page['cursor']}&limit=2", headers=dispatcher))

    assert page["more"] is True and feature_ids(page["incidents"]) == ids[:2]
    assert rest["more"] is False and feature_ids(rest["incidents"]) == ids[2:]


def test_ids_missing_below_the_cursor_are_listed_and_sent_once_committed(
    app_client: TestClient,
    report: Report,
    dispatcher: Headers,
    sessions: sessionmaker[Session],
    clock: ManualClock,
) -> None:
    incident = opened(report("flooding", PLATEAU))
    cursor = ok(app_client.get("/api/v1/feed", headers=dispatcher))["cursor"]

    def add_event(event_id: int) -> None:
        # As a writer whose sequence id was taken earlier but whose commit lands later.
        with unit_of_work(sessions) as session:
            session.add(
                IncidentEvent(
                    id=event_id,
                    incident_id=incident,
                    at=clock.now(),
                    actor="test",
                    kind="note",
                    data={},
                )
            )

    add_event(cursor + 3)
    first = ok(app_client.get(f"/api/v1/feed?after={cursor}", headers=dispatcher))
    assert [e["id"] for e in first["events"]] == [cursor + 3]
    assert first["gaps"] == [cursor + 1, cursor + 2]

    add_event(cursor + 1)
    gaps = ",".join(str(g) for g in first["gaps"])
    second = ok(
        app_client.get(f"/api/v1/feed?after={first['cursor']}&gaps={gaps}", headers=dispatcher)
    )
    assert [e["id"] for e in second["events"]] == [cursor + 1]
    assert second["cursor"] == cursor + 3
    assert feature_ids(second["incidents"]) == [incident]


def test_crews_come_where_last_seen_marked_stale_and_only_when_they_changed(
    app_client: TestClient,
    auth: Callable[..., Headers],
    dispatcher: Headers,
    clock: ManualClock,
) -> None:
    crew_key = auth(Role.CREW)
    snapshot = ok(app_client.get("/api/v1/feed", headers=dispatcher))
    crews = {f["id"]: f for f in snapshot["crews"]["features"]}
    roster = {c["id"]: c for c in ok(app_client.get("/api/v1/crews", headers=dispatcher))}
    assert sorted(crews) == sorted(roster)
    # No fix yet: drawn at the depot, stale.
    assert all(f["properties"]["stale"] is True for f in crews.values())
    assert all(f["properties"]["position_at"] is None for f in crews.values())
    cursor, version = snapshot["cursor"], snapshot["crews_version"]
    query = f"/api/v1/feed?after={cursor}&crews={version}"
    assert ok(app_client.get(query, headers=dispatcher))["crews"] is None

    me = min(crews)
    fix = {"lon": PLATEAU[0], "lat": PLATEAU[1], "fix_at": clock.now().isoformat()}
    posted = app_client.post(
        f"/api/v1/crews/{me}/positions", json={"fixes": [fix]}, headers=crew_key
    )
    assert posted.status_code == 200, posted.text

    moved = ok(app_client.get(query, headers=dispatcher))
    assert moved["crews_version"] != version
    mine = next(f for f in moved["crews"]["features"] if f["id"] == me)
    assert mine["geometry"]["coordinates"] == [PLATEAU[0], PLATEAU[1]]
    assert mine["properties"]["stale"] is False
    assert mine["properties"]["status"] == roster[me]["status"]
    assert mine["properties"]["name"] == roster[me]["name"]

    # Time passes with no new fix: the position turns stale, and the change is sent.
    clock.advance(timedelta(hours=1))
    later = ok(
        app_client.get(
            f"/api/v1/feed?after={cursor}&crews={moved['crews_version']}", headers=dispatcher
        )
    )
    assert next(f for f in later["crews"]["features"] if f["id"] == me)["properties"]["stale"]


def test_an_assigned_incident_shows_its_crew_and_eta_and_the_crew_its_incident(
    app_client: TestClient, report: Report, dispatcher: Headers
) -> None:
    incident = opened(report("pothole", PLATEAU))
    roster = ok(app_client.get("/api/v1/crews", headers=dispatcher))
    crew = next(c for c in roster if "roads" in c["skills"])
    cursor = ok(app_client.get("/api/v1/feed", headers=dispatcher))["cursor"]

    assigned = app_client.post(
        f"/api/v1/incidents/{incident}/assign", json={"crew_id": crew["id"]}, headers=dispatcher
    )
    assert assigned.status_code == 201, assigned.text

    body = ok(app_client.get(f"/api/v1/feed?after={cursor}", headers=dispatcher))
    assert "assigned" in [e["kind"] for e in body["events"]]
    [feature] = body["incidents"]["features"]
    assert feature["properties"]["crew"] == {"id": crew["id"], "name": crew["name"]}
    assert feature["properties"]["eta_at"] > assigned.json()["assigned_at"][:19]
    crew_feature = next(f for f in body["crews"]["features"] if f["id"] == crew["id"])
    assert crew_feature["properties"]["incident_id"] == incident
    snapshot = ok(app_client.get("/api/v1/feed", headers=dispatcher))
    again = next(f for f in snapshot["incidents"]["features"] if f["id"] == incident)
    assert again["properties"]["crew"]["name"] == crew["name"]


def test_declared_emergencies_not_ended_come_with_their_areas(
    app_client: TestClient,
    dispatcher: Headers,
    sessions: sessionmaker[Session],
    clock: ManualClock,
) -> None:
    square = (
        "MULTIPOLYGON(((-73.88 45.47, -73.83 45.47, -73.83 45.50, -73.88 45.50, -73.88 45.47)))"
    )
    with unit_of_work(sessions) as session:
        for name, ended_at in (("Crue Pierrefonds", None), ("Old storm", clock.now())):
            session.add(
                Emergency(
                    name=name,
                    hazard="flood",
                    area=f"SRID=4326;{square}",
                    min_lon=-73.88,
                    min_lat=45.47,
                    max_lon=-73.83,
                    max_lat=45.50,
                    service_codes=["flooding"],
                    deadline_factor=0.5,
                    batch_every_s=0,
                    declared_at=clock.now(),
                    declared_by="manager:test",
                    ended_at=ended_at,
                )
            )
    body = ok(app_client.get("/api/v1/feed", headers=dispatcher))
    [area] = body["emergencies"]["features"]
    assert area["properties"] == {
        "name": "Crue Pierrefonds",
        "hazard": "flood",
        "declared_at": clock.now().isoformat(),
    }
    assert area["geometry"]["type"] == "MultiPolygon"
    query = f"/api/v1/feed?after={body['cursor']}&emergencies={body['emergencies_version']}"
    assert ok(app_client.get(query, headers=dispatcher))["emergencies"] is None


@pytest.mark.parametrize(
    ("query", "field"),
    [("after=-1", "after"), ("after=0&gaps=x", "gaps"), ("after=0&limit=0", "limit")],
)
def test_invalid_feed_parameters_are_refused_naming_them(
    app_client: TestClient, dispatcher: Headers, problem: Problem, query: str, field: str
) -> None:
    body = problem(app_client.get(f"/api/v1/feed?{query}", headers=dispatcher), 422)
    assert body["errors"][0]["field"] == field


@pytest.mark.parametrize(
    "path", ["/api/v1/feed", "/api/v1/hotspots.geojson", "/api/v1/heat.geojson"]
)
def test_map_data_is_for_staff_only(
    app_client: TestClient, auth: Callable[..., Headers], problem: Problem, path: str
) -> None:
    assert app_client.get(path).status_code == 401
    problem(app_client.get(path, headers=auth(Role.PUBLIC)), 403)
    assert app_client.get(path, headers=auth(Role.MANAGER)).status_code == 200


# --- hot spots and heat ---------------------------------------------------------------------


def test_potholes_along_one_street_make_one_hot_spot_and_a_lone_one_none(
    app_client: TestClient, report: Report, dispatcher: Headers
) -> None:
    street = [opened(report("pothole", along(PLATEAU, 40.0 * i))) for i in range(6)]
    opened(report("pothole", VILLE_MARIE))

    body = app_client.get("/api/v1/hotspots.geojson", headers=dispatcher)

    assert body.headers["content-type"] == "application/geo+json"
    collection = ok(body)
    assert collection["parameters"]["incidents"] == 7
    assert collection["parameters"]["core_reports"] == 5
    [spot] = collection["features"]
    props = spot["properties"]
    assert spot["id"] == props["hotspot_id"] == street[0]
    assert props["member_count"] == 6 and props["report_count"] == 6
    assert props["dominant_group"] == "roads" and props["groups"] == {"roads": 6}
    assert props["incident_ids"] == street
    assert spot["geometry"]["type"] == "Polygon"
    assert props["first_report_at"] <= props["last_report_at"]
    min_lon, min_lat, max_lon, max_lat = props["bbox"]
    assert min_lon == pytest.approx(PLATEAU[0]) and min_lat == pytest.approx(PLATEAU[1])
    assert max_lon > min_lon and max_lat > min_lat


def test_reports_merged_into_one_incident_weigh_as_reports(
    app_client: TestClient, report: Report, dispatcher: Headers
) -> None:
    for i in range(5):
        assert report("flooding", along(PLATEAU, 10.0 * i)).status_code == 201

    [spot] = ok(app_client.get("/api/v1/hotspots.geojson", headers=dispatcher))["features"]

    assert spot["properties"]["member_count"] == 1
    assert spot["properties"]["report_count"] == 5


def test_hot_spots_follow_filters_and_options_and_are_recomputed_on_change(
    app_client: TestClient, report: Report, dispatcher: Headers
) -> None:
    for i in range(6):
        opened(report("pothole", along(PLATEAU, 40.0 * i)))

    def spots(query: str = "") -> list[dict[str, Any]]:
        return ok(app_client.get(f"/api/v1/hotspots.geojson?{query}", headers=dispatcher))[
            "features"
        ]

    assert len(spots("group=roads")) == 1
    assert spots("group=water") == []
    assert spots("service=flooding") == []
    assert spots("min_reports=7") == []
    assert spots("radius_m=30") == []
    assert len(spots("window_h=2")) == 1
    assert spots("bbox=-73.60,45.50,-73.59,45.51") == []
    # A seventh pothole on the same street joins the hot spot on the next request.
    opened(report("pothole", along(PLATEAU, 240.0)))
    assert spots()[0]["properties"]["member_count"] == 7


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=resolved", "status"),
        ("status=open,nonsense", "status"),
        ("district=one", "district"),
        ("bbox=1,2,3", "bbox"),
        ("radius_m=0", "radius_m"),
        ("min_reports=0", "min_reports"),
        ("window_h=-1", "window_h"),
    ],
)
def test_invalid_hot_spot_parameters_are_refused_naming_them(
    app_client: TestClient, dispatcher: Headers, problem: Problem, query: str, field: str
) -> None:
    response = app_client.get(f"/api/v1/hotspots.geojson?{query}", headers=dispatcher)
    assert problem(response, 422)["errors"][0]["field"] == field


def test_heat_counts_incidents_and_reports_per_cell(
    app_client: TestClient, report: Report, dispatcher: Headers
) -> None:
    report("flooding", PLATEAU)
    report("flooding", along(PLATEAU, 20.0))  # merged: one incident, two reports
    report("pothole", along(PLATEAU, 30.0))
    report("pothole", VILLE_MARIE)

    body = ok(app_client.get("/api/v1/heat.geojson?cell_m=1000", headers=dispatcher))

    assert body["parameters"] == {"cell_m": 1000}
    cells = sorted(
        (f["properties"]["incident_count"], f["properties"]["report_count"])
        for f in body["features"]
    )
    assert cells == [(1, 1), (2, 3)]
    assert all(f["geometry"]["type"] == "Point" for f in body["features"])


def test_a_large_answer_is_gzipped_for_a_client_that_accepts_it(
    app_client: TestClient, report: Report, dispatcher: Headers
) -> None:
    ids = {
        opened(report("pothole", along(PLATEAU, 30.0 * (i % 50 + 1), azimuth=120.0 * (i // 50))))
        for i in range(150)
    }

    zipped = app_client.get("/api/v1/feed", headers={**dispatcher, "Accept-Encoding": "gzip"})
    plain = app_client.get("/api/v1/feed", headers={**dispatcher, "Accept-Encoding": "identity"})

    assert zipped.headers.get("content-encoding") == "gzip"
    assert "content-encoding" not in plain.headers
    assert zipped.json() == plain.json()
    assert set(feature_ids(plain.json()["incidents"])) == ids


# --- the page and its files -----------------------------------------------------------------


def test_the_map_page_is_public_and_loads_only_from_this_server(app_client: TestClient) -> None:
    page = app_client.get("/map")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "connect-src 'self'" in csp
    html = page.text
    assert "<title>FieldOps — carte des opérations</title>" in html
    assert re.findall(r"https?://", html) == []
    sources = re.findall(r'<(?:script src|link rel="stylesheet" href)="([^"]+)"', html)
    assert len(sources) == 7
    for source in sources:
        assert source.startswith("/static/")
        asset = app_client.get(source)
        assert asset.status_code == 200, source
        kind = "javascript" if source.split("?")[0].endswith(".js") else "css"
        assert kind in asset.headers["content-type"]
        assert "max-age" in asset.headers["cache-control"]
    assert '"feed": "/api/v1/feed"'.replace(" ", "") in html.replace(" ", "")


def test_the_map_page_opens_in_english_on_request(app_client: TestClient, problem: Problem) -> None:
    assert "<title>FieldOps — operations map</title>" in app_client.get("/map?lang=en").text
    assert problem(app_client.get("/map?lang=de"), 422)["errors"][0]["field"] == "lang"


@pytest.mark.parametrize(
    "path",
    [
        "/static/vendor/leaflet/../package.json",
        "/static/vendor/leaflet/%2e%2e/package.json",
        "/static/vendor/leaflet/.hidden",
        "/static/vendor/left-pad/index.js",
        "/static/vendor/leaflet/nothing.js",
        "/static/fieldops/../api.py",
        "/static/fieldops/nothing.js",
    ],
)
def test_only_the_listed_files_are_served(app_client: TestClient, path: str) -> None:
    assert app_client.get(path).status_code == 404
