"""Traffic for the fault tests and the checks after it.

Every write carries a tag (in the report's description, or a crew's fix time) and an
Idempotency-Key, and is sent again after a failure the way a phone or an Open311 app
retries; afterwards the database must hold each acknowledged write exactly once, under
the id its answer gave, and nothing half-written."""

from __future__ import annotations

import http.client
import itertools
import random
import re
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlencode

import orjson

from fieldops.auth.models import Role
from fieldops.auth.service import create_key
from fieldops.clock import SystemClock
from fieldops.crews.repo import list_crews
from fieldops.db.engine import make_engine, make_sessionmaker, unit_of_work

TAG = re.compile(r"#w([0-9a-f]{16})")
WRITES = ("open311", "incident", "position")
# Services that need no attribute answers on Open311.
SERVICES = ("pothole", "fallen_tree", "snow_ice", "flooding", "dead_animal")


@dataclass(frozen=True)
class Call:
    kind: str  # open311 | incident | position | read
    method: str
    path: str
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    tag: str = ""  # writes: what identifies the stored row


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: no answer (refused, reset, timed out)
    body: bytes
    headers: Mapping[str, str]  # names lower-cased
    error: str
    at: float  # time.monotonic() when it came

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class Exchange:
    call: Call
    answers: list[Answer] = field(default_factory=list)

    @property
    def final(self) -> Answer:
        return self.answers[-1]

    @property
    def acknowledged(self) -> bool:
        return bool(self.answers) and self.final.ok


@dataclass(frozen=True)
class Keys:
    public: str
    dispatcher: str
    crews: Mapping[int, str]


def make_keys(url: str) -> Keys:
    """A public key (Open311), a dispatcher key and one key per crew."""
    engine = make_engine(url)
    now = SystemClock().now()
    try:
        with unit_of_work(make_sessionmaker(engine)) as session:
            _k, public = create_key(session, name="citizen app", role=Role.PUBLIC, now=now)
            _k, dispatcher = create_key(session, name="desk", role=Role.DISPATCHER, now=now)
            crews = {
                crew.id: create_key(
                    session, name=f"phone {crew.id}", role=Role.CREW, now=now, crew_id=crew.id
                )[1]
                for crew in list_crews(session)
            }
    finally:
        engine.dispose()
    return Keys(public=public, dispatcher=dispatcher, crews=crews)


class Calls:
    """An endless, thread-safe stream of calls in the given mix. A share ``overdue`` of the
    dispatcher reports are life-safety calls made 35 minutes ago: their escalation steps
    are due as soon as they open."""

    def __init__(
        self,
        keys: Keys,
        points: Sequence[tuple[float, float]],
        weights: Mapping[str, float],
        *,
        seed: int,
        overdue: float = 0.0,
    ) -> None:
        self.keys = keys
        self.points = points
        self.rng = random.Random(seed)
        self.kinds = list(weights)
        self.weights = list(weights.values())
        self.overdue = overdue
        self.lock = threading.Lock()
        self.fix_clock = SystemClock().now().replace(microsecond=0)
        self.counter = itertools.count()

    def __iter__(self) -> Iterator[Call]:
        return self

    def __next__(self) -> Call:
        with self.lock:
            kind = self.rng.choices(self.kinds, self.weights)[0]
            return getattr(self, f"_{kind}")()

    def _point(self) -> tuple[float, float]:
        return self.points[self.rng.randrange(len(self.points))]

    def _tag(self) -> str:
        return uuid.UUID(int=self.rng.getrandbits(128)).hex[:16]

    def _open311(self) -> Call:
        tag = self._tag()
        lon, lat = self._point()
        form = {
            "api_key": self.keys.public,
            "service_code": self.rng.choice(SERVICES),
            "lat": f"{lat:.6f}",
            "long": f"{lon:.6f}",
            "description": f"Signalé par un citoyen #w{tag}",
        }
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Idempotency-Key": tag}
        body = urlencode(form).encode()
        return Call("open311", "POST", "/open311/v2/requests.json", body, headers, tag)

    def _incident(self) -> Call:
        tag = self._tag()
        lon, lat = self._point()
        report: dict[str, object] = {
            "service_code": self.rng.choice(SERVICES),
            "lat": lat,
            "lon": lon,
            "description": f"Radio call #w{tag}",
        }
        if self.rng.random() < self.overdue:
            report["priority"] = 1
            report["requested_at"] = (SystemClock().now() - timedelta(minutes=35)).isoformat()
        headers = {
            "Authorization": f"Bearer {self.keys.dispatcher}",
            "Content-Type": "application/json",
            "Idempotency-Key": tag,
        }
        return Call("incident", "POST", "/api/v1/incidents", orjson.dumps(report), headers, tag)

    def _position(self) -> Call:
        crew_id = self.rng.choice(sorted(self.keys.crews))
        fix_at = self.fix_clock + timedelta(milliseconds=next(self.counter))
        lon, lat = self._point()
        body = {"fixes": [{"lon": lon, "lat": lat, "fix_at": fix_at.isoformat()}]}
        headers = {
            "Authorization": f"Bearer {self.keys.crews[crew_id]}",
            "Content-Type": "application/json",
        }
        path = f"/api/v1/crews/{crew_id}/positions"
        tag = f"{crew_id}|{fix_at.isoformat()}"
        return Call("position", "POST", path, orjson.dumps(body), headers, tag)

    def _read(self) -> Call:
        path = self.rng.choice(
            (
                "/api/v1/incidents?status=open&limit=20",
                "/api/v1/feed?after=0&limit=50",
                "/api/v1/incidents.geojson?status=open&limit=50",
                "/open311/v2/requests.json?page_size=20",
            )
        )
        return Call(
            "read", "GET", path, headers={"Authorization": f"Bearer {self.keys.dispatcher}"}
        )


def _retry_after(answer: Answer) -> float:
    try:
        return float(answer.headers.get("retry-after", "0"))
    except ValueError:
        return 0.0


class Traffic:
    """``connections`` client threads on keep-alive connections, each sending its next call
    ``think_s`` after the last one is done (a steady load that leaves the server room to
    restart a worker). A write that gets no answer or a 5xx is sent again with the same
    Idempotency-Key (pausing at most ``pause_s``, whatever Retry-After says) until it is
    answered, or ``give_up_s`` after `stop` (``retry=False``: never)."""

    def __init__(
        self,
        port: int,
        calls: Iterator[Call],
        *,
        connections: int,
        retry: bool = True,
        give_up_s: float = 20.0,
        pause_s: float = 0.25,
        think_s: float = 0.02,
    ) -> None:
        self.port = port
        self.calls = calls
        self.retry = retry
        self.give_up_s = give_up_s
        self.pause_s = pause_s
        self.think_s = think_s
        self.exchanges: list[Exchange] = []
        self._stop = threading.Event()
        self._give_up_at = float("inf")
        self._threads = [
            threading.Thread(target=self._client, daemon=True) for _ in range(connections)
        ]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def wait(self, timeout_s: float) -> list[Exchange]:
        """Wait for a finite list of calls to be sent (and retried) to the end."""
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(timeout=max(deadline - time.monotonic(), 0.0))
        return self.stop()

    def stop(self) -> list[Exchange]:
        """No new calls; writes still failing are retried until ``give_up_s``."""
        if not self._stop.is_set():
            self._give_up_at = time.monotonic() + self.give_up_s
            self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.give_up_s + 30)
        return self.exchanges

    def answers(self) -> list[tuple[Call, Answer]]:
        return [(e.call, a) for e in list(self.exchanges) for a in e.answers]

    def _client(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self._stop.is_set():
            try:
                exchange = Exchange(next(self.calls))
            except StopIteration:  # a finite list of calls, all sent
                break
            self.exchanges.append(exchange)
            while True:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
                answer = self._send(conn, exchange.call)
                exchange.answers.append(answer)
                if answer.status is None or answer.headers.get("connection") == "close":
                    conn.close()
                    conn = None
                failed = answer.status is None or answer.status >= 500
                if not (failed and self.retry and exchange.call.kind != "read"):
                    break
                if time.monotonic() > self._give_up_at:
                    break
                time.sleep(min(max(_retry_after(answer), 0.05), self.pause_s))
            time.sleep(self.think_s)
        if conn is not None:
            conn.close()

    @staticmethod
    def _send(conn: http.client.HTTPConnection, call: Call) -> Answer:
        try:
            conn.request(call.method, call.path, body=call.body or None, headers=dict(call.headers))
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            return Answer(None, b"", {}, f"{type(exc).__name__}: {exc}", time.monotonic())
        headers = {k.lower(): v for k, v in response.getheaders()}
        return Answer(response.status, body, headers, "", time.monotonic())
