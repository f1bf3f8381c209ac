"""What the public never sees through Open311, on SpatiaLite and PostGIS: the reporter's
contact details in any GET, and the exact place of a coarsened (dwelling) service."""

from __future__ import annotations

from georeport_doc import GEOD, PLATEAU, GeoReport, json_doc, xml_doc

CONTACT = {
    "first_name": "Zéphyrine",
    "last_name": "Quaglieri-Beauchesne",
    "email": "zq.9931@courriel.example",
    "phone": "+1 514-555-0199",
}
# A dwelling on the Plateau: the exact door, and the block the public may see.
DOOR = (-73.58123, 45.52367)
BLOCK = (-73.581, 45.524)
ADDRESS = "4321 rue Saint-Denis, app. 5"


def public_bodies(georeport: GeoReport, request_id: str) -> dict[str, str]:
    """Every public GET that shows the request, in both formats, with and without extensions."""
    bodies = {}
    for fmt in ("json", "xml"):
        for extensions in ("", "true"):
            for path in ("requests", f"requests/{request_id}"):
                response = georeport.get(path, fmt, extensions=extensions)
                if fmt == "json":
                    assert [r["service_request_id"] for r in json_doc(response)] == [request_id]
                else:
                    root = xml_doc(response)
                    assert [r.findtext("service_request_id") for r in root] == [request_id]
                bodies[f"{path}.{fmt}?extensions={extensions}"] = response.text
    assert len(bodies) == 8
    return bodies


def test_reporter_contact_details_appear_in_no_public_get(georeport: GeoReport) -> None:
    request_id = georeport.create(
        "wildlife",
        PLATEAU,
        {"attribute[animal]": "skunk", "description": "Skunk under the deck"} | CONTACT,
    )

    leaks = {
        (where, value)
        for where, text in public_bodies(georeport, request_id).items()
        for value in (*CONTACT.values(), "555-0199", "zq.9931", "Quaglieri")
        if value.lower() in text.lower()
    }

    assert leaks == set()
    # They were stored (staff see them), so their absence above is the filter at work.
    incident = georeport.incident_of(request_id)
    staff = georeport.client.get(f"/api/v1/incidents/{incident}", headers=georeport.dispatcher)
    assert staff.status_code == 200, staff.text
    (report,) = staff.json()["reports"]
    assert {
        "first_name": report["reporter_first_name"],
        "last_name": report["reporter_last_name"],
        "email": report["reporter_email"],
        "phone": report["reporter_phone"],
    } == CONTACT


def test_a_coarsened_service_publishes_3_decimals_and_no_address(georeport: GeoReport) -> None:
    request_id = georeport.create(
        "vermin_housing",
        DOOR,
        {"address_string": ADDRESS, "address_id": "UEF-88812", "description": "Bedbugs"},
    )

    request = georeport.one(request_id, extensions="true")
    assert (request["lat"], request["long"]) == (45.524, -73.581)
    assert (request["address"], request["address_id"], request["zipcode"]) == (None, None, None)
    root = xml_doc(georeport.get(f"requests/{request_id}", "xml"))
    assert (root.findtext("request/lat"), root.findtext("request/long")) == ("45.524", "-73.581")
    address = root.find("request/address")
    assert address is not None and address.text is None
    for where, text in public_bodies(georeport, request_id).items():
        for secret in ("45.52367", "73.58123", "Saint-Denis", "UEF-88812"):
            assert secret not in text, (where, secret)


def test_an_ordinary_service_publishes_the_exact_place(georeport: GeoReport) -> None:
    # The contrast to the test above: only coarsened services are rounded.
    request_id = georeport.create("pothole", DOOR, {"address_string": ADDRESS})

    request = georeport.one(request_id)
    assert (request["lat"], request["long"]) == (45.52367, -73.58123)
    assert request["address"] == ADDRESS


def test_a_radius_search_cannot_locate_a_coarsened_request_more_precisely(
    georeport: GeoReport,
) -> None:
    request_id = georeport.create("vermin_housing", DOOR)
    # The door is about 40 m from the published block position.
    distance_m = GEOD.inv(DOOR[0], DOOR[1], BLOCK[0], BLOCK[1])[2]
    assert 35 < distance_m < 45

    at_door = georeport.ids(lat=str(DOOR[1]), long=str(DOOR[0]), radius="5")
    at_block = georeport.ids(lat=str(BLOCK[1]), long=str(BLOCK[0]), radius="5")

    assert (at_door, at_block) == ([], [request_id])
