"""Intake over real HTTP, per backend: the dispatcher's ``POST /api/v1/incidents`` and
Open311's form-encoded ``POST requests.xml/.json`` on the real server, against a bare FastAPI
app that only parses the body and INSERTs one row, served the same way.

Both servers run side by side for the whole backend, and the runs are interleaved (ours
dispatcher, ours Open311, the peer; at each concurrency; repeated), so that whatever else
the machine is doing weighs on all of them alike. Each figure is the median of the repeats.
"""

from __future__ import annotations

import math
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from bench.common import Row, Skip
from bench.intake_bodies import open311_requests, report_bodies
from bench.intake_serving import (
    BARE_APP,
    OURS_APP,
    PATH,
    Backend,
    Ledger,
    Server,
    free_port,
    postgis_backend,
    prepare,
    serve,
    spatialite_backend,
)
from bench.loadgen import LoadResult, Request, process_cpu_probe, run_load

__all__ = [  # the backends and ports are shared with bench/reliability.py
    "Backend",
    "free_port",
    "open311_requests",
    "postgis_backend",
    "report_bodies",
    "run",
    "spatialite_backend",
]

T = TypeVar("T")

BENCH = "intake_api"
PEER = "bare FastAPI: pydantic parse + 1 INSERT, same server setup"

# Closed loop: each connection sends its next request when the answer to the last one is
# in, so the number of connections is the number of requests in flight, and by Little's
# law it sets latency for a given throughput: latency = in flight / throughput. The p99
# target is therefore only meaningful at a stated concurrency; every one of these is
# measured, for ours and the peer alike.
CONCURRENCIES = (8, 16, 32)
# The headline rows (those that carry the targets) are at 32 in flight, as they were before
# the sweep was added: 16 per PostGIS worker, a busy dispatch centre plus citizen apps, and
# where ours answers the most requests per second (the more reports are in flight, the more
# share a transaction; the peer answers no more with more in flight), which is what the
# throughput targets ask. At 1,000 requests/s, 32 in flight is a mean latency of 32 ms
# (Little's law): the p99 target leaves little room there, and the 8 and 16 rows show what
# fewer buy.
HEADLINE = 32
RPS_TARGET = 1500.0
OPEN311_RPS_TARGET = 1_000.0
P99_TARGET_MS = 50.0
# Above this the load generator takes a visible share of a 2-core machine from the server.
LOADGEN_CPU_TARGET = 0.25
# Every measured run sends reports never sent before (a repeated report would merge into
# the incident it opened the first time, a different workload): enough for the runs.
BODIES = 60_000
# A repeated report repeats one of the last few hundred: each run starts from empty intake
# tables (see bench.intake_serving.Ledger), and the place it repeats is then in the same
# run, so about a third of the reports merge in every run, as in one long run.
REPEAT_WITHIN = 400


@dataclass(frozen=True)
class Plan:
    """How each backend is measured: every concurrency, ``repeats`` times, interleaved."""

    warmup_s: float
    window_s: float
    repeats: int
    concurrencies: tuple[int, ...]

    @classmethod
    def of(cls, quick: bool, backend: Backend) -> Plan:
        # SpatiaLite carries no target: its rows are at the headline concurrency only.
        concurrencies = CONCURRENCIES if backend.name == "PostGIS" else (HEADLINE,)
        if quick:
            return cls(warmup_s=0.5, window_s=2.0, repeats=1, concurrencies=concurrencies)
        return cls(warmup_s=1.0, window_s=5.0, repeats=3, concurrencies=concurrencies)


# The three kinds of run: ours through the dispatcher API and through Open311, and the peer
# (sent the dispatcher's requests byte for byte; it ignores the key).
KINDS = ("dispatcher", "open311", "bare")
LABELS = {
    "dispatcher": f"POST {PATH}",
    "open311": "Open311 POST requests.xml/.json (form)",
}


@dataclass
class Measured:
    runs: dict[tuple[str, int], list[LoadResult]]  # (kind, connections) -> one per repeat
    not_ok: dict[str, int]  # per kind, over every run: answers other than 201 + failed
    acknowledged: int  # 201s ours gave, over every run (warm-ups included), both kinds
    kept: int  # incidents opened + reports merged that those runs left in the database
    merged: int
    mismatched: int  # runs whose 201s were not exactly their reports stored


@dataclass
class _Driver:
    """Sends each kind's requests from where its last run stopped (no report twice), checks
    after each run of ours that every report it acknowledged is stored, and empties the
    intake tables for the next run."""

    streams: dict[str, list[Request]]
    servers: dict[str, Server]
    ledger: Ledger
    cursor: dict[str, int] = field(default_factory=dict)
    not_ok: dict[str, int] = field(default_factory=dict)
    acknowledged: int = 0
    kept: int = 0
    merged: int = 0
    mismatched: int = 0

    def run(self, kind: str, connections: int, *, warmup_s: float, window_s: float) -> LoadResult:
        stream = self.streams[kind]
        start = self.cursor.get(kind, 0) % len(stream)
        server = self.servers[kind]
        idle = next(s for s in self.servers.values() if s is not server)
        result = run_load(
            port=server.port,
            requests=stream[start:] + stream[:start],
            connections=connections,
            warmup_s=warmup_s,
            duration_s=window_s,
            ok_status=frozenset({201}),
            cpu_probe=process_cpu_probe(server.process.pid, others={"idle": idle.process.pid}),
        )
        self.cursor[kind] = start + result.sent
        self.not_ok[kind] = self.not_ok.get(kind, 0) + _not_ok(result)
        if kind != "bare":
            # Every answer is in (the load generator drained them): each 201 was committed.
            stored = self.ledger.counts()
            acknowledged = result.count(201)
            kept = stored["incidents"] + stored["merged"]
            self.acknowledged += acknowledged
            self.kept += kept
            self.merged += stored["merged"]
            self.mismatched += kept != acknowledged or stored["reports"] != acknowledged
        self.ledger.reset()
        return result


def measure(backend: Backend, plan: Plan, workdir: Path) -> Measured:
    secret, context = prepare(backend.url)
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    dispatcher = [
        Request("POST", PATH, body, headers)
        for body in report_bodies(context, BODIES, repeat_within=REPEAT_WITHIN)
    ]
    open311 = report_bodies(context, BODIES, seed=1311, repeat_within=REPEAT_WITHIN)
    streams = {
        "dispatcher": dispatcher,
        "open311": open311_requests(open311, secret),
        "bare": dispatcher,
    }
    runs: dict[tuple[str, int], list[LoadResult]] = {}
    ledger = Ledger(backend.url)
    try:
        with (
            serve(OURS_APP, database_url=backend.url, workers=backend.workers,
                  log=workdir / f"{backend.name}-ours.log") as ours,
            serve(BARE_APP, database_url=backend.url, workers=backend.workers,
                  log=workdir / f"{backend.name}-bare.log") as bare,
        ):  # fmt: skip
            driver = _Driver(streams, {"dispatcher": ours, "open311": ours, "bare": bare}, ledger)
            # Warm both (keys, districts, prepared statements), unmeasured.
            for kind in KINDS:
                driver.run(kind, HEADLINE, warmup_s=0.0, window_s=plan.warmup_s + 1.0)
            for repeat in range(plan.repeats):
                # The orders rotate: no kind or concurrency always runs first, or after the
                # same one.
                for connections in _rotated(plan.concurrencies, repeat):
                    for kind in _rotated(KINDS, repeat):
                        result = driver.run(
                            kind, connections, warmup_s=plan.warmup_s, window_s=plan.window_s
                        )
                        runs.setdefault((kind, connections), []).append(result)
    finally:
        ledger.close()
    return Measured(
        runs,
        driver.not_ok,
        driver.acknowledged,
        driver.kept,
        driver.merged,
        driver.mismatched,
    )


def _rotated(items: Sequence[T], by: int) -> list[T]:
    by %= len(items)
    return [*items[by:], *items[:by]]


def _not_ok(result: LoadResult) -> int:
    return sum(n for status, n in result.status_counts.items() if status != 201) + (
        result.failed_exchanges
    )


def _median(runs: Sequence[LoadResult], figure: Callable[[LoadResult], float]) -> float:
    return statistics.median(figure(r) for r in runs)


def _per_request_ms(consumer: str) -> Callable[[LoadResult], float]:
    """CPU milliseconds ``consumer`` spent per answered request in a run: steadier than
    requests/s when something else shares the machine, and 2 cores divided by the sum over
    consumers bounds what this machine could answer."""

    def figure(result: LoadResult) -> float:
        if not result.requests_per_s or consumer not in result.cpu_cores:
            return float("nan")
        return 1e3 * result.cpu_cores[consumer] / result.requests_per_s

    return figure


def _cores(consumer: str) -> Callable[[LoadResult], float]:
    return lambda result: result.cpu_cores.get(consumer, 0.0)


def _other_cores(result: LoadResult) -> float:
    """Cores busy with anything but this run's server, PostgreSQL and the load generator."""
    cpu = result.cpu_cores
    return max(
        cpu.get("machine_busy", 0.0)
        - cpu.get("server", 0.0)
        - cpu.get("postgres", 0.0)
        - cpu.get("loadgen", 0.0),
        0.0,
    )


def _spread(runs: Sequence[LoadResult]) -> str:
    if len(runs) < 2:
        return "1 run"
    rates = [r.requests_per_s for r in runs]
    return f"median of {len(runs)} runs: {min(rates):,.0f} to {max(rates):,.0f}"


def _ratio(ours: float, peer: float) -> float | None:
    return ours / peer if peer and not math.isnan(peer) else None


def rows_for(backend: Backend, plan: Plan, m: Measured) -> list[Row]:
    on_postgis = backend.name == "PostGIS"
    setup = f"{backend.name}, {backend.workers} worker(s)"
    rows: list[Row] = []
    for connections in plan.concurrencies:
        headline = connections == HEADLINE
        bare = m.runs[("bare", connections)]
        bare_rps = _median(bare, lambda r: r.requests_per_s)
        bare_p50 = _median(bare, lambda r: r.p50_ms)
        bare_p99 = _median(bare, lambda r: r.p99_ms)
        for kind, rps_target in (("dispatcher", RPS_TARGET), ("open311", OPEN311_RPS_TARGET)):
            ours = m.runs[(kind, connections)]
            rps = _median(ours, lambda r: r.requests_per_s)
            p50 = _median(ours, lambda r: r.p50_ms)
            p99 = _median(ours, lambda r: r.p99_ms)
            targets = on_postgis and headline
            mark = " (headline)" if headline and on_postgis else ""
            rows.append(
                Row(
                    bench=BENCH,
                    case=(
                        f"{setup}, {connections} conns{mark}: {LABELS[kind]} throughput "
                        f"({_spread(ours)})"
                    ),
                    value=rps,
                    unit="req/s",
                    peer=PEER,
                    peer_value=bare_rps,
                    ratio=_ratio(rps, bare_rps),
                    target=f"≥{rps_target:,.0f} req/s" if targets else "",
                    met=rps >= rps_target if targets else None,
                )
            )
            rows.append(
                Row(
                    bench=BENCH,
                    case=(
                        f"{setup}, {connections} conns{mark}: {LABELS[kind]} latency p99 "
                        f"(p50 {p50:.0f} ms; peer p50 {bare_p50:.0f} ms)"
                    ),
                    value=p99,
                    unit="ms",
                    peer=PEER,
                    peer_value=bare_p99,
                    ratio=_ratio(p99, bare_p99),
                    target=f"<{P99_TARGET_MS:.0f} ms" if targets else "",
                    met=p99 < P99_TARGET_MS if targets else None,
                )
            )
    return rows + _cost_rows(backend, m) + _proof_rows(backend, m)


def _cost_rows(backend: Backend, m: Measured) -> list[Row]:
    """CPU per answered request at the headline concurrency: the server's workers, and
    PostgreSQL's backends (on PostGIS), ours against the peer's."""
    bare = m.runs[("bare", HEADLINE)]
    consumers = [("server", "server CPU per answered request (its workers)")]
    if backend.name == "PostGIS":
        consumers.append(("postgres", "PostgreSQL CPU per answered request"))
    rows = []
    for consumer, what in consumers:
        figure = _per_request_ms(consumer)
        peer_value = _median(bare, figure)
        for kind in ("dispatcher", "open311"):
            value = _median(m.runs[(kind, HEADLINE)], figure)
            rows.append(
                Row(
                    bench=BENCH,
                    case=f"{backend.name}, {HEADLINE} conns: {LABELS[kind]}: {what}",
                    value=value,
                    unit="ms CPU",
                    peer=PEER,
                    peer_value=peer_value,
                    ratio=_ratio(value, peer_value),
                )
            )
    return rows


def _proof_rows(backend: Backend, m: Measured) -> list[Row]:
    merged_pct = 100.0 * m.merged / max(m.kept, 1)
    ours_not_ok = m.not_ok.get("dispatcher", 0) + m.not_ok.get("open311", 0)
    headline = m.runs[("open311", HEADLINE)]
    cpu = {
        name: _median(headline, _cores(name)) for name in ("server", "postgres", "loadgen", "idle")
    }
    cpu_note = (
        f"server {cpu['server']:.2f}, PostgreSQL {cpu['postgres']:.2f}, "
        f"other {_median(headline, _other_cores):.2f}, idle {cpu['idle']:.2f} cores"
    )
    return [
        Row(
            bench=BENCH,
            case=f"{backend.name}: answers other than 201 or failed exchanges (every run)",
            value=float(ours_not_ok),
            unit="requests",
            peer=PEER,
            peer_value=float(m.not_ok.get("bare", 0)),
            target="0",
            met=ours_not_ok == 0,
        ),
        Row(
            bench=BENCH,
            case=(
                f"{backend.name}: lost = 201s, both kinds, every run ({m.acknowledged:,}) - "
                f"incidents opened and reports merged that they left ({m.kept:,}; "
                f"{merged_pct:.0f}% merged); runs off by any: {m.mismatched}"
            ),
            value=float(m.acknowledged - m.kept),
            unit="reports",
            target="0",
            met=m.mismatched == 0,
        ),
        Row(
            bench=BENCH,
            case=(f"{backend.name}: load generator CPU, Open311 at {HEADLINE} conns ({cpu_note})"),
            value=cpu["loadgen"],
            unit="cores",
            peer=PEER,
            peer_value=_median(m.runs[("bare", HEADLINE)], _cores("loadgen")),
            target=f"<{LOADGEN_CPU_TARGET} cores",
            met=cpu["loadgen"] < LOADGEN_CPU_TARGET,
        ),
    ]


def _skipped(name: str, reason: str) -> Row:
    return Row(bench=BENCH, case=f"{name}: skipped: {reason}", value=float("nan"), unit="")


def run(quick: bool = False) -> list[Row]:
    """Measure intake over HTTP on SpatiaLite and PostGIS; ``quick``: one 2 s run each."""
    rows: list[Row] = []
    workdir = Path(tempfile.mkdtemp(prefix="fieldops-bench-logs-"))
    try:
        for name, backend_of in (("SpatiaLite", spatialite_backend), ("PostGIS", postgis_backend)):
            try:
                with backend_of() as backend:
                    plan = Plan.of(quick, backend)
                    rows += rows_for(backend, plan, measure(backend, plan, workdir))
            except Skip as exc:
                rows.append(_skipped(name, str(exc)))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return rows


if __name__ == "__main__":
    from bench.__main__ import print_rows

    print_rows(run(quick="--quick" in sys.argv[1:]))
