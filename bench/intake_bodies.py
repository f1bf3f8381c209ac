"""The reports the intake benchmark sends: random points inside Montréal's districts over
eight services, a share repeating an earlier report's place (those merge), as dispatcher
JSON bodies or as Open311 forms."""

from __future__ import annotations

import math
from urllib.parse import urlencode

import numpy as np
import orjson

from bench.loadgen import Request
from fieldops.intake.context import IntakeContext

MONTREAL_BBOX = (-73.9966, 45.3854, -73.4739, 45.7076)
# Share of reports that repeat an earlier report's place and service (several people
# reporting the same pothole), a few metres apart, so intake merges them.
REPEAT_SHARE = 0.3
REPEAT_JITTER_M = 8.0
SERVICE_MIX = {
    "pothole": 0.30,
    "rats": 0.12,
    "fallen_tree": 0.15,
    "snow_ice": 0.15,
    "flooding": 0.10,
    "traffic_signal_out": 0.10,
    "dead_animal": 0.04,
    "wildlife": 0.04,
}
DESCRIPTIONS = {
    "pothole": ["Nid-de-poule profond dans la voie de droite", "Pothole near the crosswalk"],
    "rats": ["Rats près des bacs dans la ruelle", "Rats seen around the park bins"],
    "fallen_tree": ["Branche tombée sur le trottoir", "Tree down across the lane"],
    "snow_ice": ["Trottoir glacé, non déneigé", "Snow bank blocking the bus stop"],
    "flooding": ["Eau accumulée sous le viaduc", "Water over the road after the storm"],
    "traffic_signal_out": ["Feu clignotant à l'intersection", "Signal dark at the corner"],
    "dead_animal": ["Animal mort sur la chaussée", "Dead raccoon on the sidewalk"],
    "wildlife": ["Mouffette dans la cour d'école", "Raccoon in the garage"],
}
STREETS = [
    "rue Saint-Denis", "boulevard Saint-Laurent", "rue Sherbrooke Est", "avenue du Parc",
    "rue Ontario Est", "rue Wellington", "boulevard Décarie", "rue Jean-Talon Ouest",
    "avenue Papineau", "rue Notre-Dame Ouest", "boulevard Gouin Est", "rue Beaubien Est",
]  # fmt: skip


def report_bodies(
    context: IntakeContext, n: int, *, seed: int = 311, repeat_within: int | None = None
) -> list[bytes]:
    """``n`` JSON bodies: points inside Montréal's districts, several services, and a share
    repeating an earlier report's place and service a few metres away (those merge).

    A repeat takes any earlier report, or with ``repeat_within`` one of the last that many:
    then a run that sends a slice of the bodies into an empty database merges about as many
    as one that sends them from the start."""
    rng = np.random.default_rng(seed)
    min_lon, min_lat, max_lon, max_lat = MONTREAL_BBOX
    lon = np.empty(0)
    lat = np.empty(0)
    while lon.size < n:
        cand_lon = np.round(rng.uniform(min_lon, max_lon, 2 * n), 6)
        cand_lat = np.round(rng.uniform(min_lat, max_lat, 2 * n), 6)
        inside = context.districts.locate_many(cand_lon, cand_lat) >= 0
        lon = np.concatenate([lon, cand_lon[inside]])
        lat = np.concatenate([lat, cand_lat[inside]])
    xs, ys = lon[:n].tolist(), lat[:n].tolist()
    codes = list(SERVICE_MIX)
    code_of = rng.choice(len(codes), size=n, p=np.array(list(SERVICE_MIX.values()))).tolist()
    repeat = (rng.random(n) < REPEAT_SHARE).tolist()
    positions = np.arange(n)
    oldest = 0 if repeat_within is None else np.maximum(positions - repeat_within, 0)
    earlier = rng.integers(oldest, np.maximum(positions, 1)).tolist()
    jitter = (rng.uniform(-1, 1, (n, 2)) * REPEAT_JITTER_M / math.sqrt(2)).tolist()
    metres_per_deg_lat = 111_320.0
    metres_per_deg_lon = metres_per_deg_lat * math.cos(math.radians(45.5))
    bodies: list[bytes] = []
    for i in range(n):
        if repeat[i] and i > 0:
            # Repeat an earlier report's place and service, a few metres away.
            j = earlier[i]
            x = round(xs[j] + jitter[i][0] / metres_per_deg_lon, 6)
            y = round(ys[j] + jitter[i][1] / metres_per_deg_lat, 6)
            if context.districts.locate(x, y) is not None:
                xs[i], ys[i], code_of[i] = x, y, code_of[j]
        code = codes[code_of[i]]
        texts = DESCRIPTIONS[code]
        body = {
            "service_code": code,
            "lat": ys[i],
            "lon": xs[i],
            "description": texts[int(rng.integers(len(texts)))],
            "address": f"{int(rng.integers(1, 9999))} {STREETS[int(rng.integers(len(STREETS)))]}",
        }
        bodies.append(orjson.dumps(body))
    return bodies


# Answers to a service's required questions (Open311 attributes), as a citizen app sends them.
OPEN311_ATTRIBUTES = {
    "wildlife": {"attribute[animal]": "raccoon"},
    "traffic_signal_out": {"attribute[signal_state]": "dark"},
}


def open311_requests(bodies: list[bytes], secret: str) -> list[Request]:
    """The same reports as Open311 POSTs, form-encoded as the spec says, half to
    requests.xml and half to requests.json."""
    requests = []
    for n, body in enumerate(bodies):
        report = orjson.loads(body)
        form = {
            "api_key": secret,
            "service_code": report["service_code"],
            "lat": repr(report["lat"]),
            "long": repr(report["lon"]),
            "description": report["description"],
            "address_string": report["address"],
            **OPEN311_ATTRIBUTES.get(report["service_code"], {}),
        }
        path = "/open311/v2/requests." + ("xml" if n % 2 else "json")
        requests.append(
            Request(
                "POST",
                path,
                urlencode(form).encode(),
                {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
            )
        )
    return requests
