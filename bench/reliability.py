"""A working day at full tilt: Open311 intake, dispatcher reads and writes, crew position
pings and the live map's feed and layers, all at once against ``fieldops serve`` with
``fieldops scheduler run`` beside it; then the proof that every write the server
acknowledged is in the database exactly once, under the id its answer gave.

Peers measured in the same run: the same mix on SpatiaLite (1 worker), and the read half
of the mix alone on the same PostGIS server, paced at the rate it was answered in the
mixed run (what the writes cost the readers).
``python -m bench.reliability [--quick] [--duration S]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.common import Row, Skip
from bench.intake_api import Backend, free_port, postgis_backend, spatialite_backend
from bench.loadgen import LoadResult, process_cpu_probe, run_load
from bench.reliability_load import (
    MIX,
    WRITES,
    Audit,
    Ledger,
    Maps,
    audit,
    mixed_requests,
    prepare,
    read_requests,
)
from fieldops.clock import SystemClock

BENCH = "reliability"
ROOT = Path(__file__).resolve().parents[1]
FIELDOPS = Path(sys.executable).with_name("fieldops")
DURATION_ENV = "FIELDOPS_BENCH_RELIABILITY_S"
CONNECTIONS = 32
# Requests prepared per second of run; a faster server ends its run early (a row says so).
RATE_CAP = 800
STARTED = "Application startup complete."


@dataclass(frozen=True)
class Plan:
    """How long each run lasts."""

    warmup_s: float
    window_s: float  # each mixed run
    read_window_s: float  # the read-only peer

    @classmethod
    def of(cls, quick: bool, seconds: float | None = None) -> Plan:
        if seconds is None:
            env = os.environ.get(DURATION_ENV, "").strip()
            seconds = float(env) if env else (20.0 if quick else 180.0)
        return cls(warmup_s=2.0 if quick else 5.0, window_s=seconds, read_window_s=seconds / 2)


# --- the processes -------------------------------------------------------------------------


@dataclass
class Stack:
    """``fieldops serve --no-scheduler`` and ``fieldops scheduler run`` on one database."""

    port: int
    server: subprocess.Popen[bytes]
    scheduler: subprocess.Popen[bytes]


def _spawn(argv: list[str], url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDOPS_")}
    # One client address and one key stand for a whole city: no intake rate limit.
    env |= {"FIELDOPS_DATABASE_URL": url, "FIELDOPS_INTAKE_RATE_LIMIT": "false"}
    with log.open("ab") as out:
        return subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _stop(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the group it was started in
            process.wait(timeout=10)


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def stack(backend: Backend, log_dir: Path) -> Iterator[Stack]:
    """Serve with every worker up and the scheduler running; stop both afterwards."""
    port = free_port()
    server_log, scheduler_log = (
        log_dir / f"{backend.name}-serve.log",
        log_dir / f"{backend.name}-scheduler.log",
    )
    server = _spawn(
        [str(FIELDOPS), "serve", "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(backend.workers), "--no-scheduler"],
        backend.url, server_log,
    )  # fmt: skip
    scheduler = _spawn([str(FIELDOPS), "scheduler", "run"], backend.url, scheduler_log)
    try:
        deadline = time.monotonic() + 120
        while not (
            server_log.read_text(errors="replace").count(STARTED) >= backend.workers
            and "Scheduler running" in scheduler_log.read_text(errors="replace")
            and _ready(port)
        ):
            for name, process, log in (
                ("server", server, server_log),
                ("scheduler", scheduler, scheduler_log),
            ):
                if process.poll() is not None:
                    tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-5:])
                    raise RuntimeError(f"{name} exited with {process.returncode}: {tail}")
            if time.monotonic() > deadline:
                raise RuntimeError("server or scheduler not up within 120 s")
            time.sleep(0.2)
        yield Stack(port, server, scheduler)
    finally:
        _stop(scheduler, signal.SIGINT)
        _stop(server, signal.SIGTERM)


# --- measuring -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    backend: Backend
    mixed: LoadResult
    audit: Audit
    ledger: Ledger
    ran_out: bool  # the prepared requests ran out before the window closed
    reads: LoadResult | None = None  # the read-only peer (PostGIS)


def measure(backend: Backend, plan: Plan, log_dir: Path, *, read_peer: bool) -> Measured:
    """The mix on one backend (and, with ``read_peer``, its reads alone at the same rate),
    then the audit of what the stopped server and scheduler left in the database."""
    city = prepare(backend.url)
    n = int(RATE_CAP * (plan.warmup_s + plan.window_s + 5))
    maps = Maps.starting_at(city.cursor)
    requests = mixed_requests(city, n, maps, seed=2026)
    ledger = Ledger(requests, maps)
    started = SystemClock().now()
    reads = None
    with stack(backend, log_dir) as running:
        # One request after another first: caches filled (keys, districts, street graphs)
        # before the crowd comes, as on a server that has been up a while.
        warm = mixed_requests(city, 100, Maps.starting_at(city.cursor), seed=99, warm_up=True)
        run_load(port=running.port, requests=warm, connections=1, warmup_s=0, duration_s=10,
                 max_requests=len(warm), ok_status=frozenset({200, 201}))  # fmt: skip
        probe = process_cpu_probe(running.server.pid, others={"scheduler": running.scheduler.pid})
        mixed = run_load(
            port=running.port,
            requests=requests,
            connections=CONNECTIONS,
            warmup_s=plan.warmup_s,
            duration_s=plan.window_s,
            max_requests=len(requests),  # never cycle: every write is sent once
            ok_status=frozenset({200, 201}),
            cpu_probe=probe,
            on_answer=ledger,
        )
        load_ended = SystemClock().now()
        if read_peer:
            # The same reads at the rate they were answered in the mixed run: what is left
            # is what the writes (and the scheduler) cost the readers.
            read_rate = sum(k.requests_per_s for n, k in mixed.kinds.items() if n not in WRITES)
            read_maps = Maps.starting_at(max(maps.cursors))
            only_reads = read_requests(city, 20_000, read_maps, seed=7)
            reads = run_load(
                port=running.port,
                requests=only_reads,
                connections=CONNECTIONS,
                warmup_s=plan.warmup_s,
                duration_s=plan.read_window_s,
                ok_status=frozenset({200}),
                cpu_probe=probe,
                on_answer=Ledger(only_reads, read_maps),
                rate_per_s=max(read_rate, 1.0),
            )
    # Both stopped: whatever they acknowledged must be in the database now.
    found = audit(backend.url, ledger, since=started, load_ended=load_ended)
    return Measured(backend, mixed, found, ledger, mixed.sent >= len(requests), reads)


# --- the table -----------------------------------------------------------------------------


def _ratio(ours: float, peer: float | None) -> float | None:
    return ours / peer if peer else None


def _kind_rows(main: Measured, sl: Measured | None) -> list[Row]:
    """Per kind and overall: throughput against SpatiaLite; latency against the read-only
    peer for reads (what the writes cost them), against SpatiaLite for writes."""
    setup = f"{main.backend.name} {main.backend.workers} workers + scheduler, {CONNECTIONS} conns"
    sl_peer = "SpatiaLite, 1 worker, same mix"
    rows = []
    for kind in [*MIX, "all kinds"]:
        ours = main.mixed.kinds.get(kind) if kind != "all kinds" else main.mixed
        if ours is None:
            continue
        other = (sl.mixed.kinds.get(kind) if kind != "all kinds" else sl.mixed) if sl else None
        reads = main.reads
        read_peer = reads.kinds.get(kind) if reads and kind not in WRITES else None
        if kind == "all kinds" and reads is not None:
            read_peer = None
        lat_peer, lat_name = (
            (read_peer, "same server, reads alone, same rate") if read_peer else (other, sl_peer)
        )
        rows += [
            Row(BENCH, f"{setup}: {kind}: throughput", ours.requests_per_s, "req/s", sl_peer,
                other.requests_per_s if other else None,
                _ratio(ours.requests_per_s, other.requests_per_s if other else None)),
            Row(BENCH, f"{setup}: {kind}: latency p50", ours.p50_ms, "ms", lat_name,
                lat_peer.p50_ms if lat_peer else None,
                _ratio(ours.p50_ms, lat_peer.p50_ms if lat_peer else None)),
            Row(BENCH, f"{setup}: {kind}: latency p99", ours.p99_ms, "ms", lat_name,
                lat_peer.p99_ms if lat_peer else None,
                _ratio(ours.p99_ms, lat_peer.p99_ms if lat_peer else None)),
        ]  # fmt: skip
    return rows


def _not_2xx(result: LoadResult) -> int:
    return sum(n for st, n in result.status_counts.items() if not 200 <= st < 300) + (
        result.failed_exchanges
    )


def _proof_rows(m: Measured) -> list[Row]:
    name, a, ledger = m.backend.name, m.audit, m.ledger
    kinds = ", ".join(f"{k.split(' (')[0]} {ledger.by_kind[k]:,}" for k in WRITES)
    rows = [
        Row(BENCH, f"{name}: acknowledged writes not stored exactly once under their answered "
            f"id (of {a.acknowledged:,}: {kinds})", float(a.not_exactly_once + ledger.bad_answers),
            "writes", target="0", met=a.not_exactly_once + ledger.bad_answers == 0),
        Row(BENCH, f"{name}: half-written incidents (report count, opened and merged events) "
            "and writes stored twice", float(a.half_written + a.stored_twice), "records",
            target="0", met=a.half_written + a.stored_twice == 0),
        Row(BENCH, f"{name}: answers other than 2xx or failed exchanges (whole run, "
            f"{m.mixed.sent:,} sent; {ledger.refused:,} writes among them)",
            float(_not_2xx(m.mixed)), "requests", target="0", met=_not_2xx(m.mixed) == 0),
        Row(BENCH, f"{name}: scheduler: of {a.steps_fired:,} escalation steps fired during the "
            "run, those not acted exactly once", float(a.acted_twice), "steps", target="0",
            met=a.acted_twice == 0),
        Row(BENCH, f"{name}: scheduler: longest wait from due to fired, under load",
            a.max_lag_s, "s", target="<5 s", met=a.max_lag_s < 5.0),
        Row(BENCH, f"{name}: scheduler: steps due 3 s or more before the load ended, not "
            "fired by then", float(a.late_at_end), "steps", target="0", met=a.late_at_end == 0),
    ]  # fmt: skip
    if m.ran_out:
        rows.append(
            Row(BENCH, f"{name}: the prepared requests ran out before the window closed (raise "
                "RATE_CAP); figures cover the run up to its last answer", float("nan"), "")
        )  # fmt: skip
    return rows


def _cpu_row(m: Measured) -> Row:
    cpu = m.mixed.cpu_cores
    named = ("server", "postgres", "scheduler", "loadgen")
    other = max(cpu.get("machine_busy", 0.0) - sum(cpu.get(k, 0.0) for k in named), 0.0)
    note = ", ".join(f"{k} {cpu.get(k, 0.0):.2f}" for k in named[:3])
    return Row(
        BENCH,
        f"{m.backend.name}: load generator CPU in the mixed window ({note}, "
        f"other {other:.2f}, idle {cpu.get('idle', 0.0):.2f} cores)",
        cpu.get("loadgen", float("nan")),
        "cores",
        target="<0.25 cores",
        met=cpu.get("loadgen", 1.0) < 0.25,
    )


def run(quick: bool = False, seconds: float | None = None) -> list[Row]:
    """The mixed load on PostGIS (2 workers + scheduler, with its read-only peer), then on
    SpatiaLite (1 worker + scheduler); ``quick``: 20 s windows, else 180 s (or ``seconds``,
    or $FIELDOPS_BENCH_RELIABILITY_S)."""
    plan = Plan.of(quick, seconds)
    log_dir = Path(tempfile.mkdtemp(prefix="fieldops-bench-reliability-"))
    measured: dict[str, Measured] = {}
    skipped: list[Row] = []
    try:
        for name, backend_of in (("PostGIS", postgis_backend), ("SpatiaLite", spatialite_backend)):
            try:
                with backend_of() as backend:
                    measured[name] = measure(backend, plan, log_dir, read_peer=name == "PostGIS")
            except Skip as exc:
                skipped.append(Row(BENCH, f"{name}: skipped: {exc}", float("nan"), ""))
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)
    main = measured.get("PostGIS") or measured.get("SpatiaLite")
    rows = []
    if main is not None:
        peer = measured.get("SpatiaLite") if main.backend.name == "PostGIS" else None
        rows += _kind_rows(main, peer)
    for m in measured.values():
        rows += _proof_rows(m)
    # Both, so a backend measured while something else ran on the machine shows it.
    rows += [_cpu_row(m) for m in measured.values()]
    return rows + skipped


if __name__ == "__main__":
    from bench.__main__ import print_rows

    parser = argparse.ArgumentParser(prog="python -m bench.reliability", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="20 s windows (a smoke test)")
    parser.add_argument("--duration", type=float, metavar="S", help="seconds per mixed window")
    args = parser.parse_args()
    print_rows(run(quick=args.quick, seconds=args.duration))
