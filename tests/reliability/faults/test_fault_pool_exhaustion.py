"""More requests at once than SpatiaLite's connection pool holds (10), many of them with a
key the process has not looked up yet: the server keeps answering every one, instead of
each request holding a connection while it waits for a second one to look up its key."""

from __future__ import annotations

import time
from pathlib import Path

from fault_checks import audit, tally
from fault_procs import start_api
from fault_traffic import Calls, Traffic, make_keys

# Reads hold a session for the whole request; pings come from 28 crews' keys.
MIX = {"read": 0.5, "position": 0.4, "incident": 0.1}
CONNECTIONS = 24


def test_more_requests_than_pooled_connections_all_answered(
    spatialite_template: Path, city_points: list[tuple[float, float]], tmp_path: Path
) -> None:
    path = tmp_path / "fieldops.db"
    path.write_bytes(spatialite_template.read_bytes())
    url = f"sqlite:///{path}"
    keys = make_keys(url)
    api = start_api(url, workers=1, log_dir=tmp_path)
    try:
        # No pause between calls: every connection has a request in flight all along.
        calls = Calls(keys, city_points, MIX, seed=5)
        with Traffic(api.port, calls, connections=CONNECTIONS, retry=False, think_s=0) as traffic:
            time.sleep(3.0)
            started = time.monotonic()
        waited = time.monotonic() - started
    finally:
        api.stop()
    counts = tally(traffic)
    # Every request answered, none failed, and the last ones did not hang.
    assert all(e.answers and e.final.ok for e in traffic.exchanges), counts
    assert len(traffic.exchanges) > 3 * CONNECTIONS, counts
    assert waited < 5.0, (waited, counts)
    assert audit(url, traffic.exchanges).problems == []
