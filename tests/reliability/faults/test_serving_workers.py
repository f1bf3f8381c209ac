"""The server as ``fieldops serve --workers N`` runs it (``fieldops.serving``): every worker
takes its share of the connections, one worker alone runs the scheduled jobs, a stop
leaves no worker behind, and a worker that cannot start stops the server."""

from __future__ import annotations

import http.client
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fault_procs import (
    ROOT,
    FaultDb,
    client_connections,
    free_port,
    listening_sockets,
    start_api,
    wait_for,
    worker_pids,
)

SPATIALITE = pytest.mark.parametrize("fault_db", ["spatialite"], indirect=True)


@SPATIALITE
def test_connections_are_spread_over_every_worker(fault_db: FaultDb, tmp_path: Path) -> None:
    api = start_api(fault_db.url, workers=2, log_dir=tmp_path)
    clients = [http.client.HTTPConnection("127.0.0.1", api.port, timeout=5) for _ in range(24)]
    try:
        # Each worker listens on a socket of its own (one shared socket would be handed
        # out by whichever worker waits in accept), and the kernel spreads connections.
        listening = [listening_sockets(pid, api.port) for pid in worker_pids(api)]
        assert [len(sockets) for sockets in listening] == [1, 1], listening
        assert listening[0] != listening[1]
        # All at once, as a proxy's pool or a load test opens them: with one shared
        # listening socket most of a burst can land on one worker.
        for client in clients:
            client.connect()
        for client in clients:
            client.request("GET", "/healthz")
            response = client.getresponse()
            assert response.status == 200
            response.read()
        held = {pid: client_connections(pid, api.port) for pid in worker_pids(api)}
        assert len(held) == 2 and sum(held.values()) == len(clients), held
        # Each takes its share: a 24-connection burst splits no worse than 6:18 but
        # once in about 300 bursts (the kernel hashes each connection's addresses).
        assert min(held.values()) >= 4, held
    finally:
        for client in clients:
            client.close()
        api.stop()


@SPATIALITE
def test_one_worker_runs_the_scheduled_jobs_and_a_stop_leaves_no_worker(
    fault_db: FaultDb, tmp_path: Path
) -> None:
    api = start_api(fault_db.url, workers=3, log_dir=tmp_path, scheduler=True)
    workers = worker_pids(api)
    try:
        log = api.log_text()
        assert len(workers) == 3
        assert log.count(", scheduled jobs on") == 1, log
        assert log.count(", scheduled jobs off") == 2, log
        assert "Worker 1 of 3" in log and ", scheduled jobs on" in _line(log, "Worker 1 of 3")
    finally:
        api.stop()
    assert api.process.returncode == 0, api.tail()
    for pid in workers:
        wait_for(f"worker {pid} to be gone", lambda pid=pid: not _running(pid), timeout_s=10)


@SPATIALITE
def test_workers_stop_when_the_supervisor_is_killed(fault_db: FaultDb, tmp_path: Path) -> None:
    api = start_api(fault_db.url, workers=2, log_dir=tmp_path)
    workers = worker_pids(api)
    assert len(workers) == 2
    try:
        api.kill()  # kill -9: no chance to stop them itself
        for pid in workers:
            wait_for(f"worker {pid} to stop", lambda pid=pid: not _running(pid), timeout_s=30)
    finally:
        api.stop()


def test_a_worker_that_cannot_start_stops_the_server() -> None:
    started = time.monotonic()
    command = [
        sys.executable, "-m", "fieldops.serving", "fieldops.no_such_module:app",
        "--port", str(free_port()), "--workers", "2",
    ]  # fmt: skip
    done = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "exited during start-up" in done.stderr, done.stderr
    assert "fieldops.no_such_module" in done.stderr, done.stderr
    assert time.monotonic() - started < 60  # it gave up rather than start workers forever


def _line(log: str, text: str) -> str:
    return next(line for line in log.splitlines() if text in line)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited: it only waits to be reaped
