"""kill -9 one worker of two under load: its clients lose their connections, retry with
their Idempotency-Key, and every acknowledged write is stored exactly once; the server's
supervisor starts a new worker, which serves."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from fault_checks import audit, half_written, tally, unclear_failures
from fault_procs import (
    BACKENDS,
    STARTED,
    FaultDb,
    client_connections,
    start_api,
    wait_for,
    worker_pids,
)
from fault_traffic import Calls, Traffic, make_keys

MIX = {"open311": 0.35, "incident": 0.25, "position": 0.2, "read": 0.2}


@pytest.mark.parametrize("fault_db", BACKENDS, indirect=True)
def test_killed_worker_loses_no_acknowledged_write(
    fault_db: FaultDb, city_points: list[tuple[float, float]], tmp_path: Path
) -> None:
    keys = make_keys(fault_db.url)
    api = start_api(fault_db.url, workers=2, log_dir=tmp_path)
    try:
        calls = Calls(keys, city_points, MIX, seed=1)
        with Traffic(api.port, calls, connections=8) as traffic:
            time.sleep(1.5)
            # The worker holding the most client connections: its clients must notice.
            held = {pid: client_connections(pid, api.port) for pid in worker_pids(api)}
            victim = max(held, key=lambda pid: held[pid])
            assert len(held) == 2 and held[victim] > 0, held
            acknowledged_before = sum(e.acknowledged for e in traffic.exchanges)
            killed_at = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            wait_for(
                "a new worker to replace the killed one",
                lambda: (
                    victim not in worker_pids(api)
                    and len(worker_pids(api)) == 2
                    and api.log_text().count(STARTED) >= 3
                ),
                timeout_s=60,
            )
            time.sleep(1.0)  # the new worker takes its share of new connections
        exchanges = traffic.exchanges
        assert api.alive(), api.tail()
        assert f"(pid {victim}) exited with code -9: starting another" in api.log_text()
    finally:
        api.stop()

    counts = tally(traffic)
    failed = [a for _c, a in traffic.answers() if a.status is None and a.at >= killed_at]
    # The victim's clients saw their connection go (and retried): no silent loss.
    assert failed, counts
    assert unclear_failures(traffic) == []
    ledger = audit(fault_db.url, exchanges)
    assert ledger.problems == []
    # Every write was acknowledged in the end (retried through the kill), none twice.
    assert ledger.unacknowledged == 0, counts
    assert ledger.acknowledged > acknowledged_before > 0
    assert half_written(fault_db.url) == {}
    # Writes go on being acknowledged after the new worker is up.
    assert any(e.acknowledged and e.answers[0].at > killed_at + 1 for e in exchanges), counts
