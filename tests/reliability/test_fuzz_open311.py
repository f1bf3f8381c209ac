"""Open311 GeoReport v2 fuzzed with Hypothesis strategies of its own.

The OpenAPI document cannot describe these routes' inputs (a form read field by field, and
query filters read by name), so Schemathesis only reaches their paths. Here every example
is a form or a query a citizen app could send, good or bad, through the real app on both
backends. Every answer must be a GeoReport document or error list in the asked format,
never a server error; an accepted report must read back exactly as sent, in JSON and in
XML; a refused one must leave every row accepted before exactly as it was.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from fuzz_support import FUZZ_EXAMPLES, FUZZ_PHASES, RELIABILITY, GeoReport, Headers
from hypothesis import given, settings
from hypothesis import strategies as st

from fieldops.auth.models import Role

BASE = "/open311/v2"
SERVICES = ["pothole", "flooding", "wildlife", "graffiti", "rats", "sewer_backup"]
# Whatever text a client may send in a form (no lone surrogates: they cannot be UTF-8).
ANY_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=60)
COORDINATE = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", " ", "nan", "inf", "-inf", "1e999", "45,5", "0x10", "٤٥"]),
    ANY_TEXT,
)
# Points around the island: most inside a district, some in the river or beyond.
NEAR_MONTREAL = st.tuples(
    st.floats(min_value=-73.95, max_value=-73.47), st.floats(min_value=45.40, max_value=45.71)
)
INJECTION = st.sampled_from(
    [
        "'; DROP TABLE reports; --",
        "<script>alert(1)</script>",
        "]]><x/><![CDATA[",
        "&amp; &lt;b&gt; & <b>",
        "Raccoon\nsecond line\ttab",
    ]
)
FIELDS = ["email", "first_name", "last_name", "phone", "device_id", "account_id", "media_url"]


@st.composite
def forms(draw: st.DrawFn, keys: dict[str, str]) -> dict[str, str]:
    form: dict[str, str] = {}
    key = draw(st.sampled_from([*keys, "", "fo_not-a-key", None]))
    if key is not None:
        form["api_key"] = keys.get(key, key)
    code = draw(st.one_of(st.sampled_from(SERVICES), ANY_TEXT))
    if code or draw(st.booleans()):
        form["service_code"] = code
    if draw(st.booleans()):
        lon, lat = draw(NEAR_MONTREAL)
        form["long"], form["lat"] = repr(lon), repr(lat)
    else:
        for name in draw(st.lists(st.sampled_from(["lat", "long"]), unique=True)):
            form[name] = draw(COORDINATE)
    description = draw(
        st.one_of(ANY_TEXT, INJECTION, st.integers(3990, 4010).map(lambda n: "é" * n))
    )
    form["description"] = description
    for name in draw(st.lists(st.sampled_from(FIELDS), unique=True, max_size=3)):
        form[name] = draw(st.one_of(ANY_TEXT, INJECTION))
    if draw(st.booleans()):
        form["attribute[animal]"] = draw(
            st.one_of(st.sampled_from(["raccoon", "fox", "skunk"]), ANY_TEXT)
        )
    extra = draw(st.dictionaries(ANY_TEXT.filter(lambda k: k not in form), ANY_TEXT, max_size=2))
    return {**form, **extra}


def _parsed(fmt: str, content: bytes) -> Any:
    if fmt == "json":
        return json.loads(content)
    root = ET.fromstring(content)
    return root


def _descriptions(fmt: str, body: Any) -> list[str]:
    if fmt == "json":
        return [str(e["description"]) for e in body]
    return [e.findtext("description") or "" for e in body.iter("error")]


def test_posting_any_form_answers_a_georeport_document_and_keeps_what_was_accepted(
    georeport: GeoReport,
    lenient_client: TestClient,
    role_headers: dict[Role, Headers],
    accepted: Callable[[], dict[str, list[tuple[Any, ...]]]],
) -> None:
    keys = {
        role.value: h["Authorization"].removeprefix("Bearer ") for role, h in role_headers.items()
    }
    outcomes: dict[int, int] = {}

    @settings(RELIABILITY, max_examples=FUZZ_EXAMPLES * 8, phases=FUZZ_PHASES)
    @given(form=forms(keys), fmt=st.sampled_from(["json", "xml"]))
    def post(form: dict[str, str], fmt: str) -> None:
        before = accepted()
        response = lenient_client.post(f"{BASE}/requests.{fmt}", data=form)
        after = accepted()
        outcomes[response.status_code] = outcomes.get(response.status_code, 0) + 1

        assert response.status_code in {201, 400, 403, 404, 429}, response.text
        expected_type = "application/json" if fmt == "json" else "text/xml"
        assert response.headers["content-type"].startswith(expected_type)
        body = _parsed(fmt, response.content)
        if response.status_code != 201:
            assert after == before, "a refused request changed or added rows"
            assert _descriptions(fmt, body), "an error list names no error"
            return
        # Accepted: one new report, every earlier row untouched.
        assert after["reports"][: len(before["reports"])] == before["reports"]
        assert len(after["reports"]) == len(before["reports"]) + 1
        request_id = (
            body[0]["service_request_id"]
            if fmt == "json"
            else body.findtext("request/service_request_id")
        )
        sent = form["description"].strip()
        (read,) = georeport.get(f"requests/{request_id}").json()
        assert (read["description"] or "") == sent
        xml_root = ET.fromstring(georeport.get(f"requests/{request_id}", "xml").content)
        # XML parsers read every line ending as a line feed.
        as_xml = sent.replace("\r\n", "\n").replace("\r", "\n")
        assert (xml_root.findtext("request/description") or "") == as_xml

    post()
    # The strategy reaches both sides: some reports are accepted, some refused.
    assert outcomes.get(201, 0) > 0 and sum(n for s, n in outcomes.items() if s != 201) > 0, (
        outcomes
    )


QUERY_NAMES = [
    "service_request_id",
    "service_code",
    "start_date",
    "end_date",
    "status",
    "page",
    "page_size",
    "updated_after",
    "updated_before",
    "lat",
    "long",
    "radius",
    "extensions",
    "jurisdiction_id",
]
QUERY_VALUE = st.one_of(
    ANY_TEXT,
    st.integers(-(2**70), 2**70).map(str),
    st.floats().map(repr),
    st.datetimes().map(lambda d: d.isoformat()),
    st.sampled_from(["open", "closed", "open,closed", "true", "2026-05-04T10:00:00-04:00", "1,2"]),
    st.just("9" * 5000),
)

# What may stand for an id in a request's path: printable, no separators.
REQUEST_ID = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="/?#%\\")),
    st.just("9" * 5000),
)


def test_any_query_on_the_request_list_answers_a_document_or_an_error_list(
    georeport: GeoReport,
    lenient_client: TestClient,
    accepted: Callable[[], dict[str, list[tuple[Any, ...]]]],
) -> None:
    georeport.create("pothole", (-73.5800, 45.5230), {"description": "seed"})
    before = accepted()

    @settings(RELIABILITY, max_examples=FUZZ_EXAMPLES * 8, phases=FUZZ_PHASES)
    @given(
        query=st.dictionaries(st.sampled_from(QUERY_NAMES), QUERY_VALUE, max_size=4),
        fmt=st.sampled_from(["json", "xml"]),
        one=st.one_of(st.none(), REQUEST_ID),
    )
    def get(query: dict[str, str], fmt: str, one: str | None) -> None:
        path = f"{BASE}/requests.{fmt}" if one is None else f"{BASE}/requests/{one}.{fmt}"
        response = lenient_client.get(path, params=query)
        assert response.status_code in {200, 400, 404}, response.text
        body = _parsed(fmt, response.content)
        if response.status_code >= 400:
            assert _descriptions(fmt, body)
        elif fmt == "json":
            assert isinstance(body, list)
            assert all(math.isfinite(r["lat"]) and math.isfinite(r["long"]) for r in body)
        else:
            assert body.tag == "service_requests"

    get()
    assert accepted() == before
