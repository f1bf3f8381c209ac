"""The mixed load of the reliability benchmark: the city it runs on (keys, incidents to
read), its requests (every write unique and tagged), the ledger of what the server
acknowledged, and the audit of what the database holds afterwards."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import numpy as np
import orjson
import sqlalchemy as sa

from bench.intake_api import open311_requests, report_bodies
from bench.loadgen import Request, weighted_mix
from fieldops.auth.models import Role
from fieldops.auth.service import create_key
from fieldops.city import load_city
from fieldops.clock import SystemClock
from fieldops.crews.models import CrewPosition
from fieldops.crews.repo import list_crews
from fieldops.db.engine import make_engine, make_sessionmaker, unit_of_work
from fieldops.db.migrate import upgrade
from fieldops.escalation.models import EscalationStep, StepStatus
from fieldops.incidents.models import Channel, IncidentEvent, Report
from fieldops.intake.context import IntakeContext
from fieldops.intake.schemas import NewReport
from fieldops.intake.service import submit_report

ROOT = Path(__file__).resolve().parents[1]
# Kind -> share of requests. Layers are heavy and a map loads them once, so they are rare.
MIX = {
    "Open311 POST (form, public key)": 0.25,
    "dispatcher POST /incidents": 0.10,
    "crew position ping": 0.25,
    "dispatcher GET incidents (list, detail)": 0.12,
    "map feed poll (/api/v1/feed)": 0.23,
    "map layers (GeoJSON)": 0.05,
}
OPEN311, INCIDENT, PING, DISPATCH_READ, FEED, LAYERS = MIX
WRITES = (OPEN311, INCIDENT, PING)
# Share of dispatcher reports made as life-safety calls 35 minutes old: their escalation
# steps are due at once, so the scheduler fires steps and queues notifications all along.
OVERDUE_SHARE = 0.1
PRECREATED = 300
TAG = re.compile(rb"(?:#|%23)r(\d{7})")
XML_ID = re.compile(rb"<service_request_id>(\d+)</service_request_id>")
CURSOR = re.compile(rb'"cursor":(\d+)')
# Dispatchers' live maps following the change feed, each from its own cursor.
MAP_CLIENTS = 20

# --- the city and its keys -----------------------------------------------------------------


@dataclass(frozen=True)
class City:
    public: str
    dispatcher: str
    crews: dict[int, str]  # crew id -> its key
    incident_ids: list[int]
    cursor: int  # the newest event before the run
    context: IntakeContext


def prepare(url: str) -> City:
    """Migrate, load the city, make the keys and a few hundred incidents to read."""
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    now = SystemClock().now()
    try:
        upgrade(engine)
        with unit_of_work(sessions) as session:
            load_city(session, ROOT / "layers", now=now)
            _k, public = create_key(session, name="citizen app", role=Role.PUBLIC, now=now)
            _k, dispatcher = create_key(session, name="desk", role=Role.DISPATCHER, now=now)
            crews = {
                c.id: create_key(session, name=c.name, role=Role.CREW, now=now, crew_id=c.id)[1]
                for c in list_crews(session)
            }
        with sessions() as session:
            context = IntakeContext.load(session)
        ids = set()
        with unit_of_work(sessions) as session:
            for body in report_bodies(context, PRECREATED, seed=5):
                doc = orjson.loads(body)
                new = NewReport(doc["service_code"], doc["lon"], doc["lat"], Channel.DISPATCHER)
                ids.add(
                    submit_report(session, new, context=context, actor="bench", now=now).incident.id
                )
        with engine.connect() as conn:
            cursor = int(conn.scalar(sa.select(sa.func.max(IncidentEvent.id))) or 0)
    finally:
        engine.dispose()
    return City(public, dispatcher, crews, sorted(ids), cursor, context)


# --- requests ------------------------------------------------------------------------------


def _tagged(bodies: list[bytes], first: int) -> list[bytes]:
    """The bodies with a unique tag at the end of each description (#r0000001...)."""
    out = []
    for n, body in enumerate(bodies, start=first):
        doc = orjson.loads(body)
        doc["description"] = f"{doc['description']} #r{n:07d}"
        out.append(orjson.dumps(doc))
    return out


@dataclass
class Maps:
    """Live maps following the change feed, each polling from the cursor of its last
    answer as /map does: a poll brings what changed since that map's previous poll."""

    cursors: list[int]

    @classmethod
    def starting_at(cls, cursor: int) -> Maps:
        return cls([cursor] * MAP_CLIENTS)

    def polls(self, headers: dict[str, str]) -> list[Request]:
        """One poll per map; its path (with the map's cursor) is made when it is sent."""
        return [
            Request(
                "GET", f"/api/v1/feed?map={k}", b"", headers, path_at_send=partial(self.path, k)
            )
            for k in range(len(self.cursors))
        ]

    def path(self, k: int) -> str:
        return f"/api/v1/feed?after={self.cursors[k]}&limit=500"

    def answered(self, poll: Request, body: bytes) -> None:
        k = int(poll.path.rsplit("=", 1)[1])
        found = CURSOR.search(body)
        if found is not None:
            self.cursors[k] = max(self.cursors[k], int(found.group(1)))


def _reads(city: City, n: int, rng: np.random.Generator, maps: Maps) -> dict[str, list[Request]]:
    staff = {"Authorization": f"Bearer {city.dispatcher}"}
    points = report_bodies(city.context, n, seed=int(rng.integers(1 << 30)))
    boxes = []
    for body in points:
        doc = orjson.loads(body)
        lon, lat = doc["lon"], doc["lat"]
        boxes.append(f"{lon - 0.007:.5f},{lat - 0.0045:.5f},{lon + 0.007:.5f},{lat + 0.0045:.5f}")
    detail = [f"/api/v1/incidents/{i}" for i in rng.choice(city.incident_ids, n).tolist()]
    listing = [f"/api/v1/incidents?status=open&bbox={b}&limit=50" for b in boxes]
    layer = [f"/api/v1/incidents.geojson?status=open&bbox={b}&limit=200" for b in boxes]
    return {
        DISPATCH_READ: [
            Request("GET", listing[i] if i % 2 else detail[i], b"", staff) for i in range(n)
        ],
        FEED: maps.polls(staff),
        LAYERS: [
            Request("GET", "/api/v1/districts.geojson" if i % 10 == 0 else layer[i], b"", staff)
            for i in range(n)
        ],
    }


def mixed_requests(
    city: City, n: int, maps: Maps, *, seed: int, warm_up: bool = False
) -> list[Request]:
    """``n`` requests in the MIX; every write unique (a tag, or a crew's fix time). Those
    of a ``warm_up`` never meet the run's: other tags, fixes a day earlier."""
    rng = np.random.default_rng(seed)
    writes = {k: int(n * MIX[k]) + 1 for k in WRITES}
    tag_base = 2_000_000 if warm_up else 0
    open311 = open311_requests(
        _tagged(report_bodies(city.context, writes[OPEN311], seed=seed), tag_base + 1),
        city.public,
    )
    staff = {"Authorization": f"Bearer {city.dispatcher}", "Content-Type": "application/json"}
    overdue_at = (SystemClock().now() - timedelta(minutes=35)).isoformat()
    incidents = []
    bodies = report_bodies(city.context, writes[INCIDENT], seed=seed + 1)
    for body in _tagged(bodies, tag_base + 5_000_001):
        if rng.random() < OVERDUE_SHARE:
            body = orjson.dumps({**orjson.loads(body), "priority": 1, "requested_at": overdue_at})
        incidents.append(Request("POST", "/api/v1/incidents", body, staff))
    crew_ids = sorted(city.crews)
    headers = {
        c: {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        for c, key in city.crews.items()
    }
    start = SystemClock().now() - timedelta(days=1 if warm_up else 0)
    pings = []
    for i, body in enumerate(report_bodies(city.context, writes[PING], seed=seed + 2)):
        doc = orjson.loads(body)
        crew = crew_ids[i % len(crew_ids)]
        fix = {
            "lon": doc["lon"],
            "lat": doc["lat"],
            "fix_at": (start + timedelta(milliseconds=i)).isoformat(),
        }
        pings.append(
            Request(
                "POST",
                f"/api/v1/crews/{crew}/positions",
                orjson.dumps({"fixes": [fix]}),
                headers[crew],
            )
        )
    reads = _reads(city, 4000, rng, maps)
    streams = {OPEN311: open311, INCIDENT: incidents, PING: pings, **reads}
    return weighted_mix(streams, MIX, n, seed=seed)


def read_requests(city: City, n: int, maps: Maps, *, seed: int) -> list[Request]:
    """The read half of the MIX alone, in the same proportions."""
    reads = {k: w for k, w in MIX.items() if k not in WRITES}
    streams = _reads(city, 4000, np.random.default_rng(seed), maps)
    return weighted_mix(streams, reads, n, seed=seed)


# --- what the server acknowledged ----------------------------------------------------------


@dataclass
class Ledger:
    """Every write answer of a run: tag -> the id it answered (None: not acknowledged)."""

    requests: Sequence[Request]
    maps: Maps  # the feed's answers move their map's cursor
    acknowledged: dict[bytes, int] = field(default_factory=dict)  # report tag -> report id
    pings: Counter[tuple[int, str]] = field(default_factory=Counter)  # acknowledged fixes
    refused: int = 0  # writes answered otherwise, or not at all
    bad_answers: int = 0  # 2xx without a readable id
    by_kind: Counter[str] = field(default_factory=Counter)  # acknowledged writes

    def __call__(self, index: int, status: int | None, body: bytes) -> None:
        request = self.requests[index]
        if request.kind not in WRITES:
            if request.kind == FEED and status == 200:
                self.maps.answered(request, body)
            return
        if status is None or not 200 <= status < 300:
            self.refused += 1
            return
        self.by_kind[request.kind] += 1
        if request.kind == PING:
            doc = orjson.loads(body)
            if doc["stored"] + doc["repeated"] != 1:
                self.bad_answers += 1
            fix = orjson.loads(request.body)["fixes"][0]["fix_at"]
            self.pings[(int(request.path.split("/")[4]), fix)] += 1
            return
        tag = TAG.search(request.body)
        found = XML_ID.search(body) if request.path.endswith(".xml") else None
        try:
            if found is not None:
                answered = int(found.group(1))
            elif request.kind == OPEN311:
                answered = int(orjson.loads(body)[0]["service_request_id"])
            else:
                answered = int(orjson.loads(body)["report_id"])
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError):
            self.bad_answers += 1
            return
        if tag is None or tag.group(1) in self.acknowledged:
            self.bad_answers += 1
            return
        self.acknowledged[tag.group(1)] = answered


@dataclass(frozen=True)
class Audit:
    acknowledged: int
    not_exactly_once: int  # acknowledged, but missing, stored twice or under another id
    stored_twice: int  # any tag (acknowledged or not) stored more than once
    half_written: int
    steps_fired: int
    acted_twice: int  # fired steps without exactly one 'escalated' event
    max_lag_s: float  # due -> fired, for steps fired during the run
    late_at_end: int  # due well before the load ended, not fired by then


HALF_WRITTEN = """
SELECT count(*) FROM incidents i
LEFT JOIN (SELECT incident_id, count(*) AS n FROM reports GROUP BY incident_id) r
  ON r.incident_id = i.id
LEFT JOIN (SELECT incident_id, sum(CASE WHEN kind = 'opened' THEN 1 ELSE 0 END) AS opened,
                  sum(CASE WHEN kind = 'report_merged' THEN 1 ELSE 0 END) AS merged
           FROM incident_events GROUP BY incident_id) e ON e.incident_id = i.id
WHERE coalesce(r.n, 0) != i.report_count OR coalesce(e.opened, 0) != 1
   OR coalesce(e.merged, 0) != i.report_count - 1
"""


# A step due this long before the load ended should have fired by then (1 s ticks).
FIRE_GRACE = timedelta(seconds=3)


def audit(url: str, ledger: Ledger, *, since: datetime, load_ended: datetime) -> Audit:
    """Read back what the server stored (it is stopped) against what it acknowledged, and
    what the scheduler had fired when the load ended against what was due by then."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            stored: dict[bytes, list[int]] = {}
            for report_id, description in conn.execute(sa.select(Report.id, Report.description)):
                for tag in TAG.findall(description.encode()):
                    stored.setdefault(tag, []).append(int(report_id))
            fixes = Counter(
                (crew, at.astimezone(UTC))
                for crew, at in conn.execute(sa.select(CrewPosition.crew_id, CrewPosition.fix_at))
            )
            half = int(conn.scalar(sa.text(HALF_WRITTEN)) or 0)
            step = EscalationStep
            fired = conn.execute(
                sa.select(
                    step.incident_id, step.key, step.due_at, step.planned_at, step.settled_at
                ).where(step.status == StepStatus.FIRED, step.settled_at >= since)
            ).all()
            unfired = sa.or_(step.status == StepStatus.PLANNED, step.settled_at > load_ended)
            waiting = conn.execute(
                sa.select(step.due_at, step.planned_at).where(
                    unfired, step.due_at <= load_ended - FIRE_GRACE
                )
            ).all()
            acted = Counter(
                (i, data.get("step"))
                for i, data in conn.execute(
                    sa.select(IncidentEvent.incident_id, IncidentEvent.data).where(
                        IncidentEvent.kind == "escalated"
                    )
                )
            )
    finally:
        engine.dispose()
    wrong = sum(stored.get(tag, []) != [rid] for tag, rid in ledger.acknowledged.items())
    wrong += sum(
        fixes.get((crew, datetime.fromisoformat(at).astimezone(UTC)), 0) != 1
        for crew, at in ledger.pings
    )
    # A step is due from its deadline, or from when it was planned if that came later.
    lags = [
        (settled - max(due, planned)).total_seconds()
        for _i, _k, due, planned, settled in fired
        if settled is not None
    ]
    return Audit(
        acknowledged=len(ledger.acknowledged) + len(ledger.pings),
        not_exactly_once=wrong,
        stored_twice=sum(len(ids) > 1 for ids in stored.values())
        + sum(n > 1 for n in fixes.values()),
        half_written=half,
        steps_fired=len(fired),
        acted_twice=sum(acted.get((i, key), 0) != 1 for i, key, *_times in fired),
        max_lag_s=max(lags, default=0.0),
        late_at_end=sum(max(due, planned) <= load_ended - FIRE_GRACE for due, planned in waiting),
    )
