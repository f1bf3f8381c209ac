"""PostgreSQL crash-restarts under load (on a private cluster this test makes, so the shared
one is never disturbed): clients get 503 problems or lost connections while it is down,
never a 2xx for a write it lost; after recovery every acknowledged write is there once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fault_checks import audit, half_written, tally, unclear_failures
from fault_procs import prepare, private_postgres, start_api
from fault_traffic import Calls, Traffic, make_keys

MIX = {"open311": 0.35, "incident": 0.25, "position": 0.2, "read": 0.2}


@pytest.mark.postgis
def test_postgres_restart_loses_no_acknowledged_write(
    city_points: list[tuple[float, float]], tmp_path: Path
) -> None:
    with private_postgres() as cluster:
        url = cluster.url("fieldops")
        prepare(url)
        keys = make_keys(url)
        api = start_api(url, workers=1, log_dir=tmp_path)
        try:
            calls = Calls(keys, city_points, MIX, seed=3)
            with Traffic(api.port, calls, connections=8) as traffic:
                time.sleep(1.5)
                acknowledged_before = sum(e.acknowledged for e in traffic.exchanges)
                down_at = time.monotonic()
                cluster.restart()
                up_at = time.monotonic()
                time.sleep(2.0)
            assert api.alive(), api.tail()
        finally:
            api.stop()

        counts = tally(traffic)
        during = [
            (call.kind, answer)
            for call, answer in traffic.answers()
            if down_at <= answer.at and (answer.status is None or answer.status >= 500)
        ]
        # Clients noticed the outage: a 503 problem or a lost connection, retried.
        assert during, counts
        assert unclear_failures(traffic) == []
        ledger = audit(url, traffic.exchanges)
        assert ledger.problems == []
        assert ledger.unacknowledged == 0, counts
        assert ledger.acknowledged > acknowledged_before > 0
        assert half_written(url) == {}
        # After recovery, new writes are taken at the first try.
        assert any(
            e.acknowledged and e.call.kind != "read" and e.answers[0].at > up_at + 0.5
            for e in traffic.exchanges
        ), counts
